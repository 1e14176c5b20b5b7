"""Optional `restricted` policy: compile the model's code with RestrictedPython first.

Why opt-in and why it is not the boundary: RestrictedPython rejects attribute names that
start with an underscore (so `().__class__.__subclasses__()` does not even compile) and
guards attribute access, item access and writes. Known escapes exist and it breaks much
ordinary code, so it is defence in depth on top of the OS isolation, never instead of it.
Imported lazily inside the worker only when the policy is selected.
"""

from __future__ import annotations

import builtins
import sys
from types import CodeType
from typing import Any

from RestrictedPython import compile_restricted, limited_builtins, safe_builtins, utility_builtins
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr,
)

#: Modules restricted code may import; pure computation, no I/O or introspection.
ALLOWED_IMPORTS = frozenset(
    {
        "math",
        "cmath",
        "json",
        "re",
        "datetime",
        "statistics",
        "collections",
        "itertools",
        "functools",
        "random",
        "string",
        "decimal",
        "fractions",
        "heapq",
        "bisect",
        "textwrap",
    }
)


class RestrictedCodeError(SyntaxError):
    """RestrictedPython refused to compile the code."""


def restricted_compile(source: Any, filename: str, mode: str) -> CodeType:
    """Compiler hook for `execute.compile_cell`; raises RestrictedCodeError on rejection."""
    try:
        return compile_restricted(source, filename, mode)  # type: ignore[arg-type]
    except SyntaxError as exc:
        raise RestrictedCodeError(f"the restricted policy rejected this code: {exc}") from None


class _StdoutPrinter:
    """`_print_` for RestrictedPython: print straight to (captured) stdout."""

    def __init__(self, _getattr_: Any = None) -> None:
        self._getattr_ = _getattr_

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        kwargs.pop("file", None)
        print(*objects, file=sys.stdout, **kwargs)

    def __call__(self) -> str:
        return ""


def _guarded_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    if level != 0 or name.split(".")[0] not in ALLOWED_IMPORTS:
        raise ImportError(f"import of {name!r} is not allowed under the restricted policy")
    return builtins.__import__(name, globals, locals, fromlist, level)


def _inplace(op: str, x: Any, y: Any) -> Any:
    import operator

    return getattr(
        operator,
        "i"
        + {
            "+=": "add",
            "-=": "sub",
            "*=": "mul",
            "/=": "truediv",
            "//=": "floordiv",
            "%=": "mod",
            "**=": "pow",
            "|=": "or",
            "&=": "and",
            "^=": "xor",
            "<<=": "lshift",
            ">>=": "rshift",
            "@=": "matmul",
        }[op],
    )(x, y)


def restricted_namespace() -> dict[str, Any]:
    """Fresh globals for restricted cells: safe builtins plus RestrictedPython's guards."""
    restricted_builtins = {**safe_builtins, **limited_builtins, **utility_builtins}
    restricted_builtins["__import__"] = _guarded_import
    for name in ("sum", "min", "max", "any", "all", "enumerate", "map", "filter", "reversed", "dict", "list"):
        restricted_builtins.setdefault(name, getattr(builtins, name))
    return {
        "__name__": "__main__",
        "__builtins__": restricted_builtins,
        "_getattr_": safer_getattr,
        "_getitem_": default_guarded_getitem,
        "_getiter_": default_guarded_getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": full_write_guard,
        "_print_": _StdoutPrinter,
        "_inplacevar_": _inplace,
    }
