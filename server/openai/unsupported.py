"""Refuse, with a 400 naming it, any request field that would change the answer but is not
implemented here.

Why: a client that sends ``n: 2``, ``logit_bias`` or an image expects an answer shaped by
it; answering as if the field were absent gives a plausible but wrong result that the
client cannot tell from a right one. Fields that only tune or label a request (``user``,
``metadata``, ``store``, ``service_tier``, ``reasoning_effort``, ...) stay accepted and
ignored; a field that is present with its neutral value (``logit_bias: {}``,
``presence_penalty: 0``) is accepted too, since it asks for nothing.

Each route lists its rules; ``refuse_unsupported`` checks the raw body (declared and
undeclared fields alike: the request models keep unknown fields with ``extra="allow"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from server.openai.errors import RequestRefused


@dataclass(frozen=True)
class Rule:
    """``field`` is refused unless ``neutral(value)``; ``why`` ends the error message."""

    field: str
    neutral: Callable[[Any], bool]
    why: str = "is not supported by this server"


def _absent(value: Any) -> bool:
    return value is None


def _falsy(value: Any) -> bool:
    return not value


def _zero(value: Any) -> bool:
    return value is None or value == 0


def _at_most_one(value: Any) -> bool:
    return value is None or value == 1


def _text_only(value: Any) -> bool:
    return value is None or value == ["text"]


COMMON: tuple[Rule, ...] = (
    Rule("n", _at_most_one, "other than 1 is not supported: one choice per request"),
    Rule("logit_bias", _falsy, "is not supported by this server's sampler"),
    Rule("frequency_penalty", _zero, "other than 0 is not supported by this server's sampler"),
    Rule("presence_penalty", _zero, "other than 0 is not supported by this server's sampler"),
)

CHAT: tuple[Rule, ...] = (
    *COMMON,
    Rule("functions", _falsy, "(deprecated) is not supported; use tools"),
    Rule("function_call", _absent, "(deprecated) is not supported; use tool_choice"),
    Rule("audio", _absent, "is not supported: this server answers with text only"),
    Rule("modalities", _text_only, "other than ['text'] is not supported"),
    Rule("prediction", _absent, "(predicted outputs) is not supported by this server"),
    Rule("web_search_options", _absent, "is not supported: this server has no web search"),
)

COMPLETIONS: tuple[Rule, ...] = (
    *COMMON,
    Rule("echo", _falsy, "is not supported by this server"),
    Rule("best_of", _at_most_one, "other than 1 is not supported: one choice per request"),
    Rule("suffix", _falsy, "(insertion) is not supported by this server"),
)


def refuse_unsupported(body: Mapping[str, Any], rules: tuple[Rule, ...]) -> None:
    """Raise a 400 ``unsupported_parameter`` for the first non-neutral field in ``rules``."""
    for rule in rules:
        if rule.field in body and not rule.neutral(body[rule.field]):
            raise RequestRefused(f"'{rule.field}' {rule.why}", code="unsupported_parameter", param=rule.field)


def refuse(field: str, why: str) -> RequestRefused:
    """The error for one unsupported field or value found by a route's own checks."""
    return RequestRefused(f"'{field}' {why}", code="unsupported_parameter", param=field)
