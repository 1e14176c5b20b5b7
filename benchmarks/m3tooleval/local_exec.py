"""Run tool sources and code cells in a plain namespace, the way the sandbox does.

This is not a sandbox: it executes in this process, for our own trusted code only (the
unit tests and the oracle self-check). Its point is to treat tools exactly as the agent's
sandbox will: nothing but their ``source`` text, ``exec``-ed into one fresh namespace that
later code cells share.
"""

from __future__ import annotations

import contextlib
import io
import traceback
from collections.abc import Iterable, Mapping
from typing import Any


def tool_namespace(tools: Iterable[Mapping[str, str]]) -> dict[str, Any]:
    """A fresh namespace with every tool's source executed in it, in order."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for tool in tools:
        code = compile(tool["source"], f"<tool {tool['name']}>", "exec")
        exec(code, namespace)
        if not callable(namespace.get(tool["name"])):
            raise RuntimeError(f"source of tool {tool['name']!r} does not define it")
    return namespace


def run_cell(namespace: dict[str, Any], code: str) -> str:
    """Execute ``code`` in ``namespace``; return what it printed, traceback included."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            exec(compile(code, "<cell>", "exec"), namespace)
        except Exception:
            traceback.print_exc(file=buffer)
    return buffer.getvalue()


def last_line(output: str) -> str:
    """The last non-empty line of some output: where the oracle prints its answer."""
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""
