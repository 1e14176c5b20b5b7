"""``codeact-server run "TASK"``: one agent task from the terminal, steps shown live.

Against a running server (``--server URL``) or in-process: the same HTTP path either way
(the in-process mode serves the app on a private loopback port), so what the terminal
shows is exactly what any client of ``/v1/agent`` gets. A tool call that waits for approval
(``server.tools.approvals``) is shown, and asked about on the terminal when there is one;
without one it waits until the server's ``--approval-timeout`` denies it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import httpx

from models.engine.sse import MalformedEventError, sse_json
from server.agent.consensus.vote import Agreement
from server.agent.policy import FORCED_NOTES

COLORS = {"thought": "", "code": "\033[36m", "answer": "\033[1;32m", "output": "\033[2m", "note": "\033[33m"}
RESET = "\033[0m"


def add_run_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser(
        "run",
        help="run one agent task and show its steps live",
        description="Run one CodeAct task: the model thinks, writes code, the sandbox runs it, "
        "until it answers. Steps stream to the terminal as they happen.",
    )
    run.add_argument("task", help="what the agent should do, in plain words")
    run.add_argument("--server", help="URL of a running codeact-server (default: start one in-process)")
    run.add_argument("--model", default=None, help="model name on the server, or model to load in-process")
    run.add_argument("--max-turns", type=int, default=None, help="agent turns (default: the server's, 5)")
    run.add_argument("--session", help="continue an earlier session (its variables and files)")
    run.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0)")
    run.add_argument(
        "--samples",
        type=int,
        default=None,
        help="runs of the task side by side, answered by the answer most agree on (default: the server's, 1); "
        "run 0 streams, the others show their answers as they end",
    )
    run.add_argument("--api-key", default=os.environ.get("CODEACT_API_KEY"), help="bearer token, if required")
    run.add_argument("--json", action="store_true", help="print the final response as JSON instead")


class TerminalView:
    """Prints agent stream events with colour (when the output is a terminal)."""

    def __init__(self, out: TextIO, decide: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.out = out
        #: Asks about an ``approval_request`` event and sends the decision (None: nobody asks).
        self.decide = decide
        self.color = out.isatty() and "NO_COLOR" not in os.environ
        self._channel: str | None = None

    def _write(self, text: str, kind: str) -> None:
        if self.color and COLORS.get(kind):
            text = COLORS[kind] + text + RESET
        self.out.write(text)
        self.out.flush()

    def event(self, agent: dict[str, Any]) -> None:
        """Show one event. With samples, run 0 streams as a plain run would; every other run
        only says what it answered when it ends, and the last line says how many agreed."""
        kind = agent.get("type")
        if kind == "sample_done":
            self._sample_done(agent)
            return
        if agent.get("sample"):
            return
        if kind == "delta":
            if agent["channel"] != self._channel:
                header = {"code": "\n--- code ---\n", "answer": "\n--- answer ---\n"}.get(agent["channel"], "\n")
                self._write(header, "note")
                self._channel = agent["channel"]
            self._write(agent["text"], agent["channel"])
        elif kind == "approval_request":
            self._channel = None
            call = f"{agent['server']}.{agent['tool']}({json.dumps(agent['arguments'], ensure_ascii=False)})"
            self._write(f"\n[approval needed: {call}]\n", "note")
            if self.decide is not None:
                self.decide(agent)
        elif kind == "step":
            observation = agent["step"].get("observation")
            self._channel = None
            if observation:
                self._write("\n--- output ---\n" + observation["message"] + "\n", "output")
        elif kind == "done":
            forced = agent.get("forced_answer")
            if forced:
                self._write(f"\n[{FORCED_NOTES.get(forced, 'answer forced: ' + forced)}]", "note")
            if agent.get("agreement"):
                agreement = Agreement(**agent["agreement"])
                self._write(f"\n[{agreement.describe()}; the answer of sample {agreement.sample}]", "note")
            self._write(
                f"\n[{agent['finish_reason']} after {agent['turns']} turn(s); session {agent['session_id']}]\n", "note"
            )

    def _sample_done(self, agent: dict[str, Any]) -> None:
        answer = agent["answer"] if agent["answer"] is not None else "no answer"
        self._channel = None
        self._write(
            f"\n[sample {agent['sample']}: {answer} ({agent['finish_reason']} after {agent['turns']} turn(s))]", "note"
        )


def terminal_decider(
    url: str, api_key: str | None, ask: Callable[[str], str] | None = None
) -> Callable[[dict[str, Any]], None] | None:
    """Ask `ask` (the terminal's ``input`` when stdin is one) about each approval request and
    send the answer; None when there is nobody to ask."""
    if ask is None:
        if not sys.stdin.isatty():
            return None
        ask = input
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def decide(agent: dict[str, Any]) -> None:
        approve = ask("Approve this call? [y/N] ").strip().lower() in ("y", "yes")
        where = f"{url.rstrip('/')}/v1/agent/sessions/{agent['session_id']}/approvals/{agent['id']}"
        httpx.post(where, json={"approve": approve}, headers=headers, timeout=30).raise_for_status()

    return decide


def stream_task(url: str, body: dict[str, Any], api_key: str | None, view: TerminalView) -> dict[str, Any]:
    """POST a streaming agent request and feed its events to ``view``; return the done event."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    done: dict[str, Any] = {}
    with httpx.stream("POST", url.rstrip("/") + "/v1/agent", json=body, headers=headers, timeout=None) as r:
        if r.status_code != 200:
            r.read()
            message = r.json().get("error", {}).get("message", r.text) if r.text else str(r.status_code)
            raise RuntimeError(f"server answered {r.status_code}: {message}")
        for chunk in sse_json(r.iter_lines()):
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            agent = chunk.get("agent")
            if agent:
                view.event(agent)
                if agent.get("type") == "done":
                    done = agent
    return done


@contextmanager
def in_process_server(model: str | None) -> Iterator[str]:
    """Load the model and serve the app on a private loopback port for the duration."""
    from server.cli.errors import load_engine, load_llama_first
    from server.settings import Settings

    # A one-shot run keeps no records: the default store belongs to `serve`, which may be running.
    settings = Settings(model=model, store="none") if model else Settings(store="none")
    load_llama_first(settings)  # before the app's imports load numpy: see load_first's docstring
    engine = load_engine(settings)
    from server.api.app import create_app
    from server.api.loopback import LoopbackServer

    with LoopbackServer(create_app(settings, engine), name="codeact-run-uvicorn") as server:
        yield server.url


def cmd_run(args: argparse.Namespace) -> int:
    from server.cli.errors import CLIError

    body: dict[str, Any] = {
        "model": args.model or "default",
        "messages": [{"role": "user", "content": args.task}],
        "stream": True,
        "temperature": args.temperature,
    }
    if args.max_turns:
        body["max_turns"] = args.max_turns
    if args.session:
        body["session_id"] = args.session
    if args.samples is not None:
        body["samples"] = args.samples
    view = TerminalView(sys.stdout)
    try:
        if args.server:
            if not args.model:
                models = httpx.get(args.server.rstrip("/") + "/v1/models", timeout=10).json()
                body["model"] = models["data"][0]["id"]
            view.decide = terminal_decider(args.server, args.api_key)
            done = stream_task(args.server, body, args.api_key, view)
        else:
            with in_process_server(args.model) as url:
                view.decide = terminal_decider(url, args.api_key)
                done = stream_task(url, body, args.api_key, view)
    except (httpx.HTTPError, MalformedEventError, RuntimeError) as exc:
        raise CLIError(str(exc)) from exc
    if args.json:
        print(json.dumps(done, indent=2))
    return 0 if done.get("finish_reason") in ("solution", "no_action") else 1
