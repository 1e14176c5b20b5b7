"""Context-window admission: the one rule every engine applies at submit time.

DESIGN: never truncate a prompt silently; over the context window is a 400 with the numbers.
So a request is refused at once (``ContextOverflowError``) when its prompt plus ``max_tokens``
does not fit, or when no room is left at all; ``max_tokens=None`` becomes the room left, so
that an engine's owner thread always works with a concrete limit.

A remote backend whose token counts are only estimates passes ``enforce=False``: an estimate
must not refuse a prompt the backend would take, so the backend judges the length itself and
``max_tokens`` is at least 1.
"""

from __future__ import annotations

from dataclasses import replace

from models.engine.api import ContextOverflowError, GenerationRequest


def fit_context(
    request: GenerationRequest, prompt_tokens: int, context_length: int, *, enforce: bool = True
) -> GenerationRequest:
    """``request`` with ``max_tokens`` set (the room left when it was None).

    Raises ContextOverflowError when ``enforce`` and the prompt plus ``max_tokens`` (or, with
    no ``max_tokens``, the prompt alone) leaves no room in ``context_length``.
    """
    room = context_length - prompt_tokens
    if enforce:
        if request.max_tokens is None and room <= 0:
            raise ContextOverflowError(prompt_tokens, 1, context_length)
        if request.max_tokens is not None and request.max_tokens > room:
            raise ContextOverflowError(prompt_tokens, request.max_tokens, context_length)
    if request.max_tokens is None:
        return replace(request, max_tokens=max(1, room))
    return request
