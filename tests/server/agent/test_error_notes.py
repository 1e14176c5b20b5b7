"""``observation_hints``: what the model reads of an error, over real HTTP and the real sandbox.

The tracebacks here are raised by real code in a real sandbox worker (a standard-library
call on a file that is not there goes through ``shutil``'s frames), so the trimming is
tested on what Python really prints, not on a hand-written traceback.
"""

from __future__ import annotations

import traceback

from models.engine.scripted import ScriptedEngine
from server.agent.error_notes import EMPTY_OUTPUT_HINT, error_hint, trim_traceback
from tests.live_server import LiveServer
from tests.scripted_agent import agent
from tests.server.agent.test_agent_scripted import turn_prompts

COPY_MISSING = "<execute>import shutil\nshutil.copy('inventory.csv', 'copy.csv')</execute>"


def test_library_frames_are_cut_and_a_missing_file_gets_a_hint(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue(COPY_MISSING, "<solution>none</solution>")
    reply = agent(server, observation_hints="hint")
    read = turn_prompts(engine)[1]
    assert 'File "<cell-1>", line 2, in <module>' in read
    assert "shutil.copy('inventory.csv', 'copy.csv')" in read
    assert "FileNotFoundError: [Errno 2] No such file or directory: 'inventory.csv'" in read
    assert "shutil.py" not in read and "library code cut]" in read
    assert "Hint: there is no file 'inventory.csv' in the workspace" in read
    # The client still gets the whole traceback; only what the model reads is cut.
    step = reply["agent"]["steps"][0]
    assert "shutil.py" in step["observation"]["error"]
    assert "Hint: there is no file 'inventory.csv'" in step["observation"]["message"]


def test_off_the_default_shows_the_traceback_as_it_is(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue(COPY_MISSING, "<solution>none</solution>")
    agent(server)
    read = turn_prompts(engine)[1]
    assert "shutil.py" in read
    assert "Hint:" not in read and "library code cut" not in read


def test_a_name_and_a_module_get_their_hints(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue(
        "<execute>print(total_price)</execute>", "<execute>import left_pad_js</execute>", "<solution>none</solution>"
    )
    agent(server, observation_hints="hint")
    after_name, after_module = turn_prompts(engine)[1:3]
    assert "Hint: 'total_price' is not defined." in after_name
    assert "Hint: the module 'left_pad_js' is not installed" in after_module


def test_code_that_printed_nothing_is_asked_to_print(server: LiveServer, engine: ScriptedEngine) -> None:
    engine.enqueue("<execute>x = sorted([3, 1, 2])</execute>", "<execute>print(x)</execute>", "<solution>x</solution>")
    agent(server, observation_hints="hint")
    after_silent, after_print = turn_prompts(engine)[1:3]
    assert "[Code executed successfully with no output]\n" + EMPTY_OUTPUT_HINT in after_silent
    assert after_print.startswith(after_silent)
    printed = after_print[len(after_silent) :]
    assert "[1, 2, 3]" in printed and EMPTY_OUTPUT_HINT not in printed


def _traceback_of(source: str) -> str:
    """The traceback Python prints for ``source`` run as a model's cell, library frames and all."""
    code = compile(source, "<cell-1>", "exec")
    try:
        exec(code, {})
    except Exception as error:
        assert error.__traceback__ is not None
        own = error.__traceback__.tb_next  # from the cell's frame on, as the sandbox's worker prints it
        return "".join(traceback.format_exception(type(error), error, own))
    raise AssertionError("the source did not raise")


def test_a_chained_exception_keeps_both_exceptions_and_own_frames() -> None:
    text = _traceback_of("import json\ntry:\n    json.loads('{bad')\nexcept ValueError:\n    raise KeyError('x')\n")
    assert "json/decoder.py" in text or "json\\decoder.py" in text
    trimmed = trim_traceback(text)
    assert "decoder.py" not in trimmed and "__init__.py" not in trimmed
    assert "json.decoder.JSONDecodeError: Expecting property name" in trimmed
    assert "During handling of the above exception, another exception occurred:" in trimmed
    assert trimmed.rstrip().endswith("KeyError: 'x'")
    assert trimmed.count('File "<cell-1>"') == 2
    assert "frames inside library code cut]" in trimmed


def test_own_frames_only_is_left_unchanged() -> None:
    text = _traceback_of("def f():\n    return 1 / 0\nf()\n")
    assert trim_traceback(text) == text.rstrip("\n")


def test_hints_only_for_the_slips_they_name() -> None:
    assert error_hint("Traceback...\nZeroDivisionError: division by zero\n") is None
    assert error_hint("") is None
    assert error_hint("NameError: name 'seven' is not defined") == (
        "Hint: 'seven' is not defined. Define or import it in the code that uses it."
    )
    module = error_hint("ModuleNotFoundError: No module named 'sympy.parsing'\n")
    assert module is not None and "'sympy.parsing'" in module
