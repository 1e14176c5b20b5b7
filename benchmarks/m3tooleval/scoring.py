"""Judging an answer: the reference judge, bug for bug, and a lenient one beside it.

``check_answer`` reproduces upstream's ``Task.check_answer`` (TOOLS_SPEC.md 7.5) exactly,
including its missing-``or`` bug that makes every list/dict/tuple answer an exact ``str``
match and accepts a float's truncated integer part. Published numbers (74.4% for
gpt-4-1106-preview, 12.2% for CodeActAgent-Mistral-7B) were scored this way, so ours must
be too to be comparable; ``check_answer_examples.json`` pins every verdict.

``score_lenient`` answers a different question: did the model find the right value, even if
it wrote ``$380.42``, ``engineering`` or ``[36380, 48150, 68480]``? It accepts everything the
reference accepts, plus answers that match after normalisation (case, quotes, currency and
thousands separators, a trailing period, key order) or are numerically within tolerance.
It is reported beside the reference score and never replaces it.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Any

from .data import expected_value

#: Lenient numeric tolerance: enough for 2-decimal rounding of a price (237.942 -> 237.94).
ABS_TOLERANCE = 0.01
REL_TOLERANCE = 1e-6


def _conv(value: Any) -> Any:
    """``int(x)``, else ``float(x)``, else ``x``; only ValueError is caught, as upstream."""
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def check_answer(answer: str, expected: Any) -> bool:
    """Upstream's verdict for an already-stripped ``answer`` string against ``expected``."""
    candidate: Any = answer
    try:
        if candidate == expected:
            return True
        if _conv(candidate) == _conv(expected):
            return True
        candidate = ast.literal_eval(candidate)
        # Upstream then evaluated ``expected(isinstance(expected, list) and ...)``: calling
        # the expected value always raised TypeError, which was swallowed. The parsed
        # literal is the only lasting effect.
    except Exception:  # upstream swallowed every error here, TypeError from conv included
        pass
    return str(candidate) == str(expected)


def score_reference(prediction: str | None, task: dict[str, Any]) -> bool:
    """The reference judge on a model's final answer (stripped first, as upstream's parser did)."""
    if prediction is None:
        return False
    return check_answer(prediction.strip(), expected_value(task))


# --- lenient -------------------------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?:\D|$))")
_QUOTES = "'\"`"


def normalise_text(text: str) -> str:
    """Trim, drop wrapping quotes/backticks and a trailing period, fold case and spaces."""
    text = text.strip()
    if text.lower().startswith("answer:"):
        text = text[len("answer:") :].strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in _QUOTES:
        text = text[1:-1].strip()
    text = text.rstrip(".").strip()
    return " ".join(text.split()).casefold()


def _numbers_in(text: str) -> list[float]:
    text = _THOUSANDS.sub("", text)
    return [float(match) for match in _NUMBER.findall(text)]


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)


def _lenient_scalar(answer: str, expected: Any) -> bool:
    if isinstance(expected, bool):
        falsy = {"false", "no", "0"}
        return normalise_text(answer) in (falsy if not expected else {"true", "yes", "1"})
    if isinstance(expected, (int, float)):
        numbers = _numbers_in(answer)
        return len(numbers) == 1 and _close(numbers[0], float(expected))
    return normalise_text(answer) == normalise_text(str(expected))


def _parse_structure(answer: str) -> Any:
    text = normalise_text(answer) if answer.strip()[:1] in _QUOTES else answer.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _same_value(got: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and set(map(str, got)) == set(map(str, want))
            and all(_same_value(got[k], want[k]) for k in got)
        )
    if isinstance(want, (list, tuple)):
        return (
            isinstance(got, (list, tuple))
            and len(got) == len(want)
            and all(_same_value(g, w) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, bool) or isinstance(got, bool):
        return got == want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return _close(float(got), float(want))
    return normalise_text(str(got)) == normalise_text(str(want))


def score_lenient(prediction: str | None, task: dict[str, Any]) -> bool:
    """The reference verdict, or a match after normalisation / within numeric tolerance."""
    if prediction is None:
        return False
    if score_reference(prediction, task):
        return True
    expected = expected_value(task)
    if isinstance(expected, (list, tuple, dict)):
        return _same_value(_parse_structure(prediction), expected)
    return _lenient_scalar(prediction, expected)
