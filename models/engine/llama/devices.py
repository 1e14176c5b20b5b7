"""Which devices the loaded ggml offloads to, and which GPU backend it carries, from the library itself.

Why: ``/health`` should say where the layers went in words a user can check ("Vulkan0:
llvmpipe (LLVM 15.0.6, 256 bits)", "CUDA0: NVIDIA H200"), not only a backend name guessed
from file names. llama-cpp-python 0.3.36 binds none of ggml's device API, so this asks the
loaded ``libggml`` through ctypes: ``ggml_backend_dev_count``/``_get``/``_type``/``_name``/
``_description``. The library is the one ``libllama`` was loaded with (``--llama-lib`` may
point at another folder than the package's own ``lib``), found next to it; when that fails
the answer is empty, never an exception: naming devices is a report, not a requirement.

The GPU backend's name comes from the same folder (``libggml-vulkan.so`` → ``vulkan``): the
package folder is the wrong place to look once ``--llama-lib`` chose another build. A folder
that carries a GPU backend whose build offloads nowhere is a GPU build without its device or
driver (a CUDA wheel in a container started without ``--gpus``): the engine warns and serves
on the CPU (``carried_backend``).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

#: ``enum ggml_backend_dev_type`` (ggml-backend.h): devices that hold offloaded layers.
DEVICE_TYPE_GPU = 1
DEVICE_TYPE_IGPU = 2
GPU_BACKENDS = ("cuda", "metal", "vulkan", "hip", "sycl")


def _ggml(library_dir: Path) -> ctypes.CDLL | None:
    for name in ("libggml.so", "libggml.dylib"):
        candidate = library_dir / name
        if candidate.exists():
            try:
                ggml = ctypes.CDLL(str(candidate))  # already mapped by libllama: the same handle
                ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
                ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
                ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
                ggml.ggml_backend_dev_type.restype = ctypes.c_int
                ggml.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
                for text in (ggml.ggml_backend_dev_name, ggml.ggml_backend_dev_description):
                    text.restype = ctypes.c_char_p
                    text.argtypes = [ctypes.c_void_p]
            except (OSError, AttributeError):
                return None
            return ggml
    return None


def gpu_devices(library_dir: Path | None) -> tuple[str, ...]:
    """``"<name>: <description>"`` of each GPU (or integrated GPU) device the loaded ggml registered."""
    ggml = _ggml(library_dir) if library_dir else None
    if ggml is None:
        return ()
    found = []
    for index in range(ggml.ggml_backend_dev_count()):
        device = ggml.ggml_backend_dev_get(index)
        if ggml.ggml_backend_dev_type(device) in (DEVICE_TYPE_GPU, DEVICE_TYPE_IGPU):
            name = (ggml.ggml_backend_dev_name(device) or b"?").decode(errors="replace")
            description = (ggml.ggml_backend_dev_description(device) or b"").decode(errors="replace")
            found.append(f"{name}: {description}" if description else name)
    return tuple(found)


def carried_backend(library_dir: Path | None) -> str | None:
    """The GPU backend whose ggml library sits in the folder (``libggml-cuda.so`` → ``cuda``), if any."""
    if library_dir is None or not library_dir.exists():
        return None
    for backend in GPU_BACKENDS:
        if any(library_dir.glob(f"libggml-{backend}.*")):
            return backend
    return None


def backend_name(library_dir: Path | None) -> str:
    """The GPU backend the library folder carries (``cuda``, ``vulkan``...); ``gpu`` when unrecognised."""
    return carried_backend(library_dir) or ("metal" if os.uname().sysname == "Darwin" else "gpu")
