"""Host calls: sandboxed code calling tools outside the sandbox, and trying to abuse that.

Real workers at every isolation level this machine offers (the ``make_sandbox`` fixture);
the handler is ``FunctionHostCalls`` (plain functions), which records what reached it, so
every abuse test can show that nothing but a permitted call reached the host.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import assert_fresh_run_works

from sandbox import Limits, Sandbox
from sandbox.host_calls import FunctionHostCalls, HostCallError

STUBS = """
def add(a, b=__codeact_unset__):
    return __codeact_call__('add', locals())

def echo(value):
    return __codeact_call__('echo', locals())
"""


class Recorder(FunctionHostCalls):
    """Functions by name, plus the calls that reached them."""

    def __init__(self, functions: dict[str, Callable[..., Any]], **kwargs: Any) -> None:
        super().__init__(functions, **kwargs)
        self.reached: list[tuple[str, dict[str, Any]]] = []

    def call(self, tool: str, arguments: dict[str, Any], timeout: float | None) -> Any:
        self.reached.append((tool, arguments))
        return super().call(tool, arguments, timeout)


def _fail(message: str) -> Any:
    raise HostCallError(message)


def tools(**extra: Callable[..., Any]) -> Recorder:
    return Recorder({"add": lambda a, b=1: a + b, "echo": lambda value: value, "fail": _fail, **extra})


@pytest.fixture
def tooled(make_sandbox: Callable[..., Sandbox]) -> Callable[..., tuple[Sandbox, Recorder]]:
    def make(handler: Recorder | None = None, limits: Limits | None = None) -> tuple[Sandbox, Recorder]:
        sb = make_sandbox(limits) if limits else make_sandbox()
        handler = handler or tools()
        sb.host_calls = handler
        sb.define(STUBS)
        return sb, handler

    return make


def test_a_loop_of_calls_in_one_run_with_positional_and_keyword_arguments(tooled: Callable[..., Any]) -> None:
    sb, handler = tooled()
    result = sb.run(
        "total = 0\nfor i in range(20):\n    total = add(total, b=i)\nprint(total, add(5), echo({'k': [1, 2.5, None]}))"
    )
    assert result.ok, result
    assert result.stdout == "190 6 {'k': [1, 2.5, None]}\n"
    assert len(result.host_calls) == len(handler.reached) == 22
    first = result.host_calls[0]
    assert (first.tool, first.arguments, first.error) == ("add", {"a": 0, "b": 0}, None)
    assert first.duration_s >= 0
    assert handler.reached[20] == ("add", {"a": 5})  # the parameter left out was not sent


def test_a_tool_error_is_an_exception_the_code_can_catch(tooled: Callable[..., Any]) -> None:
    sb, _ = tooled()
    caught = sb.run(
        "try:\n    __codeact_call__('fail', {'message': 'no such city'})\n"
        "except Exception as e:\n    print(type(e).__name__, e)"
    )
    assert caught.stdout == "ToolCallError no such city\n"
    assert caught.host_calls[0].error == "no such city"
    uncaught = sb.run("__codeact_call__('fail', {'message': 'quota exceeded'})")
    assert uncaught.error is not None and uncaught.error.endswith("ToolCallError: quota exceeded\n")
    assert "host_stub" not in uncaught.error  # the traceback ends at the code's own line


def test_unknown_tools_reach_nothing(tooled: Callable[..., Any]) -> None:
    sb, handler = tooled()
    result = sb.run(
        "for name in ['open', '__init__', '../add', 'add ', None, 7]:\n"
        "    try:\n        __codeact_call__(name, {})\n    except Exception as e:\n        print(type(e).__name__, e)"
    )
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        f"ToolCallError no tool named {n} is available in this session" for n in ["open", "__init__", "../add", "add "]
    ]
    assert lines[4:] == ["TypeError the tool name must be a str"] * 2
    assert handler.reached == []


def test_arguments_must_be_json_and_within_the_limit(tooled: Callable[..., Any]) -> None:
    sb, handler = tooled(limits=Limits(wall_seconds=5, host_argument_bytes=10_000))
    result = sb.run(
        "for value in [object(), float('nan'), 'x' * 20_000]:\n"
        "    try:\n        echo(value)\n    except Exception as e:\n        print(type(e).__name__, str(e)[:60])"
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("TypeError arguments of echo must be JSON data")
    assert lines[1].startswith("TypeError arguments of echo must be JSON data")
    assert lines[2].startswith("ToolCallError arguments of echo are 20013 bytes; the limit is 10000")
    assert handler.reached == []


def _pipe_writer(frame_source: str) -> str:
    """Code that bypasses the stub and writes a frame to the protocol pipe itself, then reads the reply."""
    return (
        "import os, json, struct\n"
        "stub = __codeact_call__.__self__\n"
        f"body = json.dumps({frame_source}).encode()\n"
        "os.write(stub._out, struct.pack('>I', len(body)) + body)\n"
        "size = struct.unpack('>I', os.read(stub._in, 4))[0]\n"
        "print(json.loads(os.read(stub._in, size)))\n"
    )


def test_forged_call_frames_are_checked_by_the_server(tooled: Callable[..., Any]) -> None:
    sb, handler = tooled(limits=Limits(wall_seconds=5, host_argument_bytes=1000))
    oversized = sb.run(_pipe_writer("{'op': 'call', 'id': 1, 'tool': 'echo', 'arguments': {'value': 'x' * 5000}}"))
    assert "the arguments of echo are 5013 bytes; the limit is 1000" in oversized.stdout
    unknown = sb.run(_pipe_writer("{'op': 'call', 'id': 2, 'tool': 'os.system', 'arguments': {'cmd': 'id'}}"))
    assert "no tool named os.system is available" in unknown.stdout
    not_object = sb.run(_pipe_writer("{'op': 'call', 'id': 3, 'tool': 'echo', 'arguments': ['a']}"))
    assert "must be a JSON object" in not_object.stdout
    bad_id = sb.run(_pipe_writer("{'op': 'call', 'id': 'x', 'tool': 'echo', 'arguments': {}}"))
    assert "integer id" in bad_id.stdout
    assert handler.reached == []
    direct = sb.run(_pipe_writer("{'op': 'call', 'id': 4, 'tool': 'echo', 'arguments': {'value': 1}}"))
    assert "'ok': True, 'value': 1" in direct.stdout  # a well-formed call is just a call
    assert handler.reached == [("echo", {"value": 1})]


def test_a_frame_that_is_not_a_call_kills_the_worker(tooled: Callable[..., Any]) -> None:
    sb, handler = tooled()
    result = sb.run(_pipe_writer("{'op': 'configure', 'limits': {}}"))
    assert result.killed_reason == "crashed" and result.state_lost
    assert "does not accept" in (result.detail or "")
    garbage = sb.run(
        "import os\nos.write(__codeact_call__.__self__._out, b'\\x00\\x00\\x00\\x05{{{{{')\nimport time\ntime.sleep(5)"
    )
    assert garbage.killed_reason == "crashed"
    assert handler.reached == []
    # The tools the session was given come back with the fresh worker.
    again = sb.run("print(add(1, 2))")
    assert again.stdout == "3\n" and again.state_lost


def test_the_worker_holds_no_socket_or_handle_but_its_pipes(tooled: Callable[..., Any]) -> None:
    sb, _ = tooled()
    result = sb.run(
        "import os, stat\n"
        "kinds = []\n"
        "for fd in range(1024):\n"
        "    try:\n        kinds.append(stat.S_IFMT(os.fstat(fd).st_mode))\n"
        "    except OSError:\n        pass\n"
        "print([k for k in kinds if k == stat.S_IFSOCK])\n"
        "print(sorted(k for k in vars(__codeact_call__.__self__) if not k.startswith('__')))"
    )
    assert result.ok, result
    sockets, fields = result.stdout.splitlines()
    assert sockets == "[]"
    assert fields == "['_in', '_lock', '_main_pid', '_next_id', '_out', 'max_argument_bytes']"


def test_calls_from_a_child_process_are_refused(tooled: Callable[..., Any]) -> None:
    sb, handler = tooled()
    result = sb.run(
        "import os\nr, w = os.pipe()\npid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n        add(1, 1)\n        os.write(w, b'called')\n"
        "    except Exception as e:\n        os.write(w, repr(e).encode())\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\nprint(os.read(r, 200).decode())"
    )
    assert "only be called from the session's own Python process" in result.stdout
    assert handler.reached == []


def test_a_slow_call_times_out_and_the_code_goes_on(tooled: Callable[..., Any]) -> None:
    handler = tools(slow=lambda: time.sleep(3) or "late")
    handler.timeouts["slow"] = 0.5
    sb, _ = tooled(handler)
    result = sb.run("try:\n    __codeact_call__('slow', {})\nexcept Exception as e:\n    print(e)\nprint(add(2, 2))")
    assert result.stdout == "slow did not answer within 0.5 s\n4\n"
    assert result.host_calls[0].error == "slow did not answer within 0.5 s"
    assert 0.5 <= result.host_calls[0].duration_s < 2


def test_the_wall_clock_limit_pauses_while_a_call_waits(tooled: Callable[..., Any]) -> None:
    sb, _ = tooled(tools(wait=lambda: time.sleep(0.8) or "done"), limits=Limits(wall_seconds=1))
    result = sb.run("print([__codeact_call__('wait', {}) for _ in range(3)])")
    assert result.ok, result
    assert result.stdout == "['done', 'done', 'done']\n"
    assert result.duration_s > 2.4
    spinning = sb.run("while True:\n    pass")  # the limit itself still holds
    assert spinning.killed_reason == "timeout"


def test_results_must_be_json_and_within_the_limit(tooled: Callable[..., Any]) -> None:
    sb, _ = tooled(
        tools(big=lambda: "y" * 5000, odd=lambda: {1, 2}), limits=Limits(wall_seconds=5, host_result_bytes=1000)
    )
    result = sb.run(
        "for name in ['big', 'odd']:\n    try:\n        __codeact_call__(name, {})\n"
        "    except Exception as e:\n        print(e)"
    )
    assert result.stdout.splitlines() == [
        "the result of big is 5002 bytes; the limit is 1000",
        "odd returned a value that is not JSON data (set)",
    ]


def test_killing_the_run_during_a_call_cancels_the_call(tooled: Callable[..., Any]) -> None:
    gate = threading.Event()
    sb, handler = tooled(tools(hang=lambda: gate.wait(30)))
    threading.Timer(0.5, sb.kill).start()
    result = sb.run("__codeact_call__('hang', {})")
    gate.set()
    assert result.killed_reason == "cancelled" and result.state_lost
    assert handler.cancelled.is_set()
    assert result.host_calls[0].error == "hang was not answered: the execution was cancelled"
    assert_fresh_run_works(sb)


def test_an_interrupt_during_a_call_keeps_the_session(tooled: Callable[..., Any]) -> None:
    gate = threading.Event()
    sb, _ = tooled(tools(hang=lambda: gate.wait(30)))
    sb.run("kept = 41")
    threading.Timer(0.5, sb.interrupt).start()
    result = sb.run("__codeact_call__('hang', {})")
    gate.set()
    # The interrupt reaches the code in its wait, or just after the refused call returned.
    assert "KeyboardInterrupt" in (result.error or "") or "the execution was interrupted" in (result.error or "")
    assert not result.state_lost
    after = sb.run("print(kept + 1, add(1, 1))")  # the abandoned call's answer was not read as this run's
    assert after.stdout == "42 2\n", after


def test_no_handler_means_no_tools(make_sandbox: Callable[..., Sandbox]) -> None:
    sb = make_sandbox()
    result = sb.run("__codeact_call__('add', {'a': 1})")
    assert "ToolCallError: no tool named add is available in this session" in (result.error or "")
