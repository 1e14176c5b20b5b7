"""`EncodableJSONResponse`: every JSON answer the API sends, whatever strings it holds.

Why: Starlette encodes JSON bodies as strict UTF-8, so one string with a lone surrogate (in an
exception's message from agent code, a refused tool's name, a tool's error) turned a whole
answer into a 500 and lost the step. The sandbox's boundary already makes what crosses it
encodable (``sandbox.protocol.encodable``); this is the net under every other source: such a
character becomes ``?`` and the answer goes out.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse


class EncodableJSONResponse(JSONResponse):
    """A `JSONResponse` whose body never fails to encode."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
        return text.encode("utf-8", "replace")
