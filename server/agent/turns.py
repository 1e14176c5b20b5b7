"""Generating one well-formed CodeAct turn: thinking, exactly one action, end of turn.

A full GBNF grammar over the whole turn checks every token against the vocabulary, which
roughly halves decode speed on a small model, and it cannot bound the thinking: a model
that rambles never reaches an action before ``max_tokens``. So the structure is enforced in
phases, each a plain continuation of the same prompt (the engine's prefix cache makes a
continuation cost only its new tokens):

1. **thought** — no grammar; stops at ``<execute>``, ``<solution>``, the end of the turn,
   or the thinking budget (``thought_share`` of ``max_tokens``).
2. **choose** — only if phase 1 ended without a tag: a two-way grammar makes the model
   pick ``<execute>`` or ``<solution>`` itself (a handful of tokens).
3. **body** — a grammar that only forbids an empty body and ending the turn inside the
   block; stops at the matching closing tag, or at an opening tag (a second action is not
   allowed). If the model opens another block, or the ``max_tokens`` budget runs out, the
   block is closed for it; a ``<solution>`` body has at most ``answer_tokens``. A turn cut
   by a budget reports ``length`` (its code may well be cut short: running it shows the
   model a SyntaxError, which is an observation like any other).

**Solution-only turns** (the loop policy's forced answers, ``server.agent.policy``):
``<solution>`` is opened at once, with no thinking phase, so only the answer's text is
generated, within ``answer_tokens``. This works the same in every structure mode.

**Fenced code** (``fenced_code``): a Markdown fence (```python) in the thinking opens an
``<execute>`` block in its place and the closing fence closes it; the turn's text is
written with the CodeAct tags.

Every turn therefore has exactly one closed action. ``mode="gbnf"`` runs the whole turn under ``ACTION_GRAMMAR``
instead (for comparison in benchmarks); ``mode="none"`` applies no constraint at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from models.engine.api import (
    ContextOverflowError,
    Engine,
    GenerationRequest,
    GenerationResult,
    QueueFullError,
)
from models.engine.usage import Usage
from server.agent.actions import (
    ACTION_GRAMMAR,
    EXECUTE_CLOSE,
    EXECUTE_OPEN,
    SOLUTION_CLOSE,
    SOLUTION_OPEN,
    TURN_STOPS,
    restore_stop,
)
from server.agent.options import TurnOptions

StructureMode = Literal["phased", "gbnf", "none"]

CHOOSE_GRAMMAR = r"""root ::= "\n"? ( "<execute>" | "<solution>" )"""


def body_grammar(closer: str) -> str:
    """A block's body: not empty, and the turn cannot end before ``closer`` (the stop string).

    Only checked lazily (the sampled token first), so it costs decode speed only when the
    model tries to end its turn inside the block or close it empty.
    """
    return f'''root ::= [ \\t\\n]* [^ \\t\\n<] [^\\x00]* "{closer}"'''


CLOSER = {EXECUTE_OPEN: EXECUTE_CLOSE, SOLUTION_OPEN: SOLUTION_CLOSE}
#: Markdown fences that open code in the thinking: taken as ``<execute>`` with ``fenced_code``.
FENCE_OPENS = ("```python\n", "```py\n", "```Python\n")
FENCE_CLOSE = "```"
CHOOSE_TOKENS = 8
QUEUE_RETRY_S = 0.05


def complete_tag(chosen: str) -> tuple[str | None, str]:
    """The choose phase's text, with the opening tag it began completed when only one fits.

    Returns ``(None, chosen)`` when the text is no tag's beginning or could be either's
    (a bare ``<``), else ``(tag, text ending in the whole tag)``. The streamed remainder is
    what was missing, so a client sees the tag once.
    """
    lead = len(chosen) - len(chosen.lstrip("\n"))
    core = chosen[lead:]
    fits = [t for t in CLOSER if core and (t.startswith(core) or core.startswith(t))]
    if len(fits) != 1:
        return None, chosen
    return fits[0], chosen[:lead] + fits[0]


@dataclass(frozen=True)
class TurnSettings:
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    mode: StructureMode = "phased"
    thought_tokens: int = 384
    #: The request's turn options (``fenced_code``, ``thought_share``, ``answer_tokens``),
    #: handed whole: the policy itself, read through its ``TurnOptions`` group.
    options: TurnOptions = field(default_factory=TurnOptions)

    @property
    def fenced_code(self) -> bool:
        """A Markdown code fence in the thinking opens ``<execute>``."""
        return self.options.fenced_code == "execute"

    def thought_budget(self, budget: int) -> int:
        """Thinking may use its share of the turn's budget (at most ``thought_tokens``): the
        action needs the rest."""
        return max(1, min(self.thought_tokens, int(budget * self.options.thought_share)))

    def answer_budget(self) -> int:
        """A ``<solution>`` body's budget (an answer-only turn's, or one the model chose):
        ``answer_tokens``, at most ``max_tokens``."""
        return min(self.max_tokens, self.options.answer_tokens)


@dataclass
class TurnResult:
    """The whole turn's text (stop strings restored) and summed accounting."""

    text: str = ""
    finish_reason: str = "stop"  # "stop" | "length" | "cancelled"
    #: The phases' generations, continuing one prompt (its tokens counted once).
    usage: Usage = field(default_factory=Usage)
    queued_s: float = 0.0
    time_to_first_token_s: float = 0.0
    phases: list[str] = field(default_factory=list)

    def add(self, phase: str, result: GenerationResult, first: bool) -> None:
        self.phases.append(phase)
        self.usage = self.usage.then(result.usage)
        self.queued_s += result.queued_s
        if first:
            self.time_to_first_token_s = result.time_to_first_token_s


async def _submit(engine: Engine, request: GenerationRequest, may_wait: bool):  # noqa: ANN202
    """Submit; a full queue refuses a new run at once but makes a running one wait its turn."""
    import asyncio

    while True:
        try:
            return engine.submit(request)
        except QueueFullError:
            if not may_wait:
                raise
            await asyncio.sleep(QUEUE_RETRY_S)


class TurnGenerator:
    """Streams one assistant turn's text; ``result`` holds the accounting afterwards."""

    def __init__(
        self,
        engine: Engine,
        prompt: str,
        settings: TurnSettings,
        first_turn: bool,
        *,
        solution_only: bool = False,
    ):
        """``solution_only``: the turn is ``<solution>`` and its answer, nothing else."""
        self.engine = engine
        self.prompt = prompt
        self.settings = settings
        self.first_turn = first_turn
        self.solution_only = solution_only
        self.result = TurnResult()
        self.generation_s = 0.0  # wall time of the whole turn, set by whoever streams it

    async def stream(self) -> AsyncIterator[str]:
        if self.solution_only:
            async for piece in self._solution_only():
                yield piece
        elif self.settings.mode == "phased":
            async for piece in self._phased():
                yield piece
        else:
            grammar = ACTION_GRAMMAR if self.settings.mode == "gbnf" else None
            async for piece in self._phase("whole", "", TURN_STOPS, self.settings.max_tokens, grammar):
                yield piece
            last = self._last
            self.result.text = restore_stop(last.text, last.stop_string)
            self.result.finish_reason = last.finish_reason

    async def _phased(self) -> AsyncIterator[str]:
        s = self.settings
        text = ""
        budget = s.max_tokens
        thought_stops = (EXECUTE_OPEN, SOLUTION_OPEN, *(FENCE_OPENS if s.fenced_code else ()))
        async for piece in self._phase("thought", text, thought_stops, s.thought_budget(budget)):
            yield piece
        text += self._last.text
        budget -= self._last.completion_tokens
        tag = self._last.stop_string if self._last.stop_string in CLOSER else None
        fenced = self._last.stop_string in FENCE_OPENS
        if fenced:
            tag = EXECUTE_OPEN  # the history shows the turn in the CodeAct format
            if text and not text.endswith("\n"):
                text += "\n"
                yield "\n"
        if self._last.finish_reason == "cancelled":
            self._finish(text, "cancelled")
            return
        if tag is None:
            if budget <= 0:
                self._finish(text, "length")
                return
            async for piece in self._phase("choose", text, tuple(CLOSER), min(CHOOSE_TOKENS, budget), CHOOSE_GRAMMAR):
                yield piece
            chosen = self._last.text
            budget -= self._last.completion_tokens
            tag = self._last.stop_string if self._last.stop_string in CLOSER else None
            if tag is None:
                # A backend that tokenizes or samples differently may stop inside the tag it
                # chose (llama-server: "\n<solution" at the token limit): complete it.
                tag, chosen = complete_tag(chosen)
            text += chosen
            if tag is None:
                self._finish(text, "length" if self._last.finish_reason == "length" else "stop")
                return
            if chosen.endswith(tag):  # completed here: the opening tag is already in the text
                tag = ""
        text += tag
        yield tag
        opened = tag or (EXECUTE_OPEN if text.endswith(EXECUTE_OPEN) else SOLUTION_OPEN)
        if opened == SOLUTION_OPEN:
            budget = min(budget, s.answer_budget())  # an answer, not an essay
        async for piece in self._block("body", text, CLOSER[opened], budget, (FENCE_CLOSE,) if fenced else ()):
            yield piece

    async def _block(
        self, phase: str, text: str, closer: str, budget: int, extra_stops: tuple[str, ...] = ()
    ) -> AsyncIterator[str]:
        """A block's body after its opening tag (the end of ``text``), then its closing tag."""
        cut = budget <= 0
        if not cut:
            # Another opening tag inside a block would be a second action, the other block's
            # closing tag a garbled one: stop there too (the block is closed below).
            stops = (*CLOSER.values(), EXECUTE_OPEN, SOLUTION_OPEN, *extra_stops)
            async for piece in self._phase(phase, text, stops, budget, body_grammar(closer)):
                yield piece
            text += self._last.text
            if self._last.finish_reason == "cancelled":
                self._finish(text, "cancelled")
                return
            cut = self._last.finish_reason == "length"
        # The stop string, the close the model implied by ending its turn or opening another
        # block, or the close at the end of the token budget (then the turn reports "length").
        yield closer
        self._finish(text + closer, "length" if cut else "stop")

    async def _solution_only(self) -> AsyncIterator[str]:
        """``<solution>`` opened at once, then its body: no thinking, in which small models
        talk themselves back into running code."""
        yield SOLUTION_OPEN
        async for piece in self._block("answer", SOLUTION_OPEN, SOLUTION_CLOSE, self.settings.answer_budget()):
            yield piece

    def _finish(self, text: str, reason: str) -> None:
        self.result.text = text
        self.result.finish_reason = reason

    async def _phase(
        self,
        name: str,
        prefix: str,
        stops: tuple[str, ...],
        max_tokens: int,
        grammar: str | None = None,
    ) -> AsyncIterator[str]:
        s = self.settings
        request = GenerationRequest(
            prompt=self.prompt + prefix,
            max_tokens=max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            stop=tuple(dict.fromkeys((*self.engine.info.stop, *stops))),
            seed=s.seed,
            grammar=grammar,
        )
        first = not self.result.phases
        try:
            handle = await _submit(self.engine, request, may_wait=not (first and self.first_turn))
        except ContextOverflowError:
            if first:
                raise
            # A continuation that no longer fits: the turn ran out of room, like max_tokens.
            self._last = GenerationResult("", "length", 0, 0)
            return
        async for piece in handle.stream():
            yield piece
        self._last = handle.result
        self.result.add(name, handle.result, first)
