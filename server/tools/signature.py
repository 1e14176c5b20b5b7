"""A tool's JSON input schema as a Python function: its signature, docstring and stub source.

Why generated Python rather than a generic ``call_tool(name, args)``: CodeActAgent was
trained on tools listed as plain functions (numbered, signature, description) and calls them
like any function, in loops, with keyword or positional arguments. So each tool becomes::

    def weather_forecast(city, days=None):
        '''Forecast for a city. ...'''
        arguments = {k: v for k, v in dict(locals()).items() if v is not None}
        return __codeact_call__('weather_forecast', arguments)

Required properties come first, in schema order, then optional ones defaulting to None; an
argument that is None is not sent, so the tool applies its own default. A property
whose name is not a Python identifier (``max-results``, ``class``) cannot be a parameter: it
is reachable through ``**extra``, which the signature then shows.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Any

_NOT_IDENT = re.compile(r"[^0-9A-Za-z_]")
_JSON_TYPES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
    "null": "None",
}
EXTRA = "extra"
STUB_CALL = "__codeact_call__"


def python_name(*parts: str) -> str:
    """A valid identifier from parts joined by ``_`` (``my-server``, ``get.items`` -> ``my_server_get_items``)."""
    name = _NOT_IDENT.sub("_", "_".join(p for p in parts if p))
    if not name or name[0].isdigit():
        name = "_" + name
    return name + "_" if keyword.iskeyword(name) else name


def is_parameter_name(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("__") and name != EXTRA


def type_hint(schema: Any) -> str:
    """A short Python annotation for a JSON schema (documentation only, never enforced)."""
    if not isinstance(schema, dict):
        return "Any"
    kind = schema.get("type")
    if isinstance(kind, list):
        names = [_JSON_TYPES.get(k, "Any") for k in kind if isinstance(k, str)]
        return " | ".join(dict.fromkeys(names)) or "Any"
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"list[{type_hint(schema['items'])}]"
    if isinstance(kind, str):
        return _JSON_TYPES.get(kind, "Any")
    for union in ("anyOf", "oneOf"):
        if isinstance(schema.get(union), list):
            return " | ".join(dict.fromkeys(type_hint(s) for s in schema[union])) or "Any"
    if "enum" in schema and isinstance(schema["enum"], list):
        return "Literal[" + ", ".join(repr(v) for v in schema["enum"][:10]) + "]"
    return "Any"


@dataclass(frozen=True)
class Parameter:
    name: str
    hint: str
    required: bool
    description: str


@dataclass(frozen=True)
class FunctionShape:
    """What the model sees of a tool and what the sandbox defines for it."""

    name: str
    parameters: tuple[Parameter, ...]
    has_extra: bool
    description: str

    @property
    def signature(self) -> str:
        params = [p.name + f": {p.hint}" + ("" if p.required else " = None") for p in self.parameters]
        if self.has_extra:
            params.append(f"**{EXTRA}")
        return f"{self.name}({', '.join(params)})"

    @property
    def docstring(self) -> str:
        lines = [self.description.strip() or f"Calls the tool {self.name}."]
        args = [f"    {p.name}: {p.description}" for p in self.parameters if p.description]
        if self.has_extra:
            args.append(f"    **{EXTRA}: arguments whose names are not Python identifiers")
        if args:
            lines += ["", "Args:", *args]
        return "\n".join(lines)

    def stub_source(self, tool_id: str) -> str:
        """The function defined in the sandbox: it sends the arguments given (not None) to the host."""
        params = [p.name if p.required else f"{p.name}=None" for p in self.parameters]
        if self.has_extra:
            params.append(f"**{EXTRA}")
        gather = f"dict(locals(), **locals().pop({EXTRA!r}))" if self.has_extra else "dict(locals())"
        return (
            f"def {self.name}({', '.join(params)}):\n"
            f"    {self.docstring!r}\n"
            f"    arguments = {{k: v for k, v in {gather}.items() if v is not None and k != {EXTRA!r}}}\n"
            f"    return {STUB_CALL}({tool_id!r}, arguments)\n"
        )


def shape(name: str, description: str | None, input_schema: dict[str, Any] | None) -> FunctionShape:
    """The Python function for a tool named `name` (already a valid identifier)."""
    schema = input_schema if isinstance(input_schema, dict) else {}
    found = schema.get("properties")
    properties: dict[str, Any] = found if isinstance(found, dict) else {}
    required = set(schema.get("required") or []) if isinstance(schema.get("required"), list) else set()
    named = [key for key in properties if isinstance(key, str) and is_parameter_name(key)]
    has_extra = len(named) < len(properties) or schema.get("additionalProperties") not in (None, False)
    ordered = [k for k in named if k in required] + [k for k in named if k not in required]
    parameters = tuple(
        Parameter(
            name=key,
            hint=type_hint(properties[key]),
            required=key in required,
            description=" ".join(str((properties[key] or {}).get("description", "")).split())
            if isinstance(properties[key], dict)
            else "",
        )
        for key in ordered
    )
    return FunctionShape(name, parameters, has_extra, description or "")
