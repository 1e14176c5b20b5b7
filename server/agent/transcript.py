"""A readable transcript of agent events, for ``delta.content`` and the terminal.

A plain chat UI only shows ``delta.content``; this turns the structured events into
Markdown as they happen: thinking as prose, code in a fenced block that opens when the
code starts streaming, the execution output in a fenced block, the final answer last.
"""

from __future__ import annotations

from server.agent.policy import FORCED_NOTES
from server.agent.steps import AgentDone, AgentEvent, StepDone, TurnDelta


class Transcript:
    """Feed events in order; get the Markdown text each one adds."""

    def __init__(self) -> None:
        self._channel: str | None = None
        self._step: int | None = None

    def render(self, event: AgentEvent) -> str:
        if isinstance(event, TurnDelta):
            return self._delta(event)
        if isinstance(event, StepDone):
            return self._close_channel() + self._observation(event)
        if isinstance(event, AgentDone):
            text = self._close_channel()
            if event.finish_reason not in ("solution", "no_action"):
                text += f"\n\n_[agent stopped: {event.finish_reason}]_\n"
            elif event.forced_answer:
                text += f"\n\n_[{FORCED_NOTES[event.forced_answer]}]_\n"
            return text
        return ""

    def _delta(self, event: TurnDelta) -> str:
        prefix = ""
        if event.step_index != self._step:
            prefix += self._close_channel()
            if self._step is not None:
                prefix += "\n"
            self._step = event.step_index
        if event.channel != self._channel:
            prefix += self._close_channel()
            if event.channel == "code":
                prefix += "\n```python\n"
            elif event.channel == "answer":
                prefix += "\n"
            self._channel = event.channel
        return prefix + event.text

    def _close_channel(self) -> str:
        text = "\n```\n" if self._channel == "code" else ""
        self._channel = None
        return text

    @staticmethod
    def _observation(event: StepDone) -> str:
        observation = event.step.observation
        if observation is None:
            return ""
        return f"\n```text\n{observation.text}\n```\n"
