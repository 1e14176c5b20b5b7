"""A response once made: ``GET`` it (a background one as it stands, or its events again),
cancel a background one, list its input items, ``DELETE`` it.

Why apart from ``create``: these read the store and the background runs only; nothing here
generates. A response is its API key's: with another key every id is a 404, as if absent.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from server.api.auth import key_of
from server.api.deps import BackgroundDep, ResponsesDep
from server.api.errors import InvalidRequest, NotFound
from server.api.openapi_errors import EVENT_STREAM, GUARDS, error_responses
from server.api.streams.sse import sse_response

router = APIRouter()


@router.get(
    "/v1/responses/{response_id}", response_model=None, responses={**error_responses(*GUARDS, 400, 404), **EVENT_STREAM}
)
async def get_response(
    response_id: str,
    store: ResponsesDep,
    background: BackgroundDep,
    request: Request,
    stream: bool = False,
    starting_after: Annotated[int | None, Query(ge=-1)] = None,
) -> Response | dict[str, Any]:
    """A stored response; a background one as it stands now, or (``stream``) its events after
    ``starting_after``, then the live ones until it ends."""
    owner = key_of(request)
    run = await background.find(response_id, owner)
    if run is None:
        stored = await store.get(response_id, owner)
        if stored is None:
            raise NotFound(f"no stored response '{response_id}'")
        if stream or starting_after is not None:
            raise InvalidRequest(
                "only a background response (created with background: true) can be streamed again",
                param="stream" if stream else "starting_after",
            )
        return stored.response
    if not stream:
        if starting_after is not None:
            raise InvalidRequest("starting_after needs stream=true", param="starting_after")
        return run.response
    run.check_resumable(starting_after)  # a 400 now, not after the stream began
    if starting_after is not None:
        background.count_resumption()
    return sse_response(run.follow(starting_after))


@router.post("/v1/responses/{response_id}/cancel", responses=error_responses(*GUARDS, 400, 404))
async def cancel_response(
    response_id: str, store: ResponsesDep, background: BackgroundDep, request: Request
) -> dict[str, Any]:
    """Stop a background response (its generation and sandbox work); a finished one is
    answered as it is."""
    owner = key_of(request)
    run = await background.find(response_id, owner)
    if run is None:
        if await store.get(response_id, owner) is None:
            raise NotFound(f"no stored response '{response_id}'")
        raise InvalidRequest(
            f"response '{response_id}' was not created with background: true; only background "
            "responses can be cancelled",
            param="response_id",
        )
    await run.cancel()
    return run.response


@router.get("/v1/responses/{response_id}/input_items", responses=error_responses(*GUARDS, 404))
async def list_input_items(
    response_id: str, store: ResponsesDep, request: Request, order: Literal["asc", "desc"] = "desc"
) -> dict[str, Any]:
    """The request's own input items (not those of earlier responses), newest first by default."""
    stored = await store.get(response_id, key_of(request))
    if stored is None:
        raise NotFound(f"no stored response '{response_id}'")
    items = stored.input_items if order == "asc" else stored.input_items[::-1]
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": False,
    }


@router.delete("/v1/responses/{response_id}", responses=error_responses(*GUARDS, 404))
async def delete_response(response_id: str, store: ResponsesDep, request: Request) -> dict[str, Any]:
    """Delete a stored response from the store (from disk), and a background run's record with it."""
    owner = key_of(request)
    if not await store.delete(response_id, owner):
        raise NotFound(f"no stored response '{response_id}'")
    return {"id": response_id, "object": "response.deleted", "deleted": True}
