"""What code and its output are, read from their syntax: the facts the loop's rules test.

Why syntax trees: small models rewrite the same code with other spacing or comments, and
print text they wrote themselves as if it were a result; comparing trees and looking for
constants tells both apart from real work without running anything twice.
"""

from __future__ import annotations

import ast
import re

from sandbox.result import ExecResult
from server.agent.policy.values import numbers_in, same_number

_CELL_NAME = re.compile(r"<cell-\d+>")


def code_key(code: str) -> str:
    """What makes two pieces of code "the same": their syntax tree, else their stripped lines."""
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError):
        return "\n".join(line.rstrip() for line in code.strip().splitlines())


class RepeatTracker:
    """Remembers what each distinct piece of code printed in this request."""

    def __init__(self) -> None:
        self._outputs: dict[str, str] = {}

    def is_repeat(self, code: str, output: str) -> bool:
        """Record ``code``'s output; True when the same code already gave the same output.

        Tracebacks name the cell (``<cell-3>``), which differs on every run: not output.
        """
        key = code_key(code)
        output = _CELL_NAME.sub("<cell>", output)
        repeated = self._outputs.get(key) == output
        self._outputs[key] = output
        return repeated


def prints_only_literals(code: str) -> bool:
    """Whether every statement is a ``print`` of constants (or a bare constant): code that
    computes nothing, so its output only repeats what the model wrote into it."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    if not tree.body:
        return False
    for statement in tree.body:
        if not isinstance(statement, ast.Expr):
            return False
        value = statement.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "print":
            arguments = [*value.args, *(keyword.value for keyword in value.keywords)]
        else:
            arguments = [value]
        if not all(_is_literal(argument) for argument in arguments):
            return False
    return True


def _is_literal(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return True
    return isinstance(node, ast.JoinedStr) and all(isinstance(part, ast.Constant) for part in node.values)


def feeds_output_back(code: str, last_code: str | None, last_value: str | None) -> bool:
    """Whether ``code`` is ``last_code`` again, run on what that printed (``fed_back_output``).

    The same syntax tree but for its constants, and every constant that changed now holds
    ``last_value``, the one short value ``last_code`` printed: ``(98.6 - 32) * 5 / 9``
    printed ``37.0``, then ``(37.0 - 32) * 5 / 9``. Small models read their own output as
    the next input and convert 37 °C again, until the turns run out.
    """
    if last_code is None or last_value is None:
        return False
    new, old = _shape_and_constants(code), _shape_and_constants(last_code)
    if new is None or old is None or new[0] != old[0]:
        return False
    changed = [n for n, o in zip(new[1], old[1], strict=True) if repr(n) != repr(o)]
    return bool(changed) and all(_holds_value(constant, last_value) for constant in changed)


def _shape_and_constants(code: str) -> tuple[str, list[object]] | None:
    """The code's syntax tree with its constants blanked, and those constants in tree order."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    constants: list[object] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            constants.append(node.value)
            node.value = None
    return ast.dump(tree), constants


def _holds_value(constant: object, value: str) -> bool:
    if isinstance(constant, str):
        return constant.strip() == value.strip()
    if isinstance(constant, bool) or not isinstance(constant, int | float):
        return False
    wanted = numbers_in(value)
    return len(wanted) == 1 and same_number(constant, wanted[0])


_CODE_NODES = (
    ast.Call,
    ast.Import,
    ast.ImportFrom,
    ast.For,
    ast.While,
    ast.With,
    ast.FunctionDef,
    ast.ClassDef,
    ast.Lambda,
    ast.ListComp,
    ast.GeneratorExp,
)


def looks_like_code(answer: str) -> bool:
    """Whether a solution's body is code to run (calls or statements), not a value.

    ``907``, ``Tuesday``, ``apple, banana``, ``x = 5`` or ``2**100 % 997`` are values (a
    constant, a name, a tuple, an assignment, arithmetic); ``print(x)``, several statements
    or an import are code. Prose does not parse, so it is never code.
    """
    try:
        tree = ast.parse(answer.strip())
    except (SyntaxError, ValueError):
        return False
    return len(tree.body) > 1 or any(isinstance(node, _CODE_NODES) for node in ast.walk(tree))


def failed(result: ExecResult) -> bool:
    """The execution raised, ran out of time or was killed: its output answers nothing."""
    return result.error is not None or result.timed_out or result.killed_reason is not None
