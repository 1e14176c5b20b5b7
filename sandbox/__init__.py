"""Isolated, resource-limited Python execution with persistent per-session state.

    from sandbox import Sandbox, Limits, ExecResult, SandboxPool

Names are resolved lazily (PEP 562) so that the worker process, which imports
`sandbox.protocol` at start-up, does not pay for psutil and the server-side modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.errors import SandboxClosedError, SandboxError, SandboxStartError
    from sandbox.limits import Limits
    from sandbox.pool import SandboxPool
    from sandbox.result import ExecResult
    from sandbox.sandbox import Sandbox

__all__ = [
    "ExecResult",
    "Limits",
    "Sandbox",
    "SandboxClosedError",
    "SandboxError",
    "SandboxPool",
    "SandboxStartError",
]

_HOMES = {
    "ExecResult": "sandbox.result",
    "Limits": "sandbox.limits",
    "Sandbox": "sandbox.sandbox",
    "SandboxPool": "sandbox.pool",
    "SandboxError": "sandbox.errors",
    "SandboxClosedError": "sandbox.errors",
    "SandboxStartError": "sandbox.errors",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
