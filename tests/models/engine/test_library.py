"""``--llama-lib``: which libllama llama-cpp-python loads, chosen before it loads one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from models.engine.api import EngineError
from models.engine.llama import amx
from models.engine.llama.amx import amx_kernels_built_in, keep_amx_out
from models.engine.llama.library import loaded_library, use_library

REPO = Path(__file__).resolve().parents[3]


def test_none_keeps_the_vendored_library() -> None:
    use_library(None)  # nothing to check, nothing to raise


def test_a_directory_without_libllama_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no libllama"):
        use_library(tmp_path)


def test_another_library_after_llama_cpp_loaded_is_refused(tmp_path: Path) -> None:
    import llama_cpp  # noqa: F401 - this process now holds the vendored libllama

    (tmp_path / "libllama.so").write_bytes(b"")
    with pytest.raises(EngineError, match="already loaded"):
        use_library(tmp_path)
    loaded = loaded_library()
    assert loaded is not None
    use_library(loaded.parent)  # the library already loaded is fine


def test_the_chosen_directory_is_the_one_loaded() -> None:
    import llama_cpp

    vendored = Path(llama_cpp.__file__).parent / "lib"  # a real libllama in a directory of its own
    code = (
        "import sys; from models.engine.llama.library import use_library, loaded_library;"
        f"use_library({str(vendored)!r}); import llama_cpp; print(loaded_library())"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).parent.resolve() == vendored.resolve()


def test_amx_kernels_keep_extra_buffers_out_of_the_defaults() -> None:
    """Where ggml was built with AMX (it segfaults on decode), models load without extra
    buffers; elsewhere the defaults are llama.cpp's own."""
    import llama_cpp

    vendored = Path(llama_cpp.__file__).parent / "lib"
    assert llama_cpp.llama_model_default_params().use_extra_bufts is (not amx_kernels_built_in(vendored))


def test_keep_amx_out_patches_every_namespace_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Params:
        use_extra_bufts = True

    class Bindings:
        llama_model_default_params = staticmethod(Params)

    first, second = Bindings(), Bindings()
    assert not keep_amx_out([first, second], tmp_path / "libllama.so")  # no ggml CPU backend there
    assert first.llama_model_default_params().use_extra_bufts
    monkeypatch.setattr(amx, "amx_kernels_built_in", lambda directory: directory == tmp_path)
    assert keep_amx_out([first, second], tmp_path / "libllama.so")
    assert keep_amx_out([first, second], tmp_path / "libllama.so")  # idempotent: wrapped once
    assert first.llama_model_default_params().use_extra_bufts is False
    assert second.llama_model_default_params is first.llama_model_default_params
    assert first.llama_model_default_params.__wrapped__ is Params  # not a wrapper of the wrapper
