"""Domain ``travel_itinerary_planning`` (TOOLS_SPEC.md section 4).

Locations in the tables literally contain double quotes (``'"A"'``); the tools strip
double quotes from their arguments before comparing, and return rows with the quotes kept.
The ``max``/``min``/``sum`` tools shadow the builtins in the sandbox, as upstream's REPL
did: ``max``/``min`` are the builtins themselves, ``sum`` sums its positional arguments
(so ``sum([1, 2])`` fails, a documented quirk). Rows are returned as copies so that model
code mutating a result cannot change later answers.
"""

from __future__ import annotations

from typing import Any

from ._build import JSON_IMPORT, assemble, json_constant

# Filled in by each tool's prelude inside the sandbox; empty placeholders here.
_m3_travel: dict[str, Any] = {}


def _m3_travel_check(value, message):
    """Strip double quotes from a location and reject unsupported ones with ``message``."""
    stripped = value.strip('"')
    if stripped not in _m3_travel["supported"]:
        raise ValueError(message.format(stripped, _m3_travel["locations"]))
    return stripped


def find_flights(from_location, to_location, date):
    """Flights from ``from_location`` to ``to_location`` on ``date`` (YYYY-MM-DD)."""
    origin = _m3_travel_check(from_location, "Origin [{}] is not supported. Supported from_locations: {}")
    destination = _m3_travel_check(to_location, "Destination [{}] is not supported. Supported to_locations: {}")
    return [
        dict(flight)
        for flight in _m3_travel["flights"]
        if flight["from_location"].strip('"') == origin
        and flight["to_location"].strip('"') == destination
        and flight["date"] == date
    ]


def book_hotel(location, *preferences):
    """Hotels at ``location`` offering every one of ``preferences``."""
    place = _m3_travel_check(location, "Location [{}] is not supported. Supported locations: {}")
    return [
        {**hotel, "preferences": list(hotel["preferences"])}
        for hotel in _m3_travel["hotels"]
        if hotel["location"].strip('"') == place and all(pref in hotel["preferences"] for pref in preferences)
    ]


def budget_calculator(flight_price, hotel_price_per_night, num_nights):
    """Return ``flight_price + hotel_price_per_night * num_nights``."""
    return flight_price + hotel_price_per_night * num_nights


def _builtin_wrapper(name: str, params: str, doc: str, call: str) -> str:
    """Source of a tool that forwards to a builtin: a real ``def``, like every other tool."""
    return f'import builtins as _m3_builtins\n\n\ndef {name}({params}):\n    """{doc}"""\n    return {call}\n'


# ``max``/``min`` take everything the builtins take (one iterable, ``key=``, ``default=``);
# ``sum`` sums its positional arguments, so ``sum([1, 2])`` fails as it did upstream.
_BUILTIN_ALIASES = {
    "max": _builtin_wrapper("max", "*args, **kwargs", "Python's builtin max.", "_m3_builtins.max(*args, **kwargs)"),
    "min": _builtin_wrapper("min", "*args, **kwargs", "Python's builtin min.", "_m3_builtins.min(*args, **kwargs)"),
    "sum": _builtin_wrapper("sum", "*args", "Sum the positional arguments, starting from 0.", "_m3_builtins.sum(args)"),
}


def build_sources(data: dict[str, Any]) -> dict[str, str]:
    """Tool name -> self-contained source, each embedding the flight and hotel tables."""
    tables = {
        "locations": data["locations"],
        "supported": data["supported_locations_after_quote_strip"],
        "flights": data["flights"],
        "hotels": data["hotels"],
    }
    preamble = [JSON_IMPORT, json_constant("_m3_travel", tables)]
    sources = {
        "find_flights": assemble(preamble=preamble, helpers=[_m3_travel_check], tool=find_flights),
        "book_hotel": assemble(preamble=preamble, helpers=[_m3_travel_check], tool=book_hotel),
        "budget_calculator": assemble(tool=budget_calculator),
    }
    sources.update(_BUILTIN_ALIASES)
    return sources
