"""``--llama-lib``: which libllama llama-cpp-python loads, chosen before it loads one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from models.engine.api import EngineError
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
