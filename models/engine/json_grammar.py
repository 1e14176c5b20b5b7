"""JSON Schema -> GBNF, for structured outputs and tool calls, through llama.cpp's converter.

Why this module: only ``models/`` may import ``llama_cpp``, and llama-cpp-python 0.3.36
ships a maintained JSON-schema-to-GBNF converter (``llama_cpp.llama_grammar.SchemaConverter``,
a port of llama.cpp's ``json_schema_to_grammar``). We use it rather than our own, and add
what it lacks for an honest API:

- **Refusing what it would ignore.** The converter silently drops keywords it does not
  know (``minimum``, ``not``, ``uniqueItems``, ``oneOf`` exclusivity, unknown ``format``s
  ...), so a grammar built from such a schema could let through JSON the schema rejects.
  ``check_schema`` walks the schema first and raises ``SchemaError`` naming the first
  keyword it cannot enforce, with its JSON path; the server turns that into a 400.
- **Valid JSON strings.** Its ``char`` rule allows raw control characters (a newline inside
  a string), which strict JSON parsers refuse; we replace it with upstream llama.cpp's
  current rule, which requires them escaped.
- **Tool calls.** ``tool_call_grammar`` wraps one object per call,
  ``{"name": <const>, "arguments": <that function's parameters schema>}``, in
  ``<tool_call>`` tags, as one call, several (parallel calls), or as an alternative to
  plain text (``tool_choice: auto``).

The grammar text is cached by the engine (``models.engine.llama.grammar.GrammarCache``), and the
engine checks it lazily: a model that already complies pays one token check per step.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, SchemaConverter

TOOL_CALL_OPEN = "<tool_call>\n"
TOOL_CALL_CLOSE = "\n</tool_call>"

# JSON strings as RFC 8259 has them: control characters only escaped (upstream's rule).
_STRICT_CHAR = r'[^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'

_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "strict",
    }
)
_ENFORCED = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "enum",
        "const",
        "anyOf",
        "$ref",
        "$defs",
        "definitions",
        "pattern",
        "format",
        "minLength",
        "maxLength",
    }
)
_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "prefixItems")
_HOW = {
    "oneOf": "use anyOf (the grammar cannot enforce that exactly one alternative matches)",
    "allOf": "inline the combined properties",
    "minimum": "numeric bounds cannot be enforced by the grammar",
    "maximum": "numeric bounds cannot be enforced by the grammar",
    "exclusiveMinimum": "numeric bounds cannot be enforced by the grammar",
    "exclusiveMaximum": "numeric bounds cannot be enforced by the grammar",
    "multipleOf": "numeric constraints cannot be enforced by the grammar",
}


class SchemaError(ValueError):
    """A schema (or part of it) the grammar cannot enforce; ``path`` says where."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class FunctionSchema:
    """One function tool: its name, its parameters' JSON schema (None: no parameters), and
    where that schema sits in the request (named by a SchemaError)."""

    name: str
    parameters: Mapping[str, Any] | None = None
    path: str = "parameters"


def check_schema(schema: Any, path: str = "schema") -> None:
    """Raise SchemaError at the first keyword the grammar would not enforce."""
    if not isinstance(schema, Mapping):
        raise SchemaError(path, "a schema must be a JSON object here")
    for key, value in schema.items():
        where = f"{path}.{key}"
        if key in _ANNOTATIONS:
            continue
        if key not in _ENFORCED:
            reason = _HOW.get(key, "this keyword is not supported for structured output")
            raise SchemaError(where, reason)
        if key == "type":
            types = value if isinstance(value, list) else [value]
            unknown = [t for t in types if t not in _TYPES]
            if unknown:
                raise SchemaError(where, f"unknown type {unknown[0]!r}")
        elif key == "format" and value not in _FORMATS:
            raise SchemaError(where, f"format {value!r} is not supported (supported: {sorted(_FORMATS)})")
        elif key == "$ref" and not (isinstance(value, str) and value.startswith("#/")):
            raise SchemaError(where, "only local references ('#/...') are supported")
        elif key in _SUBSCHEMA_MAPS:
            if not isinstance(value, Mapping):
                raise SchemaError(where, "must be an object of schemas")
            for name, sub in value.items():
                check_schema(sub, f"{where}.{name}")
        elif key in _SUBSCHEMA_LISTS:
            if not isinstance(value, list) or not value:
                raise SchemaError(where, "must be a non-empty list of schemas")
            for i, sub in enumerate(value):
                check_schema(sub, f"{where}[{i}]")
        elif key == "items":
            if isinstance(value, list):
                raise SchemaError(where, "a list of item schemas: use prefixItems")
            check_schema(value, where)
        elif key == "additionalProperties" and not isinstance(value, bool):
            check_schema(value, where)
        elif key == "required" and not isinstance(value, list):
            raise SchemaError(where, "must be a list of property names")


def _converter() -> SchemaConverter:
    return SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


def _visit(converter: SchemaConverter, schema: Mapping[str, Any], name: str, path: str) -> str:
    """Convert one (checked) schema into rules; returns the name of its rule."""
    try:
        resolved = converter.resolve_refs(json.loads(json.dumps(schema)), name or "root")
        return converter.visit(resolved, name)
    except (AssertionError, ValueError, KeyError, TypeError) as exc:
        # The converter reports what it cannot translate with assert/ValueError.
        raise SchemaError(path, f"cannot be turned into a grammar ({exc})") from exc


def _format(converter: SchemaConverter) -> str:
    if "char" in converter._rules:  # noqa: SLF001 - replace the rule that allows raw control chars
        converter._rules["char"] = _STRICT_CHAR  # noqa: SLF001
    return converter.format_grammar()


def json_schema_grammar(schema: Mapping[str, Any], path: str = "schema") -> str:
    """GBNF whose every sentence is JSON valid against ``schema`` (after check_schema)."""
    check_schema(schema, path)
    converter = _converter()
    _visit(converter, schema, "", path)
    return _format(converter)


def json_object_grammar() -> str:
    """GBNF for any JSON object (``response_format: json_object``)."""
    converter = _converter()
    converter._add_primitive("root", PRIMITIVE_RULES["object"])  # noqa: SLF001
    return _format(converter)


_DEF_KEYS = ("$defs", "definitions")


def _prefixed_defs(schema: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """A copy of ``schema`` whose top-level definitions (and local refs to them) carry ``prefix``."""
    copy = json.loads(json.dumps(schema))
    targets = {f"#/{key}/{name}": f"#/{key}/{prefix}{name}" for key in _DEF_KEYS for name in copy.get(key, {})}
    if not targets:
        return copy
    for key in _DEF_KEYS:
        if key in copy:
            copy[key] = {f"{prefix}{name}": value for name, value in copy[key].items()}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (targets.get(v, v) if k == "$ref" else rewrite(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    return rewrite(copy)


def _gbnf_literal(text: str) -> str:
    return json.dumps(text)  # a GBNF string literal escapes like a JSON string


def tool_call_grammar(
    tools: Sequence[FunctionSchema],
    *,
    parallel: bool,
    allow_text: bool,
    text_schema: Mapping[str, Any] | None = None,
    text_path: str = "schema",
) -> str:
    """GBNF for ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` answers.

    ``parallel``: one or more calls, one per line; else exactly one. ``allow_text``: the
    answer may instead be plain text that does not start with ``<`` (``tool_choice:
    auto``), so the model decides with its first token, and a text answer pays the
    grammar only once per token on the fast path. ``text_schema``: that answer must
    instead be JSON matching this schema (structured output alongside tools).
    """
    if not tools:
        raise ValueError("tool_call_grammar needs at least one tool")
    converter = _converter()
    alternatives = []
    for i, tool in enumerate(tools):
        parameters = tool.parameters or {"type": "object", "properties": {}}
        check_schema(parameters, tool.path)
        # Each tool's parameters are converted on their own (their "#/$defs/..." refer to
        # them), with definition names made unique: the converter keys definition rules
        # by name alone, so two tools' "Address" would otherwise share one rule.
        arguments = _visit(converter, _prefixed_defs(parameters, f"t{i}-"), f"call{i}-arguments", tool.path)
        name = json.dumps(tool.name)
        alternatives.append(
            f'"{{" space "\\"name\\"" space ":" space {_gbnf_literal(name)} space "," space '
            f'"\\"arguments\\"" space ":" space {arguments} "}}" space'
        )
    rules = {
        "tool-call": f"{_gbnf_literal(TOOL_CALL_OPEN)} ({' | '.join(alternatives)}) {_gbnf_literal(TOOL_CALL_CLOSE)}",
        "tool-calls": 'tool-call ("\\n" tool-call)*' if parallel else "tool-call",
        "text": "[^<] [^\\x00]*",
    }
    if text_schema is not None:
        check_schema(text_schema, text_path)
        rules["text"] = _visit(converter, _prefixed_defs(text_schema, "a-"), "answer", text_path)
    for name, rule in rules.items():
        converter._rules[name] = rule  # noqa: SLF001
    converter._rules["root"] = "tool-calls | text" if allow_text else "tool-calls"  # noqa: SLF001
    return _format(converter)
