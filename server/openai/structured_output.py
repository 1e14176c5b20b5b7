"""``response_format`` on chat completions: JSON mode and JSON-schema structured outputs.

Why a grammar: the model is constrained token by token (GBNF built by
``models.engine.json_grammar`` from llama.cpp's own converter), so even the 135M embedded model
answers with JSON that parses and matches the schema, as long as ``max_tokens`` leaves
room to finish it (a cut answer reports ``finish_reason: "length"``, as OpenAI does).

A schema keyword the grammar could not enforce is a 400 naming it
(``response_format.json_schema.schema.properties.age.minimum``), never silently dropped.
A non-strict ``json_schema`` is enforced as strictly as a strict one: a stricter answer is
still a valid one. With tools and ``tool_choice: auto``, the answer is a call or JSON
matching the schema (``server.openai.tool_calls``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.engine.json_grammar import SchemaError, json_schema_grammar
from server.openai.errors import RequestRefused
from server.openai.unsupported import refuse


def schema_error(exc: SchemaError) -> RequestRefused:
    """What a client sees for a schema the grammar cannot enforce."""
    return RequestRefused(f"'{exc.path}': {exc.message}", code="unsupported_schema", param=exc.path)


def response_format_schema(response_format: Mapping[str, Any] | None) -> tuple[Mapping[str, Any], str] | None:
    """The schema ``response_format`` asks for and where it sits (None: plain text), or a 400."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}, "response_format"
    if kind != "json_schema":
        raise refuse("response_format.type", f"'{kind}' is not supported (text, json_object, json_schema)")
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("schema"), Mapping):
        raise RequestRefused(
            "'response_format.json_schema.schema' is required: the JSON schema the answer must match",
            param="response_format.json_schema.schema",
        )
    return spec["schema"], "response_format.json_schema.schema"


def response_format_grammar(response_format: Mapping[str, Any] | None) -> str | None:
    """The GBNF for ``response_format`` (None: plain text), or a 400 naming what is wrong."""
    wanted = response_format_schema(response_format)
    if wanted is None:
        return None
    try:
        return json_schema_grammar(*wanted)
    except SchemaError as exc:
        raise schema_error(exc) from exc
