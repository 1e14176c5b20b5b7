"""Turning tool functions into self-contained ``source`` text for the agent's sandbox.

The sandbox only ``exec``s the text a ``/v1/agent`` request carries: it cannot import this
repository or read the shared data. So a tool's source is a prelude that embeds the data it
needs (a JSON string literal, decoded with the standard library) followed by the verbatim
source of the helper functions and of the tool itself, taken with ``inspect.getsource``.
Writing the tools as ordinary functions keeps them linted and readable; shipping their own
text keeps what the sandbox runs identical to what is reviewed here.

Every name a tool needs besides its own starts with ``_m3_`` so that the model's code is
unlikely to clobber it, and every prelude is idempotent so tool sources can be executed in
any order, or alone, in one namespace.
"""

from __future__ import annotations

import inspect
import json
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

JSON_IMPORT = "import json as _m3_json"
BUILTINS_IMPORT = "import builtins as _m3_builtins"


def function_source(func: Callable[..., Any]) -> str:
    """The exact text of ``func`` as written in its module, dedented."""
    return textwrap.dedent(inspect.getsource(func)).rstrip() + "\n"


def json_constant(name: str, value: Any) -> str:
    """``name = <value>`` where the value travels as a JSON string literal."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return f"{name} = _m3_json.loads({text!r})\n"


def assemble(
    *,
    preamble: Iterable[str] = (),
    helpers: Iterable[Callable[..., Any]] = (),
    tool: Callable[..., Any] | None = None,
    tail: str = "",
) -> str:
    """Join prelude lines, helper functions and the tool function into one source text."""
    parts = [line if line.endswith("\n") else line + "\n" for line in preamble]
    parts += [function_source(helper) for helper in helpers]
    if tool is not None:
        parts.append(function_source(tool))
    if tail:
        parts.append(tail if tail.endswith("\n") else tail + "\n")
    return "\n".join(parts)
