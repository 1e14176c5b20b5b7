"""``/v1/agent``: the whole CodeAct loop behind the chat-completions protocol, and sessions.

One module per endpoint family: ``run`` answers ``POST /v1/agent`` (one run or k, streamed,
detached or whole), ``chunks`` renders a run as stream chunks, ``sessions`` serves a session
(its files, its background run's events, cancelling it), ``stored`` a stored run read back.

``POST /v1/agent`` and ``POST /v1/agent/chat/completions`` (the path an OpenAI SDK builds
from ``base_url=".../v1/agent"``) take a chat-completions body plus agent extras. Non-stream
answers one ``chat.completion`` whose message is the final answer, with an ``agent`` field
holding the steps. Stream sends ``chat.completion.chunk`` events whose ``delta.content`` is
a readable Markdown transcript and whose ``agent`` field carries the structured event:

    {"type": "session", "session_id": ...}                          first chunk
    {"type": "delta", "step": i, "channel": "thought"|"code"|"answer", "text": ...}
    {"type": "step", "step": {...step shape...}}                    a turn finished
    {"type": "done", "session_id", "finish_reason", "turns", "final_message",
     "forced_answer", "usage", "error"}                           last chunk

The ``agent`` field of a non-stream answer holds those same run fields (the run's
``outcome``: one shape for both, and for the audit log) plus ``steps``.

With ``samples: k`` (k > 1; ``server.agent.consensus``) k runs answer the request. The
``agent`` field describes the winning run (its session continues the conversation; the
others are closed), its ``usage`` and the response's sum every run's, and it adds
``samples`` (every run: ``index``, ``answer``, the outcome fields, ``steps``) and
``agreement`` (``answer``, ``votes``, ``voters``, ``of``, ``sample``: the winning run). Streamed,
each run's events carry ``"sample": i`` (one ``session`` chunk per run; ``delta.content`` is
sample 0's transcript only), a run's end is ``{"type": "sample_done", "sample": i, "answer",
...outcome}``, and the last chunk is ``done`` with the winner's outcome, ``samples`` (without
steps: they streamed) and ``agreement``.

When agent code calls one of the client's function tools, the answer is instead a standard
assistant message with ``tool_calls`` (finish_reason ``tool_calls``; streamed as tool-call
deltas, the last chunk's ``agent`` is ``{"type": "tool_calls", "session_id"}``); the client's
next request with the ``tool`` messages resumes the run (``server.tools.client_calls``).
"""
