"""Domain ``trade_calculator`` (TOOLS_SPEC.md section 3): plain arithmetic, no tables.

The order of operations is part of the contract because results are compared as float
reprs: the tariff is ``(price * rate) / 100``, multiply first. ``calculator`` is also the
web-browsing domain's calculator.
"""

from __future__ import annotations

import builtins as _m3_builtins

from ._build import BUILTINS_IMPORT, assemble


def convert_currency(base_price, conversion_rate):
    """Return ``base_price * conversion_rate``."""
    return base_price * conversion_rate


def calculate_tariff(price, tariff_rate):
    """Return the tariff for a rate in percent: ``(price * tariff_rate) / 100``."""
    return (price * tariff_rate) / 100


def estimate_final_value(price, tariff):
    """Return ``price + tariff``."""
    return price + tariff


def calculator(expression):
    """Evaluate a Python expression; on any error return a 'Failed to evaluate' string."""
    try:
        return eval(expression, {})
    except Exception:
        return f"Failed to evaluate expression: {expression}"


def find_minimum(*args):
    """Return the smallest of the positional arguments."""
    return _m3_builtins.min(args)


def find_maximum(*args):
    """Return the largest of the positional arguments."""
    return _m3_builtins.max(args)


def calculator_source() -> str:
    """Source of ``calculator``, shared with the web-browsing domain."""
    return assemble(tool=calculator)


def build_sources(data: dict[str, object]) -> dict[str, str]:
    """Tool name -> self-contained source. ``data`` is unused: this domain has no tables."""
    del data
    plain = (convert_currency, calculate_tariff, estimate_final_value)
    sources = {func.__name__: assemble(tool=func) for func in plain}
    sources["calculator"] = calculator_source()
    for func in (find_minimum, find_maximum):
        sources[func.__name__] = assemble(preamble=[BUILTINS_IMPORT], tool=func)
    return sources
