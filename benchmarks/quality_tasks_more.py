"""More agent-quality tasks, of new kinds: the held-out growth of the suite (issue 35).

The first 47 tasks (``benchmarks.quality_tasks``) are the ones a default was tuned on. These
tasks are written afterwards, of kinds that suite has little of (tables with joins and pivots,
paragraph statistics, calendar arithmetic, multi-step word problems, more statistics), so a
default can be measured on tasks it was not tuned on. The conventions are the suite's: every
prompt is self-contained and says what to answer, and every expected answer is computed here
by plain Python (csv, json, datetime, statistics), never typed in from a guess.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
import json
import re
import statistics
from collections import Counter
from fractions import Fraction

from benchmarks.quality_tasks import Task

# -- tables ------------------------------------------------------------------------------------
INVENTORY_CSV = """item,category,warehouse,stock,unit_cost
hammer,tools,A,14,8.50
wrench,tools,B,6,11.25
drill,tools,B,3,54.00
saw,tools,A,9,17.75
glue,supplies,B,40,2.40
tape,supplies,A,55,1.95
nails,supplies,B,8,6.10
gloves,safety,A,22,4.80
goggles,safety,B,7,9.90
helmet,safety,A,4,23.00"""

CUSTOMERS_JSON = json.dumps(
    [
        {"id": 1, "name": "Mila", "country": "Germany"},
        {"id": 2, "name": "Tomas", "country": "Spain"},
        {"id": 3, "name": "Ines", "country": "Germany"},
        {"id": 4, "name": "Kofi", "country": "Ghana"},
        {"id": 5, "name": "Yuki", "country": "Japan"},
    ]
)

ORDERS_CSV = """order_id,customer_id,amount
101,3,45.00
102,1,120.50
103,2,30.25
104,3,99.99
105,5,15.00
106,4,60.00
107,1,12.75
108,3,8.40
109,2,210.00
110,5,44.60"""

CITIES_JSON = json.dumps(
    [
        {"city": "Aster", "population": 812000, "area_km2": 215.4},
        {"city": "Brill", "population": 455000, "area_km2": 98.2},
        {"city": "Corvo", "population": 1250000, "area_km2": 410.0},
        {"city": "Dunmore", "population": 97000, "area_km2": 18.5},
        {"city": "Elling", "population": 630000, "area_km2": 142.7},
    ]
)

# Long format: a (month, store) pair may appear more than once; a pivot sums them.
MONTHLY_CSV = """month,store,amount
Jan,Downtown,1200
Jan,Airport,800
Feb,Downtown,950
Jan,Downtown,300
Feb,Airport,1100
Mar,Downtown,1400
Mar,Airport,700
Feb,Downtown,250
Mar,Downtown,180
Mar,Airport,620"""

EMPLOYEES_JSON = json.dumps(
    [
        {"name": "Ravi", "dept": "Eng", "salary": 98000},
        {"name": "Lena", "dept": "Eng", "salary": 105000},
        {"name": "Omar", "dept": "Eng", "salary": 87000},
        {"name": "Zoe", "dept": "Eng", "salary": 120000},
        {"name": "Pia", "dept": "Sales", "salary": 61000},
        {"name": "Hugo", "dept": "Sales", "salary": 72000},
        {"name": "Nell", "dept": "Sales", "salary": 58000},
        {"name": "Sam", "dept": "Ops", "salary": 54000},
        {"name": "Ivy", "dept": "Ops", "salary": 56000},
    ]
)

# -- text --------------------------------------------------------------------------------------
# No apostrophes or hyphens, so "a word" is the same whether split on spaces or on non-letters.
PARAGRAPH = (
    "Mira opened the old wooden chest and found seven letters tied with a faded ribbon. "
    "Each letter described a journey across quiet mountains and restless rivers. "
    "Did her grandmother really travel that far alone? "
    "The last letter ended with a promise to return before the winter storms. "
    "Mira smiled, folded the letters carefully, and placed them back in the chest!"
)
PALINDROME_TEXT = "At noon Anna and Otto drove a racecar past the civic hall, where a kayak hung level above the stage"
RLE_INPUT = "aaabccddddeffffffg"
ACRONYM_PHRASE = "portable document rendering engine for scientific tables"
REVERSE_PHRASE = "green lamps glow over the silent harbor"

# -- statistics --------------------------------------------------------------------------------
DATA_EVEN = [14, 3, 27, 8, 19, 22, 5, 11, 30, 16]
MODE_DATA = [4, 7, 2, 7, 9, 4, 7, 1, 9, 7, 3]
GRADES = [72, 85, 90, 64]
WEIGHTS = [2, 3, 4, 1]
XS = [2, 4, 5, 7, 9, 11]
YS = [3, 5, 4, 8, 10, 12]


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _words(text: str) -> list[str]:
    """Maximal runs of letters, lowercased."""
    return [w.lower() for w in re.findall(r"[A-Za-z]+", text)]


def _rle(text: str) -> str:
    out: list[str] = []
    for ch in text:
        if out and out[-1][0] == ch:
            out[-1] = ch + str(int(out[-1][1:]) + 1)
        else:
            out.append(ch + "1")
    return "".join(out)


def _is_anagram(a: str, b: str) -> bool:
    return Counter(a.replace(" ", "").lower()) == Counter(b.replace(" ", "").lower())


def _age(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _weekdays_inclusive(start: dt.date, end: dt.date) -> int:
    days = (end - start).days + 1
    return sum((start + dt.timedelta(days=i)).weekday() < 5 for i in range(days))


def _last_weekday(year: int, month: int, weekday: int) -> dt.date:
    day = dt.date(year, month, calendar.monthrange(year, month)[1])
    return day - dt.timedelta(days=(day.weekday() - weekday) % 7)


def _half_step(value: float, decimals: int) -> float:
    """A relative tolerance that accepts ``value`` to within half its rounding step."""
    return 0.5 * 10**-decimals / abs(value)


def build_more_tasks() -> list[Task]:
    """The held-out tasks, in a fixed order."""
    inventory = _rows(INVENTORY_CSV)
    customers = json.loads(CUSTOMERS_JSON)
    orders = _rows(ORDERS_CSV)
    cities = json.loads(CITIES_JSON)
    monthly = _rows(MONTHLY_CSV)
    employees = json.loads(EMPLOYEES_JSON)
    inv = f"Here is a CSV table of a shop's inventory:\n{INVENTORY_CSV}\n"
    join = f"Here is a JSON list of customers:\n{CUSTOMERS_JSON}\nand a CSV table of orders:\n{ORDERS_CSV}\n"

    def value(r: dict[str, str]) -> float:
        return int(r["stock"]) * float(r["unit_cost"])

    categories = sorted({r["category"] for r in inventory})
    german = {c["id"] for c in customers if c["country"] == "Germany"}
    order_counts = Counter(int(o["customer_id"]) for o in orders)
    dept_mean = {
        d: statistics.mean(e["salary"] for e in employees if e["dept"] == d) for d in {e["dept"] for e in employees}
    }
    germany_total = round(sum(float(o["amount"]) for o in orders if int(o["customer_id"]) in german), 2)
    para_words = _words(PARAGRAPH)
    longest = max(para_words, key=len)

    shopping = round((3 * 24.99 + 2 * 39.50) * 0.85 * 1.08, 2)
    avg_speed = round((120 + 90) / (120 / 80 + 15 / 60 + 90 / 60), 2)
    savings = round(2500 * (1 + 0.032 / 12) ** (12 * 7), 2)
    per_person = round((18.50 + 22.00 + 15.75 + 27.25 + 9.90) * (1 + 0.18 + 0.075) / 4, 2)
    flour = round(3 * 2.5 * 236.588 * 0.593, 1)
    fuel = round(435 * 6.8 / 100 * 1.89, 2)
    salary = round(52000 * 1.04 * 1.025 * 1.06, 2)
    meet = dt.datetime(2025, 1, 1, 9, 40) + dt.timedelta(hours=410 / (85 + 65))
    stdev = round(statistics.stdev(DATA_EVEN), 3)
    q1, _, q3 = statistics.quantiles(DATA_EVEN, n=4, method="inclusive")
    weighted = round(sum(g * w for g, w in zip(GRADES, WEIGHTS, strict=True)) / sum(WEIGHTS), 2)
    zscore = round((27 - statistics.mean(DATA_EVEN)) / statistics.pstdev(DATA_EVEN), 3)
    corr = round(statistics.correlation(XS, YS), 4)

    tasks = [
        # tables
        Task(
            "tbl_tools_value_b",
            "tables",
            inv + "What is the total stock value (stock * unit_cost) of the items of category tools in warehouse B?",
            "number",
            sum(value(r) for r in inventory if r["category"] == "tools" and r["warehouse"] == "B"),
        ),
        Task(
            "tbl_sum_category_max_cost",
            "tables",
            inv + "For each category, take the highest unit_cost in it. What is the sum of these highest unit_costs?",
            "number",
            sum(max(float(r["unit_cost"]) for r in inventory if r["category"] == c) for c in categories),
        ),
        Task(
            "tbl_low_stock_count",
            "tables",
            inv + "How many items have a stock below 10 and a unit_cost above 5?",
            "number",
            sum(int(r["stock"]) < 10 and float(r["unit_cost"]) > 5 for r in inventory),
        ),
        Task(
            "tbl_warehouse_a_ranking",
            "tables",
            inv + "List the items in warehouse A from the largest stock value (stock * unit_cost) to the smallest. "
            "Answer with the item names separated by commas.",
            "list",
            [r["item"] for r in sorted(inventory, key=value, reverse=True) if r["warehouse"] == "A"],
        ),
        Task(
            "tbl_join_germany_total",
            "tables",
            join + "What is the total amount of all orders placed by customers from Germany?",
            "number",
            germany_total,
            _half_step(germany_total, 2),
        ),
        Task(
            "tbl_join_most_orders",
            "tables",
            join + "What is the name of the customer who placed the most orders?",
            "text",
            next(c["name"] for c in customers if c["id"] == order_counts.most_common(1)[0][0]),
        ),
        Task(
            "tbl_densest_city",
            "tables",
            f"Here is a JSON list of cities:\n{CITIES_JSON}\n"
            "Which city has the highest population density (population / area_km2)? Answer with the city name.",
            "text",
            max(cities, key=lambda c: c["population"] / c["area_km2"])["city"],
        ),
        Task(
            "tbl_pivot_mar_downtown",
            "tables",
            f"Here is a CSV table of sales:\n{MONTHLY_CSV}\n"
            "Build a pivot table with months as rows, stores as columns and the summed amount as values. "
            "What is the value for month Mar and store Downtown?",
            "number",
            sum(int(r["amount"]) for r in monthly if r["month"] == "Mar" and r["store"] == "Downtown"),
        ),
        Task(
            "tbl_above_dept_mean",
            "tables",
            f"Here is a JSON list of employees:\n{EMPLOYEES_JSON}\n"
            "Which employees earn more than the average salary of their own department? "
            "Answer with their names in alphabetical order, separated by commas.",
            "list",
            sorted(e["name"] for e in employees if e["salary"] > dept_mean[e["dept"]]),
        ),
        # text; a word is a maximal run of letters
        Task(
            "txt_five_letter_words",
            "text",
            f"Here is a paragraph:\n{PARAGRAPH}\nHow many words in it have exactly 5 letters (ignore punctuation)?",
            "number",
            sum(len(w) == 5 for w in para_words),
        ),
        Task(
            "txt_most_common_word",
            "text",
            f"Here is a paragraph:\n{PARAGRAPH}\n"
            "Which word occurs most often in it, ignoring case and punctuation? Answer with the word in lowercase.",
            "text",
            Counter(para_words).most_common(1)[0][0],
        ),
        Task(
            "txt_longest_word",
            "text",
            f"Here is a paragraph:\n{PARAGRAPH}\nWhat is the longest word in it? Answer with the word.",
            "text",
            longest,
        ),
        Task(
            "txt_sentence_count",
            "text",
            f"Here is a paragraph:\n{PARAGRAPH}\n"
            "How many sentences does it have? A sentence ends with '.', '!' or '?'.",
            "number",
            len(re.findall(r"[.!?]", PARAGRAPH)),
        ),
        Task(
            "txt_vowel_count",
            "text",
            f"Here is a paragraph:\n{PARAGRAPH}\n"
            "How many vowels (a, e, i, o, u, upper or lower case; y is not a vowel) does it contain?",
            "number",
            sum(c in "aeiou" for c in PARAGRAPH.lower()),
        ),
        Task(
            "txt_long_words",
            "text",
            f"Here is a paragraph:\n{PARAGRAPH}\nWhich words in it have at least 9 letters? "
            "Answer with the words in the order they appear, separated by commas.",
            "list",
            [w for w in para_words if len(w) >= 9],
        ),
        Task(
            "txt_palindrome_words",
            "text",
            f"Here is a sentence:\n{PALINDROME_TEXT}\nWhich words of at least 3 letters are palindromes "
            "(read the same backwards, ignoring case)? Answer with them in lowercase, in the order they appear, "
            "separated by commas.",
            "list",
            [w for w in _words(PALINDROME_TEXT) if len(w) >= 3 and w == w[::-1]],
        ),
        Task(
            "txt_acronym",
            "text",
            f"Build the acronym of '{ACRONYM_PHRASE}' from the first "
            "letter of each word, in uppercase. Answer with the acronym.",
            "text",
            "".join(w[0] for w in ACRONYM_PHRASE.split()).upper(),
        ),
        Task(
            "txt_reverse_word_order",
            "text",
            f"Reverse the order of the words in '{REVERSE_PHRASE}'. "
            "Answer with the words in their new order, separated by single spaces.",
            "text",
            " ".join(reversed(REVERSE_PHRASE.split())),
        ),
        Task(
            "txt_run_length",
            "text",
            f"Run-length encode the string '{RLE_INPUT}': write each character followed by the length of its run, "
            "writing 1 for single characters (so 'aab' becomes 'a2b1'). Answer with the encoded string.",
            "text",
            _rle(RLE_INPUT),
        ),
        Task(
            "txt_anagram",
            "text",
            "Ignoring spaces and case, is 'Night Shift Crew' an anagram of 'Christ Wing Feet'? Answer yes or no.",
            "text",
            "yes" if _is_anagram("Night Shift Crew", "Christ Wing Feet") else "no",
        ),
        # dates
        Task(
            "dt_weekday_2031",
            "dates",
            "On what day of the week is 2031-07-14? Answer with the weekday name.",
            "text",
            dt.date(2031, 7, 14).strftime("%A"),
        ),
        Task(
            "dt_days_1999_2024",
            "dates",
            "How many days are there from 1999-12-31 to 2024-11-02? Answer with a single integer.",
            "number",
            (dt.date(2024, 11, 2) - dt.date(1999, 12, 31)).days,
        ),
        Task(
            "dt_90_days_before",
            "dates",
            "What date is 90 days before 2025-03-15? Answer with the date as YYYY-MM-DD.",
            "text",
            (dt.date(2025, 3, 15) - dt.timedelta(days=90)).isoformat(),
        ),
        Task(
            "dt_mondays_sep_2025",
            "dates",
            "How many Mondays are there in September 2025 (2025-09-01 to 2025-09-30)?",
            "number",
            sum(dt.date(2025, 9, d).weekday() == 0 for d in range(1, 31)),
        ),
        Task(
            "dt_age_full_years",
            "dates",
            "Someone was born on 1987-07-01. How old are they, in full years, on 2025-06-30?",
            "number",
            _age(dt.date(1987, 7, 1), dt.date(2025, 6, 30)),
        ),
        Task(
            "dt_iso_week_2021",
            "dates",
            "What is the ISO 8601 week number of 2021-01-03? Answer with a single integer.",
            "number",
            dt.date(2021, 1, 3).isocalendar()[1],
        ),
        Task(
            "dt_last_feb_2100",
            "dates",
            "What is the last day of February in the year 2100? Answer with the date as YYYY-MM-DD.",
            "text",
            dt.date(2100, 2, calendar.monthrange(2100, 2)[1]).isoformat(),
        ),
        Task(
            "dt_weekdays_march_2025",
            "dates",
            "How many weekdays (Monday to Friday) are there from 2025-03-03 to 2025-03-28, counting both dates?",
            "number",
            _weekdays_inclusive(dt.date(2025, 3, 3), dt.date(2025, 3, 28)),
        ),
        Task(
            "dt_friday_13_2026",
            "dates",
            "In which months of 2026 does the 13th fall on a Friday? "
            "Answer with the English month names in calendar order, separated by commas.",
            "list",
            [calendar.month_name[m] for m in range(1, 13) if dt.date(2026, m, 13).weekday() == 4],
        ),
        Task(
            "dt_day_of_year",
            "dates",
            "What is the day of the year of 2024-10-05, counting 2024-01-01 as day 1?",
            "number",
            dt.date(2024, 10, 5).timetuple().tm_yday,
        ),
        Task(
            "dt_last_friday_nov_2027",
            "dates",
            "What is the date of the last Friday of November 2027? Answer with the date as YYYY-MM-DD.",
            "text",
            _last_weekday(2027, 11, 4).isoformat(),
        ),
        # word problems
        Task(
            "wp_shopping",
            "word problems",
            "A customer buys 3 shirts at 24.99 dollars each and 2 pairs of trousers at 39.50 dollars each. "
            "The shop takes 15% off the whole order, then adds 8% sales tax to the discounted amount. "
            "How many dollars does the customer pay? Answer rounded to 2 decimal places.",
            "number",
            shopping,
            _half_step(shopping, 2),
        ),
        Task(
            "wp_average_speed",
            "word problems",
            "A car drives 120 km at 80 km/h, stops for 15 minutes, then drives 90 km at 60 km/h. What is its "
            "average speed in km/h over the whole trip, stop included? Answer rounded to 2 decimal places.",
            "number",
            avg_speed,
            _half_step(avg_speed, 2),
        ),
        Task(
            "wp_compound_monthly",
            "word problems",
            "2500 dollars are deposited at 3.2% yearly interest, compounded monthly (3.2%/12 each month). "
            "How many dollars are in the account after 7 years? Round only the final amount, to 2 decimal places.",
            "number",
            savings,
            _half_step(savings, 2),
        ),
        Task(
            "wp_mixing",
            "word problems",
            "300 ml of a 12% salt solution is mixed with 500 ml of a 4% salt solution and 200 ml of pure water. "
            "What is the salt concentration of the mixture, in percent? Answer rounded to 2 decimal places.",
            "number",
            round((300 * 12 + 500 * 4) / (300 + 500 + 200), 2),
        ),
        Task(
            "wp_work_rate",
            "word problems",
            "Pipe A fills a tank in 6 hours and pipe B fills it in 9 hours; a drain empties the full tank in "
            "18 hours. With both pipes and the drain open, how many hours does it take to fill the empty tank?",
            "number",
            float(1 / (Fraction(1, 6) + Fraction(1, 9) - Fraction(1, 18))),
        ),
        Task(
            "wp_split_bill",
            "word problems",
            "Four friends order dishes costing 18.50, 22.00, 15.75, 27.25 and 9.90 dollars. They add an 18% tip "
            "and 7.5% tax, both computed on the sum of the dishes, and split the total equally. How many dollars "
            "does each friend pay? Answer rounded to 2 decimal places.",
            "number",
            per_person,
            _half_step(per_person, 2),
        ),
        Task(
            "wp_flour_grams",
            "word problems",
            "A recipe needs 2.5 cups of flour per batch. One cup is 236.588 ml and flour weighs 0.593 g per ml. "
            "How many grams of flour do 3 batches need? Answer rounded to 1 decimal place.",
            "number",
            flour,
            _half_step(flour, 1),
        ),
        Task(
            "wp_fuel_cost",
            "word problems",
            "A car uses 6.8 litres of fuel per 100 km. Fuel costs 1.89 euros per litre. How many euros does the "
            "fuel for a 435 km trip cost? Answer rounded to 2 decimal places.",
            "number",
            fuel,
            _half_step(fuel, 2),
        ),
        Task(
            "wp_child_tickets",
            "word problems",
            "A cinema sells adult tickets at 12.50 dollars and child tickets at 8.00 dollars. It sold 40 tickets "
            "for 419.00 dollars in total. How many child tickets did it sell?",
            "number",
            next(c for c in range(41) if 1250 * (40 - c) + 800 * c == 41900),
        ),
        Task(
            "wp_salary_raises",
            "word problems",
            "A salary of 52000 dollars gets a 4% raise, then a 2.5% raise on the new salary, then a 6% raise on "
            "that. What is the final salary in dollars? Answer rounded to 2 decimal places.",
            "number",
            salary,
            _half_step(salary, 2),
        ),
        Task(
            "wp_trains_meet",
            "word problems",
            "Two trains are 410 km apart and leave at 09:40 towards each other, one at 85 km/h and the other at "
            "65 km/h. At what time do they meet? Answer as HH:MM on a 24-hour clock.",
            "text",
            meet.strftime("%H:%M"),
        ),
        # statistics
        Task(
            "stat_median_even",
            "statistics",
            f"What is the median of {DATA_EVEN}?",
            "number",
            statistics.median(DATA_EVEN),
        ),
        Task(
            "stat_sample_stdev",
            "statistics",
            f"What is the sample standard deviation (dividing by n - 1) of {DATA_EVEN}? "
            "Answer rounded to 3 decimal places.",
            "number",
            stdev,
            _half_step(stdev, 3),
        ),
        Task("stat_mode", "statistics", f"What is the mode of {MODE_DATA}?", "number", statistics.mode(MODE_DATA)),
        Task(
            "stat_iqr_inclusive",
            "statistics",
            f"What is the interquartile range (Q3 - Q1) of {DATA_EVEN}, with the quartiles from Python's "
            "statistics.quantiles(data, n=4, method='inclusive')?",
            "number",
            q3 - q1,
        ),
        Task(
            "stat_weighted_mean",
            "statistics",
            f"A student's grades are {GRADES} with weights {WEIGHTS} (in the same order). "
            "What is the weighted mean grade? Answer rounded to 2 decimal places.",
            "number",
            weighted,
            _half_step(weighted, 2),
        ),
        Task(
            "stat_zscore",
            "statistics",
            f"What is the z-score of 27 in {DATA_EVEN}, using the population mean and the population standard "
            "deviation (dividing by n)? Answer rounded to 3 decimal places.",
            "number",
            zscore,
            _half_step(zscore, 3),
        ),
        Task(
            "stat_pearson",
            "statistics",
            f"What is the Pearson correlation coefficient between x = {XS} and y = {YS}? "
            "Answer rounded to 4 decimal places.",
            "number",
            corr,
            _half_step(corr, 4),
        ),
    ]
    names = [t.name for t in tasks]
    assert len(names) == len(set(names)), "task names must be unique"
    return tasks
