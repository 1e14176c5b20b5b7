"""The README cannot drift: its settings table and its Python examples are checked here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.agent.options import SETTING_PREFIX, LoopPolicy, markdown_table
from server.api.app import create_app
from server.settings import Settings
from tests.live_server import LiveServer

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        env, flag = f"CODEACT_{name.upper()}", "--" + name.replace("_", "-")
        if name.startswith(SETTING_PREFIX):  # a loop option: in the table made from its model
            assert f"| `{flag}`, `{env}` (`{name.removeprefix(SETTING_PREFIX)}`) |" in README, env
        else:
            assert f"| `{env}` | `{flag}` |" in README, f"{env} missing from the README table"


def test_the_loop_option_table_is_the_one_made_from_the_options_model() -> None:
    """Regenerate it with ``python -m server.agent.options`` after changing an option."""
    table = re.search(r"<!-- loop options:[^\n]*-->\n(.*?)<!-- end of loop options -->", README, re.DOTALL)
    assert table is not None, "the README lost its loop options markers"
    assert table.group(1) == markdown_table()


def test_every_option_names_a_results_section_that_exists() -> None:
    """An option's evidence points at the RESULTS.md section with its runs: a renamed or
    removed section fails here instead of leaving the README pointing nowhere."""
    results = (Path(__file__).resolve().parents[1] / "benchmarks" / "RESULTS.md").read_text()
    headings = {line.lstrip("#").strip() for line in results.splitlines() if line.startswith("#")}
    for name, info in LoopPolicy.model_fields.items():
        extra = info.json_schema_extra
        assert isinstance(extra, dict) and extra.get("measured"), f"{name} declares no evidence"
        assert extra.get("section") in headings, f"{name}: no RESULTS.md heading {extra.get('section')!r}"


@pytest.fixture(scope="module")
def server(real_engine) -> Iterator[LiveServer]:
    settings = Settings(sandbox_pool_size=1)
    with LiveServer(create_app(settings, real_engine, close_engine=False)) as live:
        yield live


@pytest.mark.model
@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"example{i}" for i in range(len(PYTHON_BLOCKS))])
def test_python_examples_run_against_a_live_server(block: str, server: LiveServer, capsys) -> None:
    assert "http://127.0.0.1:8000" in block
    code = block.replace("http://127.0.0.1:8000", server.url)
    code = code.replace('extra_body={"max_turns": 3}', 'max_tokens=96, extra_body={"max_turns": 2}')
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own documentation
    assert capsys.readouterr().out.strip()
