"""The agent-quality suite: small tasks that need a little code, each with its own checker.

Every expected answer is computed here, in this file, by plain Python written for the
suite (never by the model under test, never copied from a model's output). The tasks
cover what users ask a code-acting agent for: arithmetic and number theory, dates,
strings, hashing, small CSV/JSON tables given in the task, statistics, unit conversions,
and files the task asks for, whose contents are checked in the session's workspace.

Checking is strict but tolerant (``check_answer``): a number matches within a relative
tolerance, and an answer sentence is read for its number ("The result is 7" is 7), but
only the answer's own number counts (the whole answer, else its last or first number), so
copying an example (``42`` for 907) fails. Text matches after trimming quotes, case and a
final full stop, whole or as a quoted or "is ..." part, or as a whole word of a short
sentence ("29 February 2000 was a Tuesday."). A list matches when its items
appear in order, together, in the answer.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["number", "text", "list", "file"]


@dataclass(frozen=True)
class Task:
    """One question, what a correct answer is, and how to check it."""

    name: str
    category: str
    prompt: str
    kind: Kind
    expected: Any = None
    tolerance: float = 1e-6  # relative, for numbers
    file: str | None = None  # for kind "file": the workspace file to check
    check_file: Callable[[str], bool] | None = None


# -- expected answers, computed independently ------------------------------------------------
def _primes_below(n: int) -> list[int]:
    sieve = bytearray([1]) * n
    sieve[0:2] = b"\x00\x00"
    for i in range(2, int(n**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    return [i for i, is_prime in enumerate(sieve) if is_prime]


def _fibonacci(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _collatz_steps(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def _roman(n: int) -> str:
    out = ""
    for value, letters in (
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ):
        while n >= value:
            out += letters
            n -= value
    return out


def _caesar(text: str, shift: int) -> str:
    return "".join(chr((ord(c) - 97 + shift) % 26 + 97) if c.islower() else c for c in text)


SALES_CSV = """region,product,units,price
North,widget,12,2.50
South,widget,7,2.50
North,gadget,3,10.00
East,widget,20,2.25
South,gadget,5,9.50
East,gadget,1,11.00
North,widget,8,2.75"""

PEOPLE_JSON = json.dumps(
    [
        {"name": "Ada", "age": 36, "city": "London"},
        {"name": "Grace", "age": 45, "city": "New York"},
        {"name": "Alan", "age": 41, "city": "London"},
        {"name": "Edsger", "age": 52, "city": "Austin"},
        {"name": "Barbara", "age": 29, "city": "New York"},
    ]
)

SCORES = [88, 92, 79, 65, 95, 73, 84, 91, 70, 86, 77]
TEXT = (
    "the cat sat on the mat and the dog sat on the log while the bird sang on the branch and the cat watched the bird"
)
WORDS = ["pear", "apple", "fig", "banana", "cherry", "date"]


def _sales_rows() -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(SALES_CSV)))


def _revenue(rows: list[dict[str, str]], **match: str) -> float:
    return sum(int(r["units"]) * float(r["price"]) for r in rows if all(r[k] == v for k, v in match.items()))


def _first_of_month_sundays(year: int) -> int:
    return sum(dt.date(year, month, 1).weekday() == 6 for month in range(1, 13))


def _squares_file_ok(text: str) -> bool:
    return [line.strip() for line in text.strip().splitlines()] == [str(n * n) for n in range(1, 21)]


def _primes_json_ok(text: str) -> bool:
    try:
        return json.loads(text) == _primes_below(50)
    except ValueError:
        return False


def _totals_csv_ok(text: str) -> bool:
    rows = list(csv.reader(io.StringIO(text.strip())))
    if not rows or [c.strip().lower() for c in rows[0]] != ["region", "revenue"]:
        return False
    got = {r[0].strip(): float(r[1]) for r in rows[1:] if len(r) == 2}
    want = {region: _revenue(_sales_rows(), region=region) for region in ("North", "South", "East")}
    return got.keys() == want.keys() and all(math.isclose(got[k], want[k], rel_tol=1e-6) for k in want)


def _reversed_lines_ok(text: str) -> bool:
    return text.strip().splitlines() == ["gamma", "beta", "alpha"]


def build_tasks() -> list[Task]:
    """The suite, in a fixed order."""
    primes_10k = _primes_below(10_000)
    rows = _sales_rows()
    people = json.loads(PEOPLE_JSON)
    table = f"Here is a CSV table:\n{SALES_CSV}\n"
    people_text = f"Here is a JSON list of people:\n{PEOPLE_JSON}\n"
    tasks = [
        # arithmetic and number theory
        Task("pow_mod", "number theory", "What is 2**100 modulo 997?", "number", pow(2, 100, 997)),
        Task(
            "fib_30",
            "number theory",
            "What is the 30th Fibonacci number, with F(1) = F(2) = 1?",
            "number",
            _fibonacci(30),
        ),
        Task(
            "primes_below_10000",
            "number theory",
            "How many prime numbers are there below 10000?",
            "number",
            len(primes_10k),
        ),
        Task(
            "sum_primes_below_1000",
            "number theory",
            "What is the sum of all prime numbers below 1000?",
            "number",
            sum(_primes_below(1000)),
        ),
        Task("prime_1000th", "number theory", "What is the 1000th prime number?", "number", primes_10k[999]),
        Task(
            "gcd",
            "number theory",
            "What is the greatest common divisor of 123456 and 7890?",
            "number",
            math.gcd(123456, 7890),
        ),
        Task(
            "lcm_1_20",
            "number theory",
            "What is the least common multiple of all integers from 1 to 20?",
            "number",
            math.lcm(*range(1, 21)),
        ),
        Task(
            "factorial_zeros",
            "number theory",
            "How many trailing zeros does 125 factorial (125!) have?",
            "number",
            len(str(math.factorial(125))) - len(str(math.factorial(125)).rstrip("0")),
        ),
        Task(
            "digit_sum_2_50",
            "arithmetic",
            "What is the sum of the decimal digits of 2**50?",
            "number",
            sum(int(d) for d in str(2**50)),
        ),
        Task(
            "collatz_27",
            "number theory",
            "How many steps does the Collatz sequence starting at 27 take to reach 1? (n -> n/2 if even, 3n+1 if odd)",
            "number",
            _collatz_steps(27),
        ),
        Task(
            "popcount",
            "arithmetic",
            "How many 1 bits are in the binary representation of 2024?",
            "number",
            bin(2024).count("1"),
        ),
        Task(
            "palindromes_3digit",
            "arithmetic",
            "How many three-digit numbers divisible by 7 are palindromes (read the same backwards)?",
            "number",
            sum(1 for n in range(100, 1000) if str(n) == str(n)[::-1] and n % 7 == 0),
        ),
        Task(
            "sum_squares",
            "arithmetic",
            "What is the sum of the squares of the integers from 1 to 250?",
            "number",
            sum(n * n for n in range(1, 251)),
        ),
        Task(
            "digit_product",
            "arithmetic",
            "What is the product of the digits of 987654321?",
            "number",
            math.prod(int(d) for d in "987654321"),
        ),
        Task(
            "compound_interest",
            "arithmetic",
            "An account starts with 1000 dollars and earns 5% interest compounded yearly. How many dollars "
            "does it hold after 10 years? Round to 2 decimals.",
            "number",
            round(1000 * 1.05**10, 2),
            1e-4,
        ),
        # dates
        Task(
            "days_between",
            "dates",
            "How many days are there from 2024-01-15 to 2025-03-01?",
            "number",
            (dt.date(2025, 3, 1) - dt.date(2024, 1, 15)).days,
        ),
        Task(
            "weekday_leap",
            "dates",
            "On what day of the week was 29 February 2000? Answer with the day name.",
            "text",
            dt.date(2000, 2, 29).strftime("%A"),
        ),
        Task(
            "date_plus_1000",
            "dates",
            "What date is 1000 days after 2023-05-17? Answer as YYYY-MM-DD.",
            "text",
            (dt.date(2023, 5, 17) + dt.timedelta(days=1000)).isoformat(),
        ),
        Task(
            "iso_week",
            "dates",
            "What is the ISO week number of 2027-01-01?",
            "number",
            dt.date(2027, 1, 1).isocalendar()[1],
        ),
        Task(
            "first_sundays",
            "dates",
            "In the year 1990, how many months began on a Sunday?",
            "number",
            _first_of_month_sundays(1990),
        ),
        # strings
        Task(
            "reverse",
            "strings",
            "Reverse the string 'interpreter'. Answer with the reversed string.",
            "text",
            "interpreter"[::-1],
        ),
        Task(
            "vowels",
            "strings",
            "How many vowels (a, e, i, o, u) are in 'The quick brown fox jumps over the lazy dog'?",
            "number",
            sum(c in "aeiou" for c in "the quick brown fox jumps over the lazy dog"),
        ),
        Task(
            "distinct_chars",
            "strings",
            "How many distinct characters are in the word 'mississippi'?",
            "number",
            len(set("mississippi")),
        ),
        Task(
            "caesar",
            "strings",
            "Encode 'hello world' with a Caesar shift of 3 (a -> d). Answer with the encoded text.",
            "text",
            _caesar("hello world", 3),
        ),
        Task("roman", "strings", "Write 1994 in Roman numerals.", "text", _roman(1994)),
        Task(
            "sort_words",
            "strings",
            f"Sort these words alphabetically: {', '.join(WORDS)}. Answer with the sorted words separated by commas.",
            "list",
            sorted(WORDS),
        ),
        Task(
            "most_common_word",
            "strings",
            f"Which word appears most often in this text: '{TEXT}'?",
            "text",
            Counter(TEXT.split()).most_common(1)[0][0],
        ),
        Task("hex", "strings", "What is 48879 in hexadecimal (lowercase, without 0x)?", "text", format(48879, "x")),
        Task("binary", "strings", "What is 300 written in binary (without 0b)?", "text", format(300, "b")),
        # hashing
        Task(
            "md5",
            "hashing",
            "What is the MD5 hex digest of the string 'codeact'?",
            "text",
            hashlib.md5(b"codeact").hexdigest(),
        ),
        Task(
            "sha256_prefix",
            "hashing",
            "What are the first 12 hex characters of the SHA-256 digest of 'hello world'?",
            "text",
            hashlib.sha256(b"hello world").hexdigest()[:12],
        ),
        # tables
        Task(
            "csv_north_revenue",
            "tables",
            table + "What is the total revenue (units * price) of region North?",
            "number",
            _revenue(rows, region="North"),
        ),
        Task(
            "csv_widget_units",
            "tables",
            table + "How many widget units were sold in total?",
            "number",
            sum(int(r["units"]) for r in rows if r["product"] == "widget"),
        ),
        Task(
            "csv_top_region",
            "tables",
            table + "Which region has the highest total revenue (units * price)?",
            "text",
            max(("North", "South", "East"), key=lambda g: _revenue(rows, region=g)),
        ),
        Task(
            "json_mean_age",
            "tables",
            people_text + "What is the average age? Round to 1 decimal.",
            "number",
            round(statistics.mean(p["age"] for p in people), 1),
            1e-4,
        ),
        Task(
            "json_oldest_london",
            "tables",
            people_text + "What is the name of the oldest person living in London?",
            "text",
            max((p for p in people if p["city"] == "London"), key=lambda p: p["age"])["name"],
        ),
        # statistics
        Task("median", "statistics", f"What is the median of {SCORES}?", "number", statistics.median(SCORES)),
        Task(
            "stdev",
            "statistics",
            f"What is the population standard deviation of {SCORES}? Round to 3 decimals.",
            "number",
            round(statistics.pstdev(SCORES), 3),
            1e-4,
        ),
        Task(
            "mean_above",
            "statistics",
            f"How many values in {SCORES} are above their mean?",
            "number",
            sum(s > statistics.mean(SCORES) for s in SCORES),
        ),
        # unit conversions
        Task("fahrenheit", "units", "Convert 98.6 degrees Fahrenheit to Celsius.", "number", (98.6 - 32) * 5 / 9, 1e-3),
        Task(
            "marathon_km",
            "units",
            "A marathon is 26.2188 miles. How many kilometres is that, to 2 decimals? (1 mile = 1.609344 km)",
            "number",
            round(26.2188 * 1.609344, 2),
            1e-3,
        ),
        Task("kmh_to_ms", "units", "Convert 90 km/h to metres per second.", "number", 90 * 1000 / 3600),
        Task("weeks_seconds", "units", "How many seconds are there in 3 weeks?", "number", 3 * 7 * 24 * 3600),
        # files
        Task(
            "file_squares",
            "files",
            "Write the squares of the integers 1 to 20, one per line, to a file named "
            "squares.txt. Then give the file name as your answer.",
            "file",
            file="squares.txt",
            check_file=_squares_file_ok,
        ),
        Task(
            "file_primes_json",
            "files",
            "Save the list of all primes below 50 as a JSON array in a file named "
            "primes.json. Then give the file name as your answer.",
            "file",
            file="primes.json",
            check_file=_primes_json_ok,
        ),
        Task(
            "file_totals_csv",
            "files",
            table + "Write a CSV file named totals.csv with the header "
            "region,revenue and one row per region with its total revenue (units * price). Then give the "
            "file name as your answer.",
            "file",
            file="totals.csv",
            check_file=_totals_csv_ok,
        ),
        Task(
            "file_reverse_lines",
            "files",
            "Create a file lines.txt containing the lines alpha, beta, gamma in "
            "reverse order (gamma first), one per line. Then give the file name as your answer.",
            "file",
            file="lines.txt",
            check_file=_reversed_lines_ok,
        ),
    ]
    from benchmarks.quality_tasks_more import build_more_tasks  # it imports Task from here

    tasks += build_more_tasks()  # issue 35: new kinds, so defaults meet tasks nobody tuned on
    names = [t.name for t in tasks]
    assert len(names) == len(set(names)), "task names must be unique"
    return tasks


# -- checking ---------------------------------------------------------------------------------
#: The longest answer read as a sentence around the expected text; longer ones must match whole.
SENTENCE_WORDS = 12
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"|`([^`]+)`")


def numbers_in(text: str) -> list[float]:
    """Every number written in ``text`` (thousands separators allowed)."""
    return [float(m.group().replace(",", "")) for m in _NUMBER.finditer(text)]


def _close(a: float, b: float, tolerance: float) -> bool:
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)


def _norm(text: str) -> str:
    return text.strip().strip("`'\"").strip().rstrip(".").strip().strip("`'\"").casefold()


def _text_candidates(answer: str) -> list[str]:
    candidates = [answer]
    candidates += [next(g for g in m.groups() if g) for m in _QUOTED.finditer(answer)]
    for marker in (":", " is ", " are ", "="):
        if marker in answer:
            candidates.append(answer.rsplit(marker, 1)[1])
    return candidates


def _tokens(text: str) -> list[str]:
    return [t.casefold() for t in re.findall(r"[A-Za-z]+|-?\d+(?:\.\d+)?", text)]


def check_answer(task: Task, answer: str | None) -> bool:
    """Whether ``answer`` (the agent's solution text) is correct for ``task`` (not files)."""
    if answer is None or not answer.strip():
        return False
    if task.kind == "number":
        found = numbers_in(answer)
        if not found:
            return False
        if len(found) == 1 or _NUMBER.fullmatch(answer.strip().rstrip(".")):
            return _close(found[0], float(task.expected), task.tolerance)
        return any(_close(n, float(task.expected), task.tolerance) for n in (found[-1], found[0]))
    if task.kind == "text":
        want = _norm(str(task.expected))
        if any(_norm(c) == want for c in _text_candidates(answer)):
            return True
        # A short sentence that names the expected text as a whole word ("It is a Tuesday.").
        words = answer.split()
        whole = re.search(rf"(?<![\w-]){re.escape(want)}(?![\w-])", answer.casefold())
        return len(words) <= SENTENCE_WORDS and whole is not None
    if task.kind == "list":
        want = [str(x).casefold() for x in task.expected]
        got = _tokens(answer)
        return any(got[i : i + len(want)] == want for i in range(len(got) - len(want) + 1))
    raise ValueError(f"check_answer does not check {task.kind!r} tasks")


def check_file(task: Task, content: str | None) -> bool:
    """Whether the workspace file a file task asked for holds what it should."""
    assert task.kind == "file" and task.check_file is not None
    if content is None:
        return False
    try:
        return task.check_file(content)
    except (ValueError, IndexError, KeyError):
        return False
