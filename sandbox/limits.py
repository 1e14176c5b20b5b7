"""Resource limits for one sandbox, as one immutable value.

Why one frozen dataclass: the same numbers travel to the worker (which applies rlimits to
itself) and to the server-side watchdog (which enforces wall time, tree memory, tree CPU
and workspace size), so they must not drift apart between the two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

#: A limit of the worker's whole process tree, as the server's watchdogs check it.
TreeLimit = Literal["memory", "cpu", "processes"]
#: Processes the tree holds besides the code's (launcher, namespace init, reaper).
OWN_PROCESSES = 3


@dataclass(frozen=True)
class Limits:
    """Per-sandbox limits; time limits apply per `run`, the rest to the worker's tree."""

    wall_seconds: float = 30.0
    cpu_seconds: float = 30.0
    memory_mb: int = 1024
    max_output_bytes: int = 64_000
    max_processes: int = 64
    max_file_mb: int = 100
    max_workspace_mb: int = 500
    max_open_files: int = 256
    #: Host calls (tools outside the sandbox, see sandbox/bridge/calls.py): the longest a call
    #: may take unless its tool says otherwise, the longest all of one run's calls may wait
    #: together (the operator's deadline, which a client's own tool is held to as well), and
    #: the largest arguments and result in bytes.
    host_call_seconds: float = 60.0
    host_wait_seconds: float = 600.0
    host_argument_bytes: int = 1_000_000
    host_result_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{field.name} must be a positive number, got {value!r}")
        if self.max_output_bytes < 256:
            raise ValueError("Limits.max_output_bytes must be at least 256")

    @property
    def output_hard_cap(self) -> int:
        """Bytes after which a run is stopped, not just truncated (a flood, not a long log)."""
        return max(20 * self.max_output_bytes, 4 * 1024 * 1024)

    @property
    def frame_bytes(self) -> int:
        """Largest frame the server reads from a running worker: a call's arguments or a run's
        capped output (stdout, stderr and the error, each at most the output limit), with room
        for JSON escapes. The worker sends nothing larger unless it is forging frames."""
        return 6 * (self.host_argument_bytes + 3 * self.max_output_bytes) + 64 * 1024

    def broken_by(self, memory: int, cpu_used: float, processes: int, cpu_slack: float = 0.0) -> TreeLimit | None:
        """Which tree limit this use breaks, if any: the tree's memory in bytes, the CPU seconds
        it used since the check began (`cpu_slack` more allowed), its process count. One rule
        for the run's watchdog and the idle watch, so the two cannot drift apart."""
        if memory > self.memory_mb * 1024 * 1024:
            return "memory"
        if cpu_used > self.cpu_seconds + cpu_slack:
            return "cpu"
        if processes > self.max_processes + OWN_PROCESSES:
            return "processes"
        return None

    def to_json(self) -> dict[str, Any]:
        """Plain dict for the worker's configure message."""
        return asdict(self)
