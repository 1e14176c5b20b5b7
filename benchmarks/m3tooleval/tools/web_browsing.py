"""Domain ``web_browsing`` (TOOLS_SPEC.md section 5): a text browser over 55 fixed pages.

The browser is a small state machine (current page, its lines, scroll position, history
stack) kept in the sandbox's module-level ``_m3_web_state``. The interpreter persists for
the whole conversation, so the state does too, and a fresh session gives a fresh browser,
as upstream's one-browser-per-task did. Each tool's prelude creates the state only if it is
missing, so executing all five sources in one namespace yields one shared browser.

Quirks kept on purpose: ``click_url`` removes every single quote and then needs an exact
page name, and may open any page (not only ones linked from the current view); going back
does not restore the scroll position; the page count ``N`` is off by one for pages whose
line count is a multiple of the view size (none in this data set).
"""

from __future__ import annotations

from typing import Any

from ._build import JSON_IMPORT, assemble, json_constant
from .trade_calculator import calculator_source

# Filled in by each tool's prelude inside the sandbox; empty placeholders here.
_m3_web_pages: dict[str, str] = {}
_m3_web_state: dict[str, Any] = {}

_STATE_GUARD = """\
if "_m3_web_state" not in globals():
    _m3_web_state = {{
        "current_page": {default!r},
        "lines": _m3_web_pages[{default!r}].split("\\n"),
        "scroll_position": 0,
        "history": [],
        "lines_per_view": {per_view!r},
    }}
"""


def _m3_web_render():
    """The current view: header, pagination, up to ``lines_per_view`` lines, footer."""
    state = _m3_web_state
    lines = state["lines"]
    per_view = state["lines_per_view"]
    position = state["scroll_position"]
    total = len(lines)
    page = position // per_view + 1 if total > per_view else 1
    pages = total // per_view + 1 if total > per_view else 1
    parts = ["----------"]
    if state["current_page"]:
        parts.append(f"[Web Page Name: {state['current_page']}]")
    parts.append(f"[Viewing page {page} of {pages}]")
    parts.append("")
    parts.append("\n".join(lines[position : position + per_view]))
    parts.append("----------")
    return "\n".join(parts)


def _m3_web_open(name):
    """Make ``name`` the current page, scrolled to the top."""
    _m3_web_state["current_page"] = name
    _m3_web_state["lines"] = _m3_web_pages[name].split("\n")
    _m3_web_state["scroll_position"] = 0


def click_url(url):
    """Open the page named ``url`` (single quotes are ignored) and return its first view."""
    url = url.replace("'", "")
    if url not in _m3_web_pages:
        return "[URL not found.]"
    _m3_web_state["history"].append(_m3_web_state["current_page"])
    _m3_web_open(url)
    return f"[Opened page: {url}]\n" + _m3_web_render()


def go_to_previous_page():
    """Go back to the page before the current one and return its first view."""
    if not _m3_web_state["history"]:
        return "[No previous page.]"
    _m3_web_open(_m3_web_state["history"].pop())
    return f"[Opened page: {_m3_web_state['current_page']}]\n" + _m3_web_render()


def scroll_down():
    """Show the next ``lines_per_view`` lines of the current page."""
    state = _m3_web_state
    if state["scroll_position"] + state["lines_per_view"] < len(state["lines"]):
        state["scroll_position"] += state["lines_per_view"]
        return _m3_web_render()
    return "[Reached the bottom of the page.]\n"


def scroll_up():
    """Show the previous ``lines_per_view`` lines of the current page."""
    state = _m3_web_state
    if state["scroll_position"] > 0:
        state["scroll_position"] -= state["lines_per_view"]
        return _m3_web_render()
    return "[Reached the top of the page.]\n"


def view():
    """Return the current view of the current page."""
    return _m3_web_render()


def build_sources(data: dict[str, Any]) -> dict[str, str]:
    """Tool name -> self-contained source, each embedding all pages and the state guard."""
    settings = data["browser_settings"]
    pages = {page["name"]: page["content"] for page in data["pages"]}
    preamble = [
        JSON_IMPORT,
        'if "_m3_web_pages" not in globals():\n    ' + json_constant("_m3_web_pages", pages),
        _STATE_GUARD.format(default=settings["default_page"], per_view=settings["lines_per_view"]),
    ]
    sources = {
        func.__name__: assemble(preamble=preamble, helpers=[_m3_web_render, _m3_web_open], tool=func)
        for func in (click_url, go_to_previous_page, scroll_down, scroll_up, view)
    }
    sources["calculator"] = calculator_source()
    return sources
