"""A Responses request's side of the store: the stored response it continues
(``previous_response_id``) and the answers it stores (``store: true``, the default).

Why apart from the routes: every way a response is answered (whole, streamed, in the
background, through the code interpreter) stores it the same way, as its key's record, with
the conversation so far; each answer path is handed a ``Remember`` instead of the store.
"""

from __future__ import annotations

from typing import Any

from server.api.errors import APIError
from server.openai.responses_items import ResponsesRequest, input_item_list, output_messages
from server.store import ResponseRecords, StoredResponse


class Remember:
    """Stores the answers of one request (when its ``store`` is true) as its key's records."""

    def __init__(self, store: ResponseRecords, body: ResponsesRequest, turn: list[dict[str, Any]], owner: str) -> None:
        self.store, self.body, self.turn, self.owner = store, body, turn, owner

    async def __call__(self, answer: dict[str, Any], container_id: str | None = None) -> None:
        """Store ``answer``; returns once it is on disk (the client is told it is done after)."""
        if self.body.store:
            await self.soon(answer, container_id)

    def soon(self, answer: dict[str, Any], container_id: str | None = None) -> Any:
        """Store ``answer`` without waiting (from a callback that cannot await); the write's
        future, or None when the request is not stored."""
        if not self.body.store:
            return None
        history = [*self.turn, *output_messages(answer["output"])]
        return self.store.put(
            StoredResponse(answer, history, input_item_list(self.body.input), container_id, self.owner)
        )


async def previous_response(store: ResponseRecords, response_id: str | None, owner: str) -> StoredResponse | None:
    """The stored response ``previous_response_id`` names (None: it names none); a 404 naming it if gone."""
    if response_id is None:
        return None
    found = await store.get(response_id, owner)
    if found is None:
        raise APIError(
            404,
            f"no stored response '{response_id}' (it was created with store: false, deleted, "
            "or dropped by the store's retention limits)",
            code="not_found",
            param="previous_response_id",
        )
    return found
