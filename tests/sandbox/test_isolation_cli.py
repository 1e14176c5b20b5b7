"""`serve --sandbox-isolation LEVEL` demands that level: refused in one line before a model loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_serve_refuses_a_demanded_level_in_one_line_before_loading_a_model(tmp_path: Path) -> None:
    """The real CLI, with bubblewrap off PATH and namespaces demanded."""
    cli = Path(sys.executable).parent / "codeact-server"
    done = subprocess.run(
        [str(cli), "serve", "--sandbox-isolation", "namespaces", "--sandbox-python", sys.executable, "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert done.returncode == 2, done
    assert done.stderr.strip().splitlines() == [
        "codeact-server: error: namespaces isolation requested but unavailable: bubblewrap is not "
        "installed (Debian/Ubuntu: apt-get install bubblewrap); --sandbox-isolation auto accepts "
        "the strongest level available"
    ]
