"""Make ``benchmarks`` importable however pytest is started.

``benchmarks`` is a top-level folder of scripts, not part of the installed packages, so
``.venv/bin/pytest`` started without the repository root on ``sys.path`` could not import
it; ``python -m pytest`` from the root could.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
