"""An agent answer as ``chat.completion.chunk`` events: the one renderer, for one run or k.

Why one: a plain request is one run (``samples: 1``) of the path that also runs k
(``server.agent.consensus.runner``), so its stream is that path's stream with nothing to tag
and nothing to vote on: with k runs every event carries ``"sample": i``, a run's end is a
``sample_done`` chunk and the agreement closes the transcript; with one, none of that is
there and the chunks are those a single run always sent. Each chunk's ``delta.content`` is a
readable Markdown transcript (sample 0's only: k interleaved transcripts would read as none)
and its ``agent`` field the structured event (``server.api.routes.agent`` lists them).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from typing import Any

from server.agent.consensus.runner import RunsDone, SampleEvent, drive_runs, sample_outcome
from server.agent.runtime import AgentRuntime
from server.agent.service import PreparedRun
from server.agent.steps import AgentDone, AgentEvent, StepDone, TurnDelta
from server.agent.transcript import Transcript
from server.api.routes.agent.shapes import OPENAI_FINISH_OF_AGENT, step_payload
from server.api.routes.approvals import approval_event, approval_text
from server.api.streams.sse import ready_batches, sse_event
from server.api.tool_call_replies import tool_call_chunks
from server.openai.schemas import chat_chunk
from server.tools.approvals.gate import ApprovalPending
from server.tools.client_calls import ToolCallsPending


class Chunks:
    """One streamed answer's chunks (its id, model and creation time), the agent event in each."""

    def __init__(self, completion_id: str, model: str) -> None:
        self.id, self.model, self.created = completion_id, model, int(time.time())

    def chunk(self, content: str | None, agent: dict[str, Any], finish: str | None = None) -> bytes:
        delta = {} if content is None else {"content": content}
        return sse_event(chat_chunk(self.id, self.model, self.created, delta, finish, agent=agent))

    def session(self, session_id: str, *, first: bool = True, **tag: int) -> bytes:
        """A chunk naming a session; the first chunk of the answer also gives the role."""
        agent = {"type": "session", "session_id": session_id, **tag}
        if not first:
            return self.chunk(None, agent)
        delta = {"role": "assistant", "content": ""}
        return sse_event(chat_chunk(self.id, self.model, self.created, delta, agent=agent))

    def turn(self, event: TurnDelta | StepDone, content: str | None, **tag: int) -> bytes:
        """A text delta or a finished step (``tag``: which sample's)."""
        if isinstance(event, TurnDelta):
            agent = {"type": "delta", **tag, "step": event.step_index, "channel": event.channel, "text": event.text}
            return self.chunk(content, agent)
        return self.chunk(content, {"type": "step", **tag, "step": step_payload(event.step)})

    def end(self, done: AgentDone, text: str, outcome: dict[str, Any], include_usage: bool) -> list[bytes]:
        """The last chunks: the transcript's end, ``done`` with ``outcome``, the usage if asked."""
        out = [self.chunk(text, {"type": "transcript"})] if text else []
        out.append(self.chunk(None, {"type": "done", **outcome}, OPENAI_FINISH_OF_AGENT[done.finish_reason]))
        if include_usage:
            usage = done.usage.payload()
            out.append(sse_event(chat_chunk(self.id, self.model, self.created, None, usage=usage)))  # type: ignore[arg-type]
        return out


async def run_chunks(
    runtime: AgentRuntime, runs: list[PreparedRun], completion_id: str, model: str, include_usage: bool
) -> AsyncGenerator[bytes, None]:
    """The runs' SSE chunks as they come: one write per batch of events that were ready
    together (``openai_stream`` adds the error event and ``[DONE]``)."""
    chunks = Chunks(completion_id, model)
    transcript = Transcript()
    sampled = len(runs) > 1

    def tag(index: int) -> dict[str, int]:
        return {"sample": index} if sampled else {}

    def render(item: SampleEvent | RunsDone) -> list[bytes]:
        if isinstance(item, RunsDone):
            closing = "" if item.agreement is None else f"\n\n_[{item.agreement.describe()}]_\n"
            return chunks.end(item.done, closing, item.outcome(), include_usage)
        event, index = item.event, item.sample
        session_id = runs[index].session.id
        if isinstance(event, ApprovalPending):
            return [chunks.chunk(approval_text(event.request), {**approval_event(event), "session_id": session_id})]
        if isinstance(event, ToolCallsPending):
            return tool_call_chunks(completion_id, model, chunks.created, session_id, event)
        text = transcript.render(event) if index == 0 else None
        if isinstance(event, TurnDelta | StepDone):
            return [chunks.turn(event, text, **tag(index))]
        out = [chunks.chunk(text, {"type": "transcript", **tag(index)})] if text else []
        if sampled:
            outcome = sample_outcome(runs[index], index, event)
            out.append(chunks.chunk(None, {"type": "sample_done", "sample": index, **outcome}))
        return out

    yield b"".join(chunks.session(run.session.id, first=i == 0, **tag(i)) for i, run in enumerate(runs))
    async with contextlib.aclosing(ready_batches(drive_runs(runtime, runs))) as batches:
        async for batch in batches:
            yield b"".join(piece for item in _merge_sample_deltas(batch) for piece in render(item))


def _merge_sample_deltas(items: list[SampleEvent | RunsDone]) -> list[SampleEvent | RunsDone]:
    """``merge_deltas`` within each sample's consecutive events."""
    merged: list[SampleEvent | RunsDone] = []
    for item in items:
        last = merged[-1] if merged else None
        if isinstance(item, SampleEvent) and isinstance(last, SampleEvent) and last.sample == item.sample:
            joined = merge_deltas([last.event, item.event])  # type: ignore[list-item]
            if len(joined) == 1:
                merged[-1] = SampleEvent(item.sample, joined[0])
                continue
        merged.append(item)
    return merged


def merge_deltas(events: list[AgentEvent]) -> list[AgentEvent]:
    """Join consecutive text deltas of one step and channel (a burst of tokens: one event).

    The transcript renders a joined delta exactly as the pieces one after another, and a
    client that appends ``text`` sees the same text; only the number of events changes.
    """
    merged: list[AgentEvent] = []
    for event in events:
        last = merged[-1] if merged else None
        if (
            isinstance(event, TurnDelta)
            and isinstance(last, TurnDelta)
            and (last.step_index, last.channel) == (event.step_index, event.channel)
        ):
            merged[-1] = TurnDelta(last.step_index, last.channel, last.text + event.text)
        else:
            merged.append(event)
    return merged
