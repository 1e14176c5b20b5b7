"""Errors the sandbox raises to its caller (what *we* got wrong, not the model).

What the model's code did wrong (exceptions, timeouts, memory, floods, crashes) never
raises: it comes back inside `ExecResult` for the model to read. These exceptions are for
the server's own mistakes or environment:

    SandboxError
    ├── SandboxStartError    the worker could not be started or did not say ready
    ├── SandboxClosedError   run() on a sandbox that was closed (or a pool after close())
    └── SandboxEnvError      the sandbox's own Python environment is missing, broken or
                             could not be set up (see sandbox/environment.py)
"""

from __future__ import annotations


class SandboxError(Exception):
    """Base class of everything the sandbox package raises."""


class SandboxStartError(SandboxError):
    """The worker process failed to start or to complete its handshake."""


class SandboxClosedError(SandboxError):
    """The sandbox (or pool) was closed; create or acquire a new one."""


class SandboxEnvError(SandboxError):
    """The interpreter for agent code is missing or broken, or its setup failed (one line, with the fix)."""
