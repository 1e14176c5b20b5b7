"""The answer of an agent run suspended on the client's tool calls, as OpenAI shapes it.

A standard assistant message with ``tool_calls`` and finish_reason ``tool_calls``, so an
unmodified OpenAI tool loop (or LangChain's) runs the tools and sends the results back.
Streaming: the tool-call deltas, then the finish chunk. Usage is zero here: the run is not
over, and the final answer's usage counts every turn of it.
"""

from __future__ import annotations

from typing import Any

from server.agent.service import PreparedRun
from server.api.streams.sse import sse_event
from server.openai.schemas import chat_chunk, chat_completion, usage_dict
from server.tools.client_calls import ToolCallsPending

FINISH = "tool_calls"


def _agent(session_id: str, pending: ToolCallsPending) -> dict[str, Any]:
    return {
        "type": "tool_calls",
        "session_id": session_id,
        "finish_reason": FINISH,
        "tool_call_ids": [call.id for call in pending.calls],
    }


def tool_calls_completion(
    completion_id: str, model: str, run: PreparedRun, pending: ToolCallsPending
) -> dict[str, Any]:
    body = chat_completion(completion_id, model, "", FINISH, usage_dict(0, 0), agent=_agent(run.session.id, pending))
    message = body["choices"][0]["message"]
    message["content"] = None
    message["tool_calls"] = [
        {k: v for k, v in call.as_openai(i).items() if k != "index"} for i, call in enumerate(pending.calls)
    ]
    return body


def tool_call_chunks(
    completion_id: str, model: str, created: int, session_id: str, pending: ToolCallsPending
) -> list[bytes]:
    deltas = [
        sse_event(chat_chunk(completion_id, model, created, {"tool_calls": [call.as_openai(i)]}))
        for i, call in enumerate(pending.calls)
    ]
    finish = chat_chunk(completion_id, model, created, {}, FINISH, agent=_agent(session_id, pending))
    return [*deltas, sse_event(finish)]
