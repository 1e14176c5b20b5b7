"""Reading an OpenAI-style server-sent event stream, as a client.

Two clients read such streams: the remote engine (a backend's ``/v1/completions``) and
``codeact-server run`` (our own ``/v1/agent``). Both want the same thing: the JSON object of
each ``data:`` line, in order, until ``data: [DONE]``. OpenAI-style servers put a whole event
on one ``data:`` line, so lines are read one by one; comments (``:``), ``event:``/``id:``
fields and blank separators carry nothing these clients use and are skipped.

It takes lines rather than an HTTP response, so it needs no HTTP library (``models`` must not
import ``server``; the CLI passes ``httpx.Response.iter_lines()``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any


class MalformedEventError(ValueError):
    """A ``data:`` line that is not a JSON object; the sender broke the stream format."""

    def __init__(self, data: str) -> None:
        super().__init__(f"malformed stream event (not a JSON object): {data[:80]!r}")
        self.data = data


def sse_json(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON object of each ``data:`` line, up to ``data: [DONE]`` (or the end of ``lines``).

    Raises MalformedEventError for a ``data:`` line that is not a JSON object.
    """
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise MalformedEventError(data) from exc
        if not isinstance(event, dict):
            raise MalformedEventError(data)
        yield event
