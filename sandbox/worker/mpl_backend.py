"""Matplotlib backend for the sandbox: Agg rendering, `plt.show()` saves PNGs.

Why a backend and not a monkey-patch: the worker selects it through `MPLBACKEND`, so it
applies however and whenever the model's code imports pyplot, without the worker
importing matplotlib at start-up. Each shown figure becomes `figure_<n>.png` in the
working directory (the workspace), which the caller receives in `ExecResult.files`.
"""

from __future__ import annotations

import os
from typing import Any

from matplotlib._pylab_helpers import Gcf
from matplotlib.backend_bases import FigureManagerBase, _Backend
from matplotlib.backends.backend_agg import FigureCanvasAgg


def _next_path() -> str:
    n = 1
    while os.path.exists(f"figure_{n}.png"):
        n += 1
    return f"figure_{n}.png"


@_Backend.export
class _BackendSandbox(_Backend):
    FigureCanvas = FigureCanvasAgg
    FigureManager = FigureManagerBase

    @classmethod
    def show(cls, *args: Any, **kwargs: Any) -> None:
        """Save every open figure to the workspace, print where, and close it."""
        for manager in Gcf.get_all_fig_managers():
            path = _next_path()
            manager.canvas.figure.savefig(path)
            print(f"[figure saved to {path}]")
        Gcf.destroy_all()
