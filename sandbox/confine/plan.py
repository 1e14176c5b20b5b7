"""`Plan`: how to start one worker at an isolation level, and the level's name.

Why its own module: the worker process (``sandbox.process``) needs only this record to start a
worker, while choosing a level (``sandbox.confine.isolation``) starts a probe worker itself;
with the record in ``isolation`` the two modules imported each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["namespaces", "landlock", "rlimits+uid", "rlimits-only"]


@dataclass(frozen=True)
class Plan:
    """Everything needed to start one worker at a given level."""

    level: Level
    argv: list[str]
    env: dict[str, str]
    cwd: str
    uid: int | None
