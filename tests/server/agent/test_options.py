"""Each loop option is declared once (``server.agent.options.LoopPolicy``): the settings, the
``--agent-*`` flags and the ``/v1/agent`` request fields are made from it and cannot drift.
(The README's table is checked in tests/test_readme.py.)"""

from __future__ import annotations

import argparse
from typing import Annotated

import pydantic
import pytest

from server.agent.options import SETTING_PREFIX, LoopPolicy
from server.api.agent_schemas import AgentRequest
from server.cli.main import add_settings_flags, settings_from_args
from server.settings import SERVE_FLAGS, Settings

OPTIONS = LoopPolicy.model_fields
BODY = {"model": "m", "messages": [{"role": "user", "content": "x"}]}


def test_the_settings_are_the_options() -> None:
    settings = {
        n.removeprefix(SETTING_PREFIX): f for n, f in Settings.model_fields.items() if n.startswith(SETTING_PREFIX)
    }
    assert list(settings) == list(OPTIONS)
    for name, option in OPTIONS.items():
        setting = settings[name]
        assert (setting.annotation, setting.default, setting.description) == (
            option.annotation,
            option.default,
            option.description,
        ), name
    assert Settings().loop_policy() == LoopPolicy()
    assert [f for f in SERVE_FLAGS if f.startswith(SETTING_PREFIX)] == [SETTING_PREFIX + n for n in OPTIONS]


def test_the_request_fields_are_the_options() -> None:
    schema = AgentRequest.model_json_schema()["properties"]
    for name, option in OPTIONS.items():
        field = AgentRequest.model_fields[name]
        bounded = Annotated[(option.annotation, *option.metadata)] if option.metadata else option.annotation
        assert field.default is None and field.annotation == bounded | None, name
        assert field.description is not None and field.description.startswith(option.description or "?"), name
        assert option.description in schema[name]["description"]


def test_an_options_bounds_hold_for_the_setting_and_the_request_field() -> None:
    assert Settings(agent_samples=8).loop_policy().samples == 8
    with pytest.raises(pydantic.ValidationError, match="agent_samples"):
        Settings(agent_samples=9)
    with pytest.raises(pydantic.ValidationError, match="samples"):
        AgentRequest.model_validate({**BODY, "samples": 0})


def test_a_request_overrides_only_the_options_it_sets() -> None:
    server = Settings(agent_on_repeat="note", agent_final_answer=False, agent_prompt_style="chat")
    request = AgentRequest.model_validate({**BODY, "on_repeat": "off", "fenced_code": "off"})
    policy = request.agent_options(server).policy
    assert policy == LoopPolicy(on_repeat="off", final_answer=False, prompt_style="chat", fenced_code="off")
    assert AgentRequest.model_validate({**BODY, "final_answer": True}).agent_options(server).policy.final_answer
    assert AgentRequest.model_validate(BODY).agent_options(Settings()).policy == LoopPolicy()


def test_the_env_vars_and_flags_set_the_options(monkeypatch) -> None:  # noqa: ANN001 - pytest's fixture
    monkeypatch.setenv("CODEACT_AGENT_ON_FAILED_REPEAT", "note")
    monkeypatch.setenv("CODEACT_AGENT_FINAL_ANSWER", "false")
    assert Settings().loop_policy() == LoopPolicy(on_failed_repeat="note", final_answer=False)
    parser = argparse.ArgumentParser(formatter_class=lambda prog: argparse.HelpFormatter(prog, width=100_000))
    add_settings_flags(parser, SERVE_FLAGS)  # as `codeact-server serve` does; wide: no wrapping at hyphens
    help_text = parser.format_help()
    flat = " ".join(help_text.split())
    for name, option in OPTIONS.items():
        assert "--" + (SETTING_PREFIX + name).replace("_", "-") in help_text
        assert " ".join((option.description or "?").split()) in flat, name
    args = parser.parse_args(["--agent-on-repeat", "note", "--no-agent-final-answer"])
    assert settings_from_args(args).loop_policy() == LoopPolicy(
        on_repeat="note", on_failed_repeat="note", final_answer=False
    )
