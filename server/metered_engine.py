"""An Engine decorator that reports every finished generation to ``Metrics``.

Wrapping at the app keeps ``models/`` free of any HTTP or Prometheus concern, and works
the same for the llama.cpp engine and the scripted one. Anything not in the Engine
protocol (e.g. a fake's ``requests`` list) is passed through to the wrapped engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from models.engine.api import (
    Engine,
    EngineError,
    EngineInfo,
    GenerationHandle,
    GenerationRequest,
    GenerationResult,
    TokenLogprob,
)


class MeteredHandle:
    """A generation handle that records its result once, when its stream ends."""

    def __init__(self, inner: GenerationHandle, record: Callable[[GenerationResult], None]) -> None:
        self._inner = inner
        self._record = record
        self._recorded = False

    async def stream(self) -> AsyncIterator[str]:
        try:
            async for piece in self._inner.stream():
                yield piece
        finally:
            self._record_once()

    def _record_once(self) -> None:
        if self._recorded:
            return
        try:
            result = self._inner.result
        except EngineError:  # failed or abandoned before it finished: nothing to record
            return
        self._recorded = True
        self._record(result)

    def cancel(self) -> None:
        self._inner.cancel()

    @property
    def result(self) -> GenerationResult:
        return self._inner.result

    @property
    def token_logprobs(self) -> list[TokenLogprob]:
        return self._inner.token_logprobs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class MeteredEngine:
    """Engine protocol around another engine; ``record`` sees each finished generation."""

    def __init__(self, inner: Engine, record: Callable[[GenerationResult], None]) -> None:
        self.inner = inner
        self._record = record

    @property
    def info(self) -> EngineInfo:
        return self.inner.info

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def tokenize(self, text: str, add_special: bool = False) -> list[int]:
        return self.inner.tokenize(text, add_special)

    def token_pieces(self, tokens: list[int]) -> list[bytes]:
        return self.inner.token_pieces(tokens)

    def detokenize(self, tokens: list[int]) -> str:
        return self.inner.detokenize(tokens)

    def queue_depth(self) -> int:
        return self.inner.queue_depth()

    def submit(self, request: GenerationRequest) -> MeteredHandle:
        return MeteredHandle(self.inner.submit(request), self._record)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
