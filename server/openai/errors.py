"""What the OpenAI wire formats refuse, with no HTTP in it.

A request the wire format cannot honour as sent (a field value this server does not
support, a tool or item of a kind it does not know) raises ``RequestRefused``, naming the
field (``param``) and, where OpenAI has one, the error ``code``. ``server.api.errors``
answers it at the edge, as a 400 in OpenAI's error shape: so this folder depends on
nothing else in ``server/``.

Not a ``ValueError`` on purpose: raised inside a pydantic validator, it must reach the API
as itself (a 400 naming the field), not be folded into a validation error (a 422).
"""

from __future__ import annotations


class RequestRefused(Exception):
    """A request the wire format refuses; ``str()`` is the sentence the client reads."""

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param
