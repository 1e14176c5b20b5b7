"""The host-call bridge under hostile code (issue 34): real workers at every isolation level.

The code under test writes its own frames to the protocol pipe, abandons calls, never reads
its answers, forges results and feeds odd strings, as an attacker inside the sandbox would.
Each test names the class of attack it stands for; each failed before the bridge was rebuilt
(``sandbox/bridge/``): a blocked server, limits off while a call waited, a forged result
taken for the run's, an exception out of ``Sandbox.run``, unbounded records, a leftover
process that outlived its cell.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest
from conftest import FAST, assert_fresh_run_works

from sandbox import Limits, Sandbox
from sandbox.bridge.calls import MAX_RECORDS
from sandbox.host_calls import FunctionHostCalls

#: Code that writes one raw frame to the protocol pipe, bypassing the stub.
WRITE_FRAME = (
    "import os, json, struct\n"
    "def write_frame(message, raw=None):\n"
    "    body = raw if raw is not None else json.dumps(message).encode()\n"
    "    os.write(__codeact_call__.__self__._out, struct.pack('>I', len(body)) + body)\n"
)


#: A call of the tool "big" whose answer the code never reads: it sleeps instead.
NEVER_READ = "write_frame({'op': 'call', 'id': 1, 'tool': 'big', 'arguments': {}})\nimport time\ntime.sleep(60)"


def _tooled(make_sandbox: Callable[..., Sandbox], limits: Limits = FAST, **functions: Any) -> Sandbox:
    sb = make_sandbox(limits)
    sb.host_calls = FunctionHostCalls({"echo": lambda value: value, **functions})
    return sb


def _timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    value = action()
    return value, time.monotonic() - started


# -- the server froze: a worker that never reads its answers ------------------------------------
def test_a_worker_that_never_reads_its_answer_is_stopped_by_its_own_wall_clock(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    sb = _tooled(make_sandbox, Limits(wall_seconds=2, cpu_seconds=5, memory_mb=512), big=lambda: "y" * 900_000)
    code = (
        WRITE_FRAME
        + "write_frame({'op': 'call', 'id': 1, 'tool': 'big', 'arguments': {}})\nimport time\ntime.sleep(60)"
    )
    result, took = _timed(lambda: sb.run(code))
    assert result.killed_reason == "timeout" and result.state_lost, result
    assert took < 6, f"the run outlived its 2 s wall clock: {took:.1f} s"
    assert_fresh_run_works(sb)


def test_close_never_blocks_on_a_worker_that_stopped_reading(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = _tooled(make_sandbox, Limits(wall_seconds=30, cpu_seconds=30, memory_mb=512), big=lambda: "y" * 900_000)
    code = (
        WRITE_FRAME
        + "write_frame({'op': 'call', 'id': 1, 'tool': 'big', 'arguments': {}})\nimport time\ntime.sleep(60)"
    )
    results: list[Any] = []
    runner = threading.Thread(target=lambda: results.append(sb.run(code)))
    runner.start()
    time.sleep(1.0)  # the answer is queued, the pipe full, the worker asleep
    _, took = _timed(sb.close)
    runner.join(10)
    assert took < 5, f"close() took {took:.1f} s"
    assert not runner.is_alive() and results[0].killed_reason == "cancelled"


# -- limits while a call waits ----------------------------------------------------------------
def test_memory_is_watched_while_the_first_statement_waits_for_a_call(make_sandbox: Callable[..., Sandbox]) -> None:
    gate = threading.Event()
    handler = FunctionHostCalls({"hang": lambda: gate.wait(60)})
    sb = make_sandbox(Limits(wall_seconds=30, cpu_seconds=30, memory_mb=256))
    sb.host_calls = handler
    hog = "import time\nx = b'x' * 150_000_000\ntime.sleep(60)"
    code = (
        "import subprocess, sys\n"
        f"hogs = [subprocess.Popen([sys.executable, '-c', {hog!r}]) for _ in range(2)]\n"
        "__codeact_call__('hang', {})"
    )
    try:
        result, took = _timed(lambda: sb.run(code))
    finally:
        gate.set()
    assert result.killed_reason == "memory", result
    assert took < 20
    assert result.host_calls[0].error == "hang was not answered: the execution was stopped"
    assert_fresh_run_works(sb)


def test_a_runs_calls_share_the_operators_wait_budget(make_sandbox: Callable[..., Sandbox]) -> None:
    gate = threading.Event()
    limits = Limits(wall_seconds=5, cpu_seconds=5, memory_mb=512, host_wait_seconds=1.0)
    sb = _tooled(make_sandbox, limits, hang=lambda: gate.wait(60))
    sb.host_calls.timeouts["hang"] = float("inf")  # type: ignore[union-attr] - as a client's tool: no timeout of its own
    code = (
        "for _ in range(3):\n    try:\n        __codeact_call__('hang', {})\n"
        + "    except Exception as e:\n        print(e)"
    )
    try:
        result, took = _timed(lambda: sb.run(code))
    finally:
        gate.set()
    lines = result.stdout.splitlines()
    assert lines[0] == "hang did not answer within 1 s", result
    assert all("the limit is 1 s" in line for line in lines[1:]), lines
    assert took < 4


# -- the host trusted what the worker wrote ------------------------------------------------------
def test_a_forged_result_is_not_the_runs_and_the_next_run_is_fresh(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = _tooled(make_sandbox)
    forged = (
        WRITE_FRAME + "write_frame({'op': 'result', 'id': 1, 'stdout': 'z' * 3_000_000, 'stderr': '', 'error': None})\n"
        "import time\ntime.sleep(1)\nprint('late')"
    )
    result = sb.run(forged)
    assert result.killed_reason == "crashed" and result.state_lost, result
    assert "protocol" in (result.detail or "") and len(result.stdout) < FAST.max_output_bytes
    fresh = sb.run("print('fresh')")
    assert fresh.stdout == "fresh\n", fresh


def test_a_result_forged_with_the_runs_token_is_held_to_the_output_limit(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = _tooled(make_sandbox)
    forged = (
        WRITE_FRAME + "import sys\ntoken = sys._getframe().f_back.f_locals['message']['id']\n"
        "write_frame({'op': 'result', 'id': token, 'stdout': 'z' * 3_000_000, 'stderr': '', 'error': None})\n"
        "import time\ntime.sleep(1)\nprint('stale')"
    )
    result = sb.run(forged)
    assert len(result.stdout.encode()) < FAST.max_output_bytes + 200 and result.truncated, len(result.stdout)
    time.sleep(2)  # the cell went on and its real result is in the pipe now
    fresh = sb.run("print('fresh')")
    assert fresh.stdout == "fresh\n" and "stale" not in fresh.stdout, fresh
    assert fresh.state_lost and "nobody asked for" in (fresh.detail or "")


def test_a_cell_that_goes_on_after_a_forged_result_is_held_to_the_limits_between_runs(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    sb = make_sandbox(Limits(wall_seconds=5, cpu_seconds=5, memory_mb=256))
    hog = "import time\nx = b'x' * 150_000_000\ntime.sleep(60)"
    forged = (
        WRITE_FRAME + "import subprocess, sys, time\ntoken = sys._getframe().f_back.f_locals['message']['id']\n"
        "write_frame({'op': 'result', 'id': token, 'stdout': 'done', 'stderr': '', 'error': None})\n"
        "time.sleep(0.5)\n"  # after the server's end-of-cell look for leftover processes
        f"hogs = [subprocess.Popen([sys.executable, '-c', {hog!r}]) for _ in range(2)]\ntime.sleep(60)"
    )
    assert sb.run(forged).stdout == "done"  # the forgery ended the run: the cell goes on, unseen by it
    deadline = time.monotonic() + 15
    while sb.pid is not None:  # the idle watch kills the tree once it passes 256 MB
        assert time.monotonic() < deadline, "the tree ran on over its memory limit between runs"
        time.sleep(0.2)
    after = sb.run("print('fresh')")
    assert after.stdout == "fresh\n" and after.state_lost
    assert "Between runs the code's processes used more than the 256 MB memory limit" in (after.detail or "")


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"op": "call", "id": 1, "tool": "echo", "arguments": {"v": "\xff\xfe"}}'],
    ids=["nested-past-the-recursion-limit", "invalid-utf8"],
)
def test_a_frame_that_does_not_decode_resets_the_session_without_raising(
    make_sandbox: Callable[..., Sandbox], raw: bytes
) -> None:
    sb = _tooled(make_sandbox)
    sb.run("kept = 1")
    result = sb.run(WRITE_FRAME + f"write_frame(None, raw={raw!r})\nimport time\ntime.sleep(5)")
    assert result.killed_reason == "crashed" and result.state_lost
    assert "malformed frame" in (result.detail or ""), result.detail
    after = sb.run("print('kept' in globals())")
    assert after.stdout == "False\n" and after.state_lost  # in step: the reset is said, not hidden


def test_call_records_are_bounded_in_number_and_size(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = _tooled(make_sandbox, Limits(wall_seconds=20, cpu_seconds=20, memory_mb=512))
    result = sb.run("for i in range(300):\n    __codeact_call__('echo', {'value': 'x' * 50_000})")
    assert result.ok, result
    assert len(result.host_calls) == MAX_RECORDS and result.host_calls_omitted == 300 - MAX_RECORDS
    assert result.host_calls[0].arguments == "<50013 bytes, not kept>"


# -- one odd character ------------------------------------------------------------------------
def test_lone_surrogates_come_back_encodable(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = _tooled(make_sandbox)
    result = sb.run(
        "print('out \\ud800')\ntry:\n    __codeact_call__('no\\udfffsuch', {})\nexcept Exception as e:\n    print(e)\n"
        "raise ValueError('bad \\udc80 text')"
    )
    for text in (result.stdout, result.error or "", *(c.tool for c in result.host_calls)):
        text.encode("utf-8")  # strict: raises on a lone surrogate
    assert "ValueError: bad \ufffd text" in (result.error or "")
    passed = sb.run("try:\n    __codeact_call__('echo', {'value': 'a\\ud800'})\nexcept Exception as e:\n    print(e)")
    assert "not valid Unicode" in passed.stdout, passed


# -- processes a cell leaves running ------------------------------------------------------------
def test_processes_a_cell_leaves_running_end_with_it(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox()
    result = sb.run(
        "import subprocess, sys\n"
        "spin = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        "sleeper = subprocess.Popen(['sleep', '300'])\nprint(spin.pid, sleeper.pid)"
    )
    assert result.ok, result
    assert "left running were ended with the cell" in (result.detail or ""), result.detail
    worker = psutil.Process(sb.pid)
    alive = [p for p in worker.children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
    assert [p.pid for p in alive if p.pid not in sb._proc.helpers] == []  # noqa: SLF001
    assert sb.run("print(6 * 7)").stdout == "42\n"


def test_keep_processes_lets_them_run(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox(keep_processes=True)
    result = sb.run("import subprocess\nsubprocess.Popen(['sleep', '300'])")
    assert result.ok and result.detail is None
    assert any("sleep" in " ".join(p.cmdline()) for p in psutil.Process(sb.pid).children(recursive=True))


# -- the seam's older shape -----------------------------------------------------------------------
class BlockingOnly:
    """A handler written against the blocking seam: ``call`` answers on the caller's thread."""

    def knows(self, tool: str) -> bool:
        return tool == "double"

    def timeout_for(self, tool: str) -> float | None:
        return None

    def call(self, tool: str, arguments: dict[str, Any], timeout: float | None) -> Any:
        return 2 * arguments["x"]

    def cancel(self) -> None:
        pass


def test_a_handler_with_only_a_blocking_call_still_answers(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox()
    sb.host_calls = BlockingOnly()  # type: ignore[assignment]
    result = sb.run("print(__codeact_call__('double', {'x': 21}))")
    assert result.stdout == "42\n", result
