"""Soak (issue 34's done-when): 8 sessions attack the bridge for 60 s while a ninth runs ordinary code.

Real uvicorn in this process (so its threads, file descriptors and memory are this test's to
count), the real sandbox, and the scripted model answering by the task: each hostile client
opens a session, has its code abuse the host-call bridge one way or another (a client tool
call it never answers, frames that do not decode, a forged result and a thread flooding the
pipe, a memory hog while a call waits, lone surrogates, a spinning child left behind), then
deletes the session and starts over. The ninth session runs ``print(6 * 7)``.

What must hold: the ninth's executions stay within 2x their quiet latency (medians), every
answer is a 200 (no 500), and after the soak the server's threads, fds and RSS are back to
what they were before it (RSS within 10 %), measured from a steady state (see ``WARM_S``).
"""

from __future__ import annotations

import gc
import os
import re
import statistics
import threading
import time

import httpx
import psutil
import pytest

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer
from tests.scripted_agent import ANSWER_AT_ONCE, MODEL

SOAK_S = 60.0
#: Attack before the baseline: the first minutes of any server grow its heap and malloc's
#: per-thread arenas to their working size, which is not a leak; growth after it is.
WARM_S = 15.0
HOSTILE_SESSIONS = 8
#: Between one attacker's requests: each attack costs the machine a worker restart or more,
#: and on 2 cores eight attackers with no pause measure CPU contention, not the bridge.
PACE_S = 1.0
CLIENT_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
_FRAME = (
    "import os, json, struct\nout = __codeact_call__.__self__._out\n"
    "def write_frame(body):\n    os.write(out, struct.pack('>I', len(body)) + body)\n"
)
#: What the hostile sessions' code does, in turn.
HOSTILE = [
    "print(lookup())",  # a client tool call nobody answers: the session is deleted under it
    _FRAME + "write_frame(b'[' * 50_000 + b']' * 50_000)\nimport time\ntime.sleep(5)",
    _FRAME + "write_frame(b'\\xff\\xfe not json')\nimport time\ntime.sleep(5)",
    _FRAME + "import sys, threading\ntoken = sys._getframe().f_back.f_locals['message']['id']\n"
    "write_frame(json.dumps({'op': 'result', 'id': token, 'stdout': 'z' * 2_000_000}).encode())\n"
    "threading.Thread(target=lambda: [os.write(out, b'\\xff' * 65536) for _ in iter(int, 1)], daemon=True).start()\n"
    "import time\ntime.sleep(2)",
    "import subprocess, sys\nhogs = [subprocess.Popen([sys.executable, '-c', \"x = b'x' * 300_000_000\\nimport time\\n"
    'time.sleep(30)"]) for _ in range(2)]\nprint(lookup())',  # over the tree's 512 MB while its call waits
    "try:\n    __codeact_call__('no\\udfffsuch', {'v': 'a\\ud800'})\nexcept Exception as e:\n    print(e)\n"
    "raise ValueError('bad \\udc80')",
    "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'while True: pass'])\nprint('left a spinner')",
]


def _turn(prompt: str) -> str:
    """The scripted model: the task names its code; once code ran, it answers."""
    last_user = prompt.rsplit("<|im_start|>user", 1)[-1]
    if "HOSTILE" not in last_user and "ORDINARY" not in last_user:  # an observation: code ran
        return "<solution>done</solution>"
    match = re.search(r"HOSTILE (\d+)", last_user)
    code = HOSTILE[int(match.group(1))] if match else "print(6 * 7)"
    return f"<execute>\n{code}\n</execute>"


class Totals:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: dict[int, int] = {}
        #: What went wrong beside a status: a request that raised, a run that ended in error.
        self.failures: list[str] = []

    def count(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


def _hostile(url: str, index: int, until: float, totals: Totals) -> None:
    """One hostile client: its session attacks in turn; a run left waiting for a client tool
    call (which this client never answers) costs it the session: it deletes it and opens another."""
    session: str | None = None
    with httpx.Client(base_url=url, timeout=60) as client:
        turn = index
        while time.monotonic() < until:
            kind = turn % len(HOSTILE)
            turn += 1
            body: dict[str, object] = {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"HOSTILE {kind}"}],
                "tools": [CLIENT_TOOL],
            }
            if session is not None:
                body["session_id"] = session
            try:
                reply = client.post("/v1/agent", json=body)
            except httpx.HTTPError as exc:  # counted, not left to kill this thread unseen
                totals.fail(f"HOSTILE {kind}: {exc!r}")
                session = None
                continue
            totals.count(reply.status_code)
            if reply.status_code != 200:
                session = None
                continue
            if reply.json()["agent"].get("error") is not None:  # a run waiting for its tool has none yet
                totals.fail(f"HOSTILE {kind}: the run failed: {reply.json()['agent']['error']}")
            session = reply.json()["agent"]["session_id"]
            if reply.json()["choices"][0]["finish_reason"] == "tool_calls":
                client.delete(f"/v1/agent/sessions/{session}")
                session = None
            time.sleep(PACE_S)
        if session is not None:
            client.delete(f"/v1/agent/sessions/{session}")


def _ordinary(client: httpx.Client, runs: int) -> list[float]:
    """`runs` executions of print(6 * 7) in one session (a new one every 10, to keep prompts short)."""
    seconds: list[float] = []
    session: str | None = None
    for run in range(runs):
        body: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": "ORDINARY"}]}
        if session is not None and run % 10:
            body["session_id"] = session
        reply = client.post("/v1/agent", json=body)
        assert reply.status_code == 200, reply.text
        agent = reply.json()["agent"]
        if session is not None and session != agent["session_id"]:
            client.delete(f"/v1/agent/sessions/{session}")
        session = agent["session_id"]
        step = agent["steps"][0]
        assert step["observation"]["stdout"] == "42\n", step
        seconds.append(step["timings"]["execution_s"])
    if session is not None:
        client.delete(f"/v1/agent/sessions/{session}")
    return seconds


def _attack(
    server: LiveServer, client: httpx.Client, engine: ScriptedEngine, seconds: float
) -> tuple[Totals, list[float]]:
    """`HOSTILE_SESSIONS` attackers for `seconds` while this thread runs ordinary code."""
    totals = Totals()
    until = time.monotonic() + seconds
    attackers = [
        threading.Thread(target=_hostile, args=(server.url, i, until, totals), daemon=True)
        for i in range(HOSTILE_SESSIONS)
    ]
    for attacker in attackers:
        attacker.start()
    loaded: list[float] = []
    while time.monotonic() < until - 1:
        loaded += _ordinary(client, 10)
        engine.requests.clear()  # the fake's own record of every prompt
    for attacker in attackers:
        attacker.join(90)
    engine.requests.clear()
    return totals, loaded


def _footprint() -> tuple[int, int, int]:
    gc.collect()
    return threading.active_count(), len(os.listdir("/proc/self/fd")), psutil.Process().memory_info().rss


def _settle(server: LiveServer, before: tuple[int, int, int], limit_s: float = 30) -> tuple[int, int, int]:
    """Until sessions are gone and threads and fds are back, at most `limit_s`."""
    deadline = time.monotonic() + limit_s
    while True:
        now = _footprint()
        sessions = httpx.get(server.url + "/health").json()["sessions"]
        if (sessions == 0 and now[0] <= before[0] and now[1] <= before[1]) or time.monotonic() > deadline:
            return now
        time.sleep(0.5)


@pytest.mark.slow
def test_eight_hostile_sessions_for_a_minute_leave_the_ninth_alone() -> None:
    engine = ScriptedEngine(responder=_turn)
    settings = Settings(
        sandbox_pool_size=2,
        execution_timeout=3,
        tool_wait_limit=3,
        max_sessions=HOSTILE_SESSIONS + 4,
        sandbox_memory_mb=512,
        sandbox_preimport=[],  # a pooled worker's pandas and pyplot would be most of the CPU here
        **ANSWER_AT_ONCE,
    )
    with LiveServer(create_app(settings, engine)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        _ordinary(client, 10)  # warm: imports, the pool, the first sessions
        quiet = _ordinary(client, 30)
        _attack(server, client, engine, WARM_S)  # the steady state leaks are measured from
        before = _settle(server, _footprint(), 10)
        totals, loaded = _attack(server, client, engine, SOAK_S)
        after = _settle(server, before)
    quiet_s, loaded_s = statistics.median(quiet), statistics.median(loaded)
    print(f"\nquiet {quiet_s * 1e3:.2f} ms, attacked {loaded_s * 1e3:.2f} ms ({len(loaded)} runs); {totals.statuses}")
    print(f"threads {before[0]}->{after[0]}, fds {before[1]}->{after[1]}, RSS {before[2] >> 20}->{after[2] >> 20} MiB")
    assert totals.failures == [], totals.failures
    assert set(totals.statuses) == {200}, totals.statuses
    assert sum(totals.statuses.values()) >= HOSTILE_SESSIONS * 20
    assert loaded_s <= 2 * quiet_s, (quiet_s, loaded_s)
    assert after[0] <= before[0] and after[1] <= before[1], (before, after)
    assert after[2] <= before[2] * 1.10, (before, after)
