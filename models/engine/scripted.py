"""A scripted model behind the real queue: deterministic tests of everything above the engine.

Turns are enqueued as text (or produced by a function of the prompt); the fake "decodes"
them in small pieces on the same owner thread and queue as the llama.cpp engine
(``models.engine.runner.OwnerThread``, with a ``SerialWorker``), with the same context-window
admission (``models.engine.admission``) and the same stop-string handling and result
(``models.engine.generated_text``), honouring ``max_tokens`` and cancellation. It never
imports llama_cpp.
"""

from __future__ import annotations

import collections
import re
import threading
import time
from collections.abc import Callable

from models.engine.admission import fit_context
from models.engine.api import (
    EngineError,
    EngineInfo,
    FinishReason,
    GenerationRequest,
    TokenizerUnavailableError,
)
from models.engine.generated_text import GeneratedText
from models.engine.runner import OwnerThread, QueuedGeneration, SerialWorker

_PIECE = re.compile(r"\s*\S+|\s+")

Responder = Callable[[str], str]
#: A responder that reads the whole request (its seed and temperature), to tell apart
#: sampled runs of one prompt.
Sampler = Callable[[GenerationRequest], str]
#: Turns in progress remembered at once: one per conversation generating side by side.
ACTIVE_TURNS = 16


def fake_tokens(text: str) -> list[str]:
    """Split text into word-sized "tokens": deterministic and roughly realistic in count."""
    return _PIECE.findall(text)


class _TokenCounter:
    """``len(fake_tokens(text))``, re-scanning only what follows the last text counted.

    Why: an agent's prompts only grow (each phase and each turn appends), and counting the
    whole conversation again on every submit was the fake's own cost per phase, charged
    to the server's overhead. Exactness: a token is ``\\s*\\S+`` or trailing ``\\s+``, so a
    token that ends before the start ``s`` of the counted text's last token ends there in any
    text that extends the counted one (``s`` lies inside it); scanning from ``s`` therefore
    gives the same tokens as scanning from 0. Any other text is counted from scratch.
    """

    def __init__(self) -> None:
        self._last: tuple[str, int, int] = ("", 0, 0)  # text, its count, start of its last token

    def count(self, text: str) -> int:
        base, count, last_start = self._last  # one read: safe if two threads count at once
        if count and text.startswith(base):
            starts = [m.start() for m in _PIECE.finditer(text, last_start)]
            count += len(starts) - 1
        else:
            starts = [m.start() for m in _PIECE.finditer(text)]
            count = len(starts)
        if starts:
            self._last = (text, count, starts[-1])
        return count


class ScriptedEngine:
    """Replays enqueued assistant turns; records every request it served."""

    def __init__(
        self,
        turns: list[str] | None = None,
        *,
        responder: Responder | None = None,
        sampler: Sampler | None = None,
        model_id: str = "scripted",
        context_length: int = 8192,
        max_queue: int = 8,
        token_delay_s: float = 0.0,
    ) -> None:
        self.info = EngineInfo(
            model_id=model_id,
            model_path="<scripted>",
            backend="scripted",
            offloaded_layers=0,
            total_layers=0,
            context_length=context_length,
        )
        self._turns: collections.deque[str] = collections.deque(turns or [])
        self._responder = responder
        self._sampler = sampler
        self._lock = threading.Lock()
        self.token_delay_s = token_delay_s
        self.requests: list[GenerationRequest] = []
        #: Turns in progress, newest last: (seed, prompt the turn began at, its text). Several,
        #: since conversations generating side by side interleave their phases on the queue;
        #: the seed tells apart sampled runs of one prompt.
        self._active: collections.deque[tuple[int | None, str, str]] = collections.deque(maxlen=ACTIVE_TURNS)
        self._counter = _TokenCounter()
        self._owner = OwnerThread("scripted-engine", max_queue, SerialWorker(self._execute))

    def enqueue(self, *turns: str) -> None:
        """Add the next assistant turns, served in order."""
        with self._lock:
            self._turns.extend(turns)

    def count_tokens(self, text: str) -> int:
        return self._counter.count(text)

    def tokenize(self, text: str, add_special: bool = False) -> list[int]:
        raise TokenizerUnavailableError("the scripted engine has no tokenizer")

    def token_pieces(self, tokens: list[int]) -> list[bytes]:
        raise TokenizerUnavailableError("the scripted engine has no tokenizer")

    def detokenize(self, tokens: list[int]) -> str:
        raise TokenizerUnavailableError("the scripted engine has no tokenizer")

    def queue_depth(self) -> int:
        return self._owner.depth()

    def submit(self, request: GenerationRequest) -> QueuedGeneration:
        prompt_tokens = self.count_tokens(request.prompt)
        request = fit_context(request, prompt_tokens, self.info.context_length)
        job = QueuedGeneration(request, list(range(prompt_tokens)))
        self._owner.submit(job)
        return job

    def close(self) -> None:
        self._owner.close()

    def _next_turn(self, request: GenerationRequest) -> str:
        """The text to play for a request: the rest of a turn in progress when the prompt
        continues it (a caller resuming after a stop string), else the next scripted turn."""
        prompt = request.prompt
        for seed, base, turn in reversed(self._active):
            if seed != request.seed:
                continue
            continued = prompt[len(base) :] if prompt.startswith(base) else None
            if continued and turn.startswith(continued):
                return turn[len(continued) :]
        with self._lock:
            if self._turns:
                turn = self._turns.popleft()
            elif self._sampler is not None:
                turn = self._sampler(request)
            elif self._responder is not None:
                turn = self._responder(prompt)
            else:
                raise EngineError("the scripted model has no turn left to play")
        self._active.append((request.seed, prompt, turn))
        return turn

    def _execute(self, job: QueuedGeneration) -> None:
        request = job.request
        self.requests.append(request)
        text = GeneratedText(job)
        limit = request.max_tokens or 0  # set at submit (fit_context)
        produced = 0
        finish: FinishReason = "length"
        for piece in fake_tokens(self._next_turn(request)):
            if job.cancelled:
                finish = "cancelled"
                break
            if produced >= limit:
                break
            if self.token_delay_s:
                time.sleep(self.token_delay_s)
            produced += 1
            if text.feed(piece):
                finish = "stop"
                break
        else:
            finish = "stop"  # the scripted turn ended: an end-of-turn token
        job.finish(text.result(finish, prompt_tokens=len(job.prompt_tokens), completion_tokens=produced))
