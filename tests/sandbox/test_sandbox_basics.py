"""Ordinary use: state, display, errors, output, files, `!pip`, policy, threads."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import FAST, assert_fresh_run_works

from sandbox import ExecResult, Limits, Sandbox
from sandbox.worker.capture import CappedBuffer
from sandbox.worker.execute import rewrite_bang_lines


def test_state_persists_and_trailing_expression_is_shown(sb: Sandbox) -> None:
    assert sb.isolation in {"namespaces", "landlock", "rlimits+uid", "rlimits-only"}
    first = sb.run("x = 41\nprint(x + 1)")
    assert isinstance(first, ExecResult)
    assert (first.stdout, first.error, first.state_lost) == ("42\n", None, False)
    assert sb.run("x").stdout == "41\n"
    assert sb.run("y = [x]; y").stdout == "[41]\n"
    assert sb.run("None").stdout == ""
    assert sb.run("def f(a):\n    return a * 2\nf(x)").stdout == "82\n"


def test_error_is_a_traceback_of_the_cell_only(sb: Sandbox) -> None:
    result = sb.run("a = 1\n1 / 0")
    assert result.error is not None
    assert "ZeroDivisionError" in result.error
    assert "1 / 0" in result.error
    assert "worker.py" not in result.error
    assert result.killed_reason is None and not result.state_lost
    assert sb.run("a").stdout == "1\n"
    syntax = sb.run("def (")
    assert syntax.error is not None and "SyntaxError" in syntax.error


def test_output_is_truncated_keeping_head_and_tail(make_sandbox: object) -> None:
    sb = make_sandbox(Limits(max_output_bytes=1000))  # type: ignore[operator]
    result = sb.run("print('HEAD'); print('m' * 50_000); print('TAIL'); z = 5")
    assert result.truncated and result.ok
    assert result.stdout.startswith("HEAD")
    assert result.stdout.rstrip().endswith("TAIL")
    assert "output truncated" in result.stdout
    assert len(result.stdout) < 1200
    assert result.notice and "truncated" in result.notice
    assert sb.run("z").stdout == "5\n"  # the worker stayed alive


def test_child_process_output_is_captured(sb: Sandbox) -> None:
    result = sb.run("import subprocess\nsubprocess.run(['echo', 'from child'])\nprint('parent')")
    assert "from child" in result.stdout and "parent" in result.stdout


def test_bang_lines_answer_in_words(sb: Sandbox) -> None:
    result = sb.run("!pip install pandas\nprint('after')")
    assert result.error is None
    assert "installing packages is disabled" in result.stdout
    assert "importlib.metadata" in result.stdout
    assert "after" in result.stdout
    other = sb.run("!ls -la")
    assert "not supported" in other.stdout and "subprocess" in other.stdout
    assert sb.run("%pip install numpy").error is None
    assert rewrite_bang_lines("x = 1") is None


def test_files_created_or_changed_are_listed(sb: Sandbox) -> None:
    result = sb.run(
        "open('a.txt', 'w').write('1')\nimport os\nos.makedirs('d', exist_ok=True)\nopen('d/b.txt', 'w').write('2')"
    )
    assert result.files == ["a.txt", "d/b.txt"]
    assert (sb.workspace / "a.txt").read_text() == "1"
    assert sb.run("print(open('a.txt').read())").files == []
    assert sb.run("open('a.txt', 'a').write('more')").files == ["a.txt"]


def test_restricted_policy_rejects_dunder_escapes(make_sandbox: object) -> None:
    sb = make_sandbox(policy="restricted")  # type: ignore[operator]
    result = sb.run("().__class__.__subclasses__()")
    assert result.error is not None and "restricted policy rejected" in result.error
    ok = sb.run("import math\nv = [math.sqrt(i) for i in range(3)]\nprint(len(v))\nsum(v) > 2")
    assert ok.error is None, ok.error
    assert ok.stdout == "3\nTrue\n"
    assert "not allowed" in (sb.run("import os").error or "")
    assert_fresh_run_works(sb)


def test_interrupt_from_another_thread_keeps_state(sb: Sandbox) -> None:
    sb.run("kept = 'yes'")
    threading.Timer(0.5, sb.interrupt).start()
    result = sb.run("import time\ntime.sleep(30)")
    assert result.error is not None and "KeyboardInterrupt" in result.error
    assert not result.state_lost
    assert sb.run("kept").stdout == "'yes'\n"


def test_kill_from_another_thread(sb: Sandbox) -> None:
    threading.Timer(0.5, sb.kill).start()
    started = time.monotonic()
    result = sb.run("while True: pass")
    assert time.monotonic() - started < 4
    assert result.killed_reason == "cancelled" and result.state_lost
    after = sb.run("1 + 1")
    assert after.stdout == "2\n" and after.state_lost
    assert after.notice and "restarted" in after.notice


def test_close_from_another_thread_ends_run() -> None:
    sb = Sandbox(limits=FAST)
    closer = threading.Timer(0.5, sb.close)
    closer.start()
    result = sb.run("import time\ntime.sleep(30)")
    assert result.killed_reason == "cancelled"
    closer.join(timeout=10)
    assert sb.closed and not sb.workspace.exists()
    with pytest.raises(Exception, match="closed"):
        sb.run("1")


def test_matplotlib_show_saves_png(sb: Sandbox) -> None:
    pytest.importorskip("matplotlib")
    result = sb.run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    assert result.error is None, result.error
    assert result.files == ["figure_1.png"]


def test_capped_buffer_counts_everything() -> None:
    buffer = CappedBuffer(10)
    for chunk in (b"abc", b"defgh", b"ijklmnop", b"qrst"):
        buffer.write(chunk)
    assert buffer.total == 20 and buffer.truncated
    text = buffer.render()
    assert text.startswith("abcde") and text.endswith("pqrst") and "10 bytes omitted" in text
