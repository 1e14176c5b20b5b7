"""`Usage`: what producing something cost, one record for a generation, a turn, a step and a run.

Why one type: the engine's result, the agent's turn and its step each carried their own copy
of the token counts, copied field by field at every hand-over, and a run's total was summed
from yet another pair of integers. A user asking "what did this run cost" needs the same
fields at every level, and the sandbox's cost beside the model's: CPU milliseconds, peak
memory and wall time of the code a step executed, as the kernel counted them for the worker
and its children (``sandbox.result.ExecutionCost``, which this layer does not import: its
numbers are carried here as plain fields).

How records combine:

- ``then``: a continuation of the same prompt (a turn's phases, a turn taken again): the
  prompt is the first part's, completion tokens and times add up.
- ``+``: separate prompts (the turns of a run, the runs of a vote): everything adds up,
  except peak memory, which is the highest peak.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    """Tokens and generation time; for executed code, the sandbox's cost too."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    generation_s: float = 0.0
    #: Executions counted in the sandbox fields below (0: no code ran).
    executions: int = 0
    sandbox_cpu_ms: float = 0.0
    sandbox_peak_memory_mb: float = 0.0
    sandbox_wall_ms: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def then(self, more: Usage) -> Usage:
        """This, continued by ``more`` on the same prompt (its prompt is not counted again)."""
        return replace(
            self._summed(more),
            prompt_tokens=self.prompt_tokens or more.prompt_tokens,
            cached_prompt_tokens=self.cached_prompt_tokens if self.prompt_tokens else more.cached_prompt_tokens,
        )

    def __add__(self, other: Usage) -> Usage:
        return self._summed(other)

    def with_execution(self, cpu_ms: float, peak_memory_mb: float, wall_ms: float) -> Usage:
        """This, plus one execution's cost."""
        return self + Usage(
            executions=1, sandbox_cpu_ms=cpu_ms, sandbox_peak_memory_mb=peak_memory_mb, sandbox_wall_ms=wall_ms
        )

    def _summed(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_prompt_tokens=self.cached_prompt_tokens + other.cached_prompt_tokens,
            generation_s=self.generation_s + other.generation_s,
            executions=self.executions + other.executions,
            sandbox_cpu_ms=self.sandbox_cpu_ms + other.sandbox_cpu_ms,
            sandbox_peak_memory_mb=max(self.sandbox_peak_memory_mb, other.sandbox_peak_memory_mb),
            sandbox_wall_ms=self.sandbox_wall_ms + other.sandbox_wall_ms,
        )

    def sandbox_payload(self) -> dict[str, Any] | None:
        """The sandbox block of the JSON shapes, None when no code ran."""
        if not self.executions:
            return None
        return {
            "executions": self.executions,
            "cpu_ms": round(self.sandbox_cpu_ms, 1),
            "peak_memory_mb": round(self.sandbox_peak_memory_mb, 1),
            "wall_ms": round(self.sandbox_wall_ms, 1),
        }

    def payload(self) -> dict[str, Any]:
        """The documented JSON shape (``agent.usage``, ``agent.steps[*].usage``): OpenAI's
        chat usage fields, cached tokens where OpenAI puts them, and a ``sandbox`` block."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_prompt_tokens},
            "generation_ms": round(self.generation_s * 1000, 1),
            "sandbox": self.sandbox_payload(),
        }
