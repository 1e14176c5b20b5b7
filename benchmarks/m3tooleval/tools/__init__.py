"""M3ToolEval tools, delivered to the agent's sandbox as Python source text.

``tools_for_task(task)`` gives the ``tools`` list of a ``/v1/agent`` request: for each of
the task's tools, in ``tasks.json`` order, its name, the signature and description exactly
as upstream advertised them (including the misleading ``find_flights`` signature), and a
self-contained ``source`` that defines the function when ``exec``-ed. See ``_build`` for
how the sources are assembled and why they embed their data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ..data import load_domain_data
from . import dna_sequencer, message_decoder, trade_calculator, travel, web_browsing

_BUILDERS: dict[str, Callable[[dict[str, Any]], dict[str, str]]] = {
    "message_decoder": message_decoder.build_sources,
    "cryptobotanists_plant_dna_sequencer": dna_sequencer.build_sources,
    "trade_calculator": trade_calculator.build_sources,
    "travel_itinerary_planning": travel.build_sources,
    "web_browsing": web_browsing.build_sources,
}

DOMAINS: tuple[str, ...] = tuple(_BUILDERS)


@functools.cache
def domain_sources(domain: str) -> dict[str, str]:
    """Tool name -> source for every tool of ``domain`` (built once, from the shared data)."""
    try:
        builder = _BUILDERS[domain]
    except KeyError:
        raise ValueError(f"unknown M3ToolEval domain: {domain!r}") from None
    return builder(load_domain_data(domain))


def tools_for_task(task: dict[str, Any]) -> list[dict[str, str]]:
    """The task's tools as ``{name, signature, description, source}``, in prompt order."""
    sources = domain_sources(task["domain"])
    return [
        {
            "name": tool["name"],
            "signature": tool["signature"],
            "description": tool["description"],
            "source": sources[tool["name"]],
        }
        for tool in task["tools"]
    ]


__all__ = ["DOMAINS", "domain_sources", "tools_for_task"]
