"""Whether an answer states a value: one tolerance for every check that compares them.

Why one module: the forced answer (``forced_answer: output``: does the model's answer state
the one value the last execution printed?), the fed-back check (does changed code hold that
value?) and the vote of sampled runs (do two answers say the same?) each compared numbers
with their own pattern and tolerance, so the forced answer and the vote could disagree
about the same answer. Numbers are read with one pattern (a sign, thousands separators, a
leading-dot decimal, an exponent) and compared within ``REL_TOLERANCE``/``ABS_TOLERANCE``:
``1229`` and ``1,229.0`` agree, and so do ``0.30000000000000004`` and ``0.3``.
"""

from __future__ import annotations

import math
import re

from sandbox.result import ExecResult

#: An output this short, on one line, is one value a forced answer can be held against.
ONE_VALUE_CHARS = 40
REL_TOLERANCE = 1e-6
ABS_TOLERANCE = 1e-9
NUMBER = re.compile(r"[-+]?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
_QUOTES = "`'\""
_TRAILING = ".!;,:"


def one_value(result: ExecResult) -> str | None:
    """What a clean execution printed, when that is one short line; else None."""
    return printed_value(result.stdout, result.error, result.timed_out)


def printed_value(stdout: str, error: str | None, timed_out: bool) -> str | None:
    """``one_value`` from an execution's parts (a recorded step's observation has them too)."""
    printed = stdout.strip()
    if error is not None or timed_out or not printed or "\n" in printed:
        return None
    return printed if len(printed) <= ONE_VALUE_CHARS else None


def numbers_in(text: str) -> list[float]:
    """Every number written in ``text`` (thousands separators allowed)."""
    return [float(m.group().replace(",", "")) for m in NUMBER.finditer(text)]


def same_number(a: float, b: float) -> bool:
    """Two numbers that say the same, however written (``37`` for ``37.0``, ``0.1 + 0.2``)."""
    return math.isclose(a, b, rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)


def states_value(answer: str, value: str) -> bool:
    """Whether ``answer`` says ``value``: the same number when the value holds one number
    (``1229``, ``The average age is: 40.6``), else the value's text."""
    wanted = numbers_in(value)
    if len(wanted) == 1:
        return any(same_number(n, wanted[0]) for n in numbers_in(answer))
    return normalize(value) in normalize(answer)


def normalize(answer: str) -> str:
    """An answer as it is compared: no surrounding space or quotes, one case, no trailing
    punctuation, single spaces."""
    text = " ".join(answer.split()).casefold()
    previous = None
    while text != previous:
        previous = text
        text = text.strip().strip(_QUOTES).rstrip(_TRAILING)
    return text


def as_number(text: str) -> float | None:
    """The number a normalized answer is, when it is exactly one (thousands separators allowed)."""
    if not NUMBER.fullmatch(text):
        return None
    return float(text.replace(",", ""))


def agree(a: str, b: str) -> bool:
    """Whether two answers say the same: the same number when each is one, else the same text."""
    a, b = normalize(a), normalize(b)
    x, y = as_number(a), as_number(b)
    if x is not None and y is not None:
        return same_number(x, y)
    return a == b
