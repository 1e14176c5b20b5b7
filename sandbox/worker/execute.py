"""Running one cell of model-written code inside the worker, Jupyter-style.

Why a module of its own: compiling (with a trailing expression shown like a notebook),
answering `!pip install` lines, and formatting tracebacks without the worker's own frames
are the parts of the worker that decide what the model reads back; keeping them apart from
the process plumbing in `worker.py` makes them testable in-process. Stdlib-only.
"""

from __future__ import annotations

import ast
import linecache
import re
import shlex
import sys
import traceback
from collections.abc import Callable
from types import CodeType, TracebackType
from typing import Any

_BANG_LINE = re.compile(r"^(?P<indent>[ \t]*)(?P<sigil>!|%{1,2})(?P<command>.*)$")
_OWN_DIR = __file__.rsplit("/", 2)[0]  # the sandbox package

INSTALLED_HINT = "import importlib.metadata as md; print(sorted(d.metadata['Name'] for d in md.distributions()))"


def shell_notice(command: str) -> str:
    """What the model reads instead of running `!command` (no shell, no network)."""
    command = command.strip()
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    program = words[0] if words else ""
    if (
        program.startswith("pip")
        or words[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"])
        or (program in {"conda", "mamba", "uv", "apt", "apt-get"})
    ):
        return (
            f"[sandbox] `{command}` was not run: installing packages is disabled here "
            "(the sandbox is offline). Use the packages that are already installed; to list "
            f"them, run: {INSTALLED_HINT}\n"
        )
    return (
        f"[sandbox] `{command}` was not run: shell escapes (`!cmd`, `%magic`) are not "
        "supported. Write Python instead, e.g. import subprocess; "
        f"print(subprocess.run({words!r}, capture_output=True, text=True).stdout)\n"
    )


def rewrite_bang_lines(source: str) -> str | None:
    """Turn `!cmd` / `%magic` lines into calls of `__sandbox_shell__`; None if there are none."""
    changed = False
    lines = source.splitlines()
    for index, line in enumerate(lines):
        match = _BANG_LINE.match(line)
        if match:
            lines[index] = f"{match['indent']}__sandbox_shell__({match['command']!r})"
            changed = True
    return "\n".join(lines) if changed else None


def _register_source(filename: str, source: str) -> None:
    """Let tracebacks show the lines of the cell, as they would for a file."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


Compiler = Callable[[Any, str, str], CodeType]


def _default_compile(source: Any, filename: str, mode: str) -> CodeType:
    return compile(source, filename, mode, dont_inherit=True)


def compile_cell(source: str, filename: str, compiler: Compiler | None = None) -> tuple[CodeType, CodeType | None]:
    """Compile a cell into (statements, trailing expression or None).

    Raises SyntaxError after trying the `!cmd` rewrite, so that real syntax errors are
    reported against the code the model actually wrote.
    """
    compiler = compiler or _default_compile
    try:
        tree = ast.parse(source, filename, "exec")
    except SyntaxError:
        rewritten = rewrite_bang_lines(source)
        if rewritten is None:
            raise
        try:
            tree = ast.parse(rewritten, filename, "exec")
        except SyntaxError:
            raise SyntaxError_from_original(source, filename) from None
        source = rewritten
    _register_source(filename, source)
    last: ast.expr | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body.pop().value  # type: ignore[attr-defined]
    if compiler is _default_compile:
        body = compiler(tree, filename, "exec")
        tail = compiler(ast.Expression(last), filename, "eval") if last is not None else None
    else:  # RestrictedPython wants source text, not our AST objects.
        body = compiler(ast.unparse(tree), filename, "exec")
        tail = compiler(ast.unparse(last), filename, "eval") if last is not None else None
    return body, tail


def SyntaxError_from_original(source: str, filename: str) -> SyntaxError:  # noqa: N802
    """Re-parse the original text so the SyntaxError points at what the model wrote."""
    try:
        ast.parse(source, filename, "exec")
    except SyntaxError as exc:
        return exc
    return SyntaxError("invalid syntax")


def _own(tb: TracebackType) -> bool:
    return tb.tb_frame.f_code.co_filename.startswith(_OWN_DIR)


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """Drop the frames that belong to the sandbox itself: the worker's leading frames, and
    trailing ones (a host-tool stub raising the tool's error is not the code's line)."""
    while tb is not None and _own(tb):
        tb = tb.tb_next
    last_user, cursor = tb, tb
    while cursor is not None:
        if not _own(cursor):
            last_user = cursor
        cursor = cursor.tb_next
    if last_user is not None:
        last_user.tb_next = None  # every frame after the code's last one is the sandbox's
    return tb


def format_exception(exc: BaseException) -> str:
    """A traceback as Python would print it, minus the worker's own frames."""
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc))
    return "".join(traceback.format_exception(type(exc), exc, _user_frames(exc.__traceback__)))


def display(value: Any, namespace: dict[str, Any]) -> None:
    """Show a trailing expression's repr, like a notebook cell's Out[]."""
    if value is None:
        return
    namespace["_"] = value
    sys.stdout.write(repr(value) + "\n")
