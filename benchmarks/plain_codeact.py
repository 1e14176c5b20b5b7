"""A plain CodeAct loop, the baseline of ``benchmarks.agent_quality``.

It follows the reference chat demo's protocol, not ours: a CodeAct system prompt (our own
sentences, in the demo's spirit), the task as the user message, each assistant turn
generated freely through ``/v1/completions`` until ``</execute>`` or the end of the turn
(no grammar, no phases, no policy), the first ``<execute>`` block run in a sandbox and its
output sent back as an ``Execution Output:`` user message. It ends at a ``<solution>``, at a
turn without ``<execute>`` (that reply is the answer, as in the demo), or at the turn
limit. It runs on the same model and server as the arm it is compared with, so the only
difference is the loop.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from models.engine.chat_format import IM_END, render_chatml
from sandbox import Sandbox, environment
from server.agent.prompts import cut_middle
from server.settings import Settings

PLAIN_SYSTEM = """\
A chat between a curious user and an artificial intelligence assistant. The assistant \
answers the user's questions helpfully. The assistant can use an interactive Python \
(Jupyter notebook) environment and sees the output of the code it runs. Code to run must \
be enclosed in <execute> and </execute> tags. The assistant tries few things at a time \
rather than putting much code in one <execute> block. When the assistant has the answer, \
it gives it enclosed in <solution> and </solution> tags."""

EMPTY = "[Code executed successfully with no output]"
_EXECUTE = re.compile(r"<execute>(.*?)</execute>", re.DOTALL)
_SOLUTION = re.compile(r"<solution>(.*?)</solution>", re.DOTALL)


@dataclass
class Outcome:
    answer: str | None = None
    finish_reason: str = "max_turns"
    turns: list[dict[str, Any]] = field(default_factory=list)
    completion_tokens: int = 0
    generation_s: float = 0.0
    error: str | None = None


class PlainLoop:
    """One task's conversation: its own sandbox, generation through the server's completions."""

    def __init__(self, base_url: str, model: str, *, max_turns: int, max_tokens: int) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=1800)
        self.model = model
        self.max_turns = max_turns
        self.max_tokens = max_tokens
        # The same interpreter as the server's sessions (the sandbox environment).
        settings = Settings()
        python, _ = environment.resolve(settings.sandbox_python, settings.sandbox_env)
        self.sandbox = Sandbox(python=str(python))

    @property
    def workspace(self) -> Path:
        return self.sandbox.workspace

    def __enter__(self) -> PlainLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sandbox.close()
        self.client.close()

    def _generate(self, messages: list[dict[str, str]], outcome: Outcome) -> str:
        started = time.perf_counter()
        reply = self.client.post(
            "/v1/completions",
            json={
                "model": self.model,
                "prompt": render_chatml(messages),
                "max_tokens": self.max_tokens,
                "temperature": 0,
                "stop": ["</execute>", IM_END],
            },
        )
        reply.raise_for_status()
        body = reply.json()
        outcome.generation_s += time.perf_counter() - started
        outcome.completion_tokens += body["usage"]["completion_tokens"]
        text: str = body["choices"][0]["text"]
        if "<execute>" in text and "</execute>" not in text.split("<execute>", 1)[1]:
            text += "</execute>"  # the stop string, put back as the demo does
        return text

    def solve(self, task: str) -> Outcome:
        outcome = Outcome()
        messages = [{"role": "system", "content": PLAIN_SYSTEM}, {"role": "user", "content": task}]
        try:
            for _ in range(self.max_turns):
                text = self._generate(messages, outcome)
                messages.append({"role": "assistant", "content": text})
                execute, solution = _EXECUTE.search(text), _SOLUTION.search(text)
                if solution and (execute is None or solution.start() < execute.start()):
                    outcome.turns.append({"raw": text, "answer": solution.group(1).strip()})
                    outcome.answer, outcome.finish_reason = solution.group(1).strip(), "solution"
                    return outcome
                if execute is None:
                    outcome.turns.append({"raw": text})
                    outcome.answer, outcome.finish_reason = text.strip(), "no_action"
                    return outcome
                code = execute.group(1).strip("\n")
                result = self.sandbox.run(code, timeout=30)
                output = "\n".join(
                    part.rstrip("\n") for part in (result.stdout, result.stderr, result.error or "") if part.strip()
                )
                output = cut_middle(output)[0] if output.strip() else EMPTY
                outcome.turns.append({"raw": text, "code": code, "output": output})
                messages.append({"role": "user", "content": f"Execution Output:\n{output}"})
        except httpx.HTTPError as exc:
            outcome.finish_reason, outcome.error = "error", f"{type(exc).__name__}: {exc}"
        return outcome
