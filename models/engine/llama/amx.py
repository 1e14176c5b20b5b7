"""Whether ggml's AMX kernels are in the loaded CPU backend, so the engine can keep them out.

Why: on a CPU with Intel AMX (Sapphire Rapids and later), a native build of llama.cpp puts
the weights of Q4_0/Q4_1/Q8_0/K-quant matrices into an "AMX" extra buffer, and the first
decode of an ordinary chat prompt then segfaults in ``ggml_backend_amx_mul_mat``. Seen here
with the llama.cpp that llama-cpp-python 0.3.36 vendors on SmolLM2 Q4_1, through our engine
and through plain ``llama_cpp.Llama`` alike; upstream it is llama.cpp issue 20824 (closed as
stale, unfixed), and other projects' CI met it on Sapphire Rapids runners. Loading the model
with ``use_extra_bufts = false`` (llama-server's ``--no-repack``) keeps every weight in the
plain CPU buffer, and decoding works. That also gives up the CPU repacking of Q4_0 weights,
so the engine turns extra buffers off only where the AMX kernels are compiled in, which for a
native build means the building CPU had AMX.

``ggml_cpu_has_amx_int8`` answers at compile time (``__AMX_INT8__``), which is exactly the
question: is the AMX path in this library. ``keep_amx_out`` makes the process's default model
parameters say so, which covers our engine and every plain ``llama_cpp.Llama`` the tests and
benchmarks load (it is called from ``library.load_first``, which every such process runs).

Issue 37 puts the crash on GCC before 13, so ``make install`` builds with ``-mno-amx-int8`` there
(docs/deploy.md, "AMX CPUs", has the build evidence): such a build has no AMX kernels, this
guard finds none, and repacking stays on. The guard stays for builds made any other way.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def amx_kernels_built_in(library_dir: Path | None) -> bool:
    """Whether a ggml CPU backend next to ``libllama`` in ``library_dir`` was built with AMX."""
    if library_dir is None:
        return False
    for candidate in sorted(library_dir.glob("libggml-cpu*.so*")) + sorted(library_dir.glob("libggml-cpu*.dylib")):
        try:
            backend = ctypes.CDLL(str(candidate))
            has_amx = backend.ggml_cpu_has_amx_int8
        except (OSError, AttributeError):
            continue
        has_amx.restype = ctypes.c_int
        has_amx.argtypes = []
        if has_amx():
            return True
    return False


def keep_amx_out(modules: Sequence[Any], library: Path | None) -> bool:
    """Make ``llama_model_default_params`` turn extra buffers off when AMX kernels are built in.

    ``modules``: every namespace that holds the function, i.e. ``llama_cpp.llama_cpp`` (the
    ctypes bindings, which ``Llama`` calls for its defaults) and the ``llama_cpp`` package that
    re-exports it (which our engine calls). Idempotent; returns whether the defaults now keep
    AMX out.
    """
    current = modules[0].llama_model_default_params
    if getattr(current, "keeps_amx_out", False):
        return True
    if not amx_kernels_built_in(library.parent if library else None):
        return False

    @functools.wraps(current)
    def without_extra_buffers() -> Any:
        params = current()
        params.use_extra_bufts = False
        return params

    without_extra_buffers.keeps_amx_out = True  # type: ignore[attr-defined]
    for module in modules:
        module.llama_model_default_params = without_extra_buffers
    log.info("ggml's AMX kernels crash on decode (llama.cpp issue 20824): weights stay in plain CPU buffers")
    return True
