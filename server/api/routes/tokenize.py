"""``POST /tokenize`` and ``POST /detokenize``, shaped as llama-server shapes them.

- ``/tokenize`` takes ``content`` (special tokens such as ``<|im_end|>`` are parsed),
  ``add_special`` (add BOS/EOS where the model wants them; default false) and
  ``with_pieces``; it answers ``{"tokens": [ids]}``, or with pieces
  ``{"tokens": [{"id": 1, "piece": "text"}]}``. A piece that is not whole UTF-8 (part of
  a multi-byte character) is given as its list of byte values, as llama-server does.
- ``/detokenize`` takes ``tokens`` and answers ``{"content": "text"}`` (special tokens
  rendered).

An engine without a tokenizer (scripted, or remote on a backend without one) answers 501; an id outside the
vocabulary is a 400 naming ``tokens``.

The bodies are validated as their schema says, no more leniently: ``with_pieces: 0`` is
not a boolean and ``"12"`` or ``true`` is not a token id (pydantic's lax mode takes all
three), while ``12.0`` is one (JSON Schema's integers include it); a token id is at least 0
in the schema and in the validation alike. A body outside its schema is a 422 naming the
field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, BeforeValidator, Field, StrictBool

from models.engine.api import InvalidTokenError
from server.api.deps import EngineDep
from server.api.errors import InvalidRequest
from server.api.openapi_errors import TOKENIZE_RESPONSES

router = APIRouter()


class TokenizeRequest(BaseModel):
    content: str
    add_special: StrictBool = Field(False, description="add BOS/EOS where the model wants them")
    with_pieces: StrictBool = Field(False, description="answer each token's id and text")
    parse_special: Literal[True] = Field(
        True, description="special tokens such as <|im_end|> are always recognised; false is refused"
    )


class TokenPiece(BaseModel):
    id: int
    piece: str | list[int] = Field(description="the token's text, or its bytes when not whole UTF-8")


class TokenizeResponse(BaseModel):
    tokens: list[int] | list[TokenPiece]


def _a_number(value: Any) -> Any:
    """JSON Schema's integer is a number (``12.0`` too), never text or a boolean."""
    if isinstance(value, str | bool):
        raise ValueError("Input should be a valid integer")
    return value


TokenId = Annotated[int, Field(ge=0), BeforeValidator(_a_number)]


class DetokenizeRequest(BaseModel):
    tokens: list[TokenId]


class DetokenizeResponse(BaseModel):
    content: str


def _piece(raw: bytes) -> str | list[int]:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return list(raw)


def _invalid_token(exc: InvalidTokenError) -> InvalidRequest:
    return InvalidRequest(str(exc), code="invalid_token", param="tokens")


# Plain ``def``: FastAPI runs these in its thread pool, so a long text does not block the loop.
@router.post("/tokenize", response_model=TokenizeResponse, responses=TOKENIZE_RESPONSES)
def tokenize(body: TokenizeRequest, engine: EngineDep) -> TokenizeResponse:
    tokens = engine.tokenize(body.content, body.add_special)
    if not body.with_pieces:
        return TokenizeResponse(tokens=tokens)
    try:
        pieces = engine.token_pieces(tokens)
    except InvalidTokenError as exc:  # cannot happen for ids the engine just made
        raise _invalid_token(exc) from exc
    return TokenizeResponse(
        tokens=[TokenPiece(id=token, piece=_piece(raw)) for token, raw in zip(tokens, pieces, strict=True)]
    )


@router.post("/detokenize", response_model=DetokenizeResponse, responses=TOKENIZE_RESPONSES)
def detokenize(body: DetokenizeRequest, engine: EngineDep) -> DetokenizeResponse:
    try:
        return DetokenizeResponse(content=engine.detokenize(body.tokens))
    except InvalidTokenError as exc:
        raise _invalid_token(exc) from exc
