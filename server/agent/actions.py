"""The CodeAct action format: the grammar that enforces it and the parser that reads it.

An assistant turn is free thinking followed by exactly one action, ``<execute>code
</execute>`` or ``<solution>answer</solution>``, then the end of the turn. Generation stops
on ``</execute>`` (a stop string, so it is missing from the output: ``restore_stop`` puts it
back) or on ``<|im_end|>``. The parser takes the first block, non-greedily.

The grammar keeps thinking free of ``<e``/``<s`` (which would open a tag) and action bodies
free of ``</e``/``</s`` (which would close one): Python may still compare with ``<`` and
write HTML, only not those exact sequences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

EXECUTE_OPEN, EXECUTE_CLOSE = "<execute>", "</execute>"
SOLUTION_OPEN, SOLUTION_CLOSE = "<solution>", "</solution>"

ACTION_GRAMMAR = r"""
root     ::= thought action
thought  ::= ( [^<] | "<" [^es/] ){0,300}
action   ::= "<execute>" body "</execute>" | "<solution>" body "</solution>"
body     ::= ( [^<] | "<" [^/] | "</" [^es] )*
"""

TURN_STOPS: tuple[str, ...] = ("<|im_end|>", EXECUTE_CLOSE)

_EXECUTE = re.compile(r"<execute>(.*?)</execute>", re.DOTALL)
_SOLUTION = re.compile(r"<solution>(.*?)</solution>", re.DOTALL)

ActionType = Literal["execute", "solution", "none"]


@dataclass(frozen=True)
class ParsedTurn:
    """One assistant turn split into its thinking and its action."""

    thought: str
    type: ActionType
    code: str | None = None
    answer: str | None = None


def restore_stop(text: str, stop_string: str | None) -> str:
    """Put a ``</execute>`` stop string back so the turn parses and the history is complete."""
    return text + EXECUTE_CLOSE if stop_string == EXECUTE_CLOSE else text


def parse_turn(text: str) -> ParsedTurn:
    """Find the first action block; a turn with none is a chat answer (ends the loop)."""
    execute = _EXECUTE.search(text)
    solution = _SOLUTION.search(text)
    first = min((m for m in (execute, solution) if m is not None), key=lambda m: m.start(), default=None)
    if first is None:
        return ParsedTurn(thought=text.strip(), type="none")
    thought = text[: first.start()].strip()
    body = first.group(1)
    if first is execute:
        return ParsedTurn(thought=thought, type="execute", code=clean_code(body))
    return ParsedTurn(thought=thought, type="solution", answer=body.strip())


_FENCE_LINE = re.compile(r"^\s*```[A-Za-z0-9_+-]*\s*$")
#: A first line that only names the language: what a model writes after a fence it took
#: ``<execute>`` for (``<execute>python``). As a statement it could only raise NameError.
_LANGUAGE_LINE = re.compile(r"^\s*(?:```)?\s*(?:python3?|py)\s*$", re.IGNORECASE)


def clean_code(code: str) -> str:
    """Strip the blank lines models put around code, a common indent, and Markdown fence
    lines around it (small models often write ```python inside <execute>, or just the
    language name right after the tag; inside a ``<solution>`` that holds code as well)."""
    import textwrap

    lines = code.strip("\n").splitlines()
    if lines and (_FENCE_LINE.match(lines[0]) or _LANGUAGE_LINE.match(lines[0])):
        lines = lines[1:]
    if lines and _FENCE_LINE.match(lines[-1]):
        lines = lines[:-1]
    return textwrap.dedent("\n".join(lines)).strip()


Channel = Literal["thought", "code", "answer"]
_OPENERS: dict[str, Channel] = {EXECUTE_OPEN: "code", SOLUTION_OPEN: "answer"}
_CLOSERS = (EXECUTE_CLOSE, SOLUTION_CLOSE)
_HOLD = max(len(t) for t in (*_OPENERS, *_CLOSERS)) - 1
assert all(t.count("<") == 1 and t.startswith("<") for t in (*_OPENERS, *_CLOSERS))  # _partial_tag_suffix


class ChannelSplitter:
    """Split streamed turn text into thought / code / answer deltas, tags removed.

    Text that may be the start of a tag is held back until it is decided, so a client
    never sees half a tag in the wrong channel.
    """

    def __init__(self) -> None:
        self.channel: Channel = "thought"
        self._pending = ""
        self._closed = False

    def feed(self, text: str) -> list[tuple[Channel, str]]:
        self._pending += text
        out: list[tuple[Channel, str]] = []
        while self._pending and not self._closed:
            tags = _CLOSERS if self.channel != "thought" else tuple(_OPENERS)
            hits = [(self._pending.find(t), t) for t in tags]
            hits = [(i, t) for i, t in hits if i != -1]
            if hits:
                index, tag = min(hits)
                if index:
                    out.append((self.channel, self._pending[:index]))
                self._pending = self._pending[index + len(tag) :]
                if tag in _OPENERS:
                    self.channel = _OPENERS[tag]
                else:
                    self._closed = True
                continue
            keep = _partial_tag_suffix(self._pending, tags)
            ready = self._pending[: len(self._pending) - keep]
            if ready:
                out.append((self.channel, ready))
            self._pending = self._pending[len(ready) :]
            break
        return out

    def flush(self) -> list[tuple[Channel, str]]:
        rest, self._pending = self._pending, ""
        return [(self.channel, rest)] if rest and not self._closed else []


def _partial_tag_suffix(text: str, tags: tuple[str, ...]) -> int:
    """How many trailing characters may be the start of one of ``tags`` (held back).

    Every tag starts with ``<`` and has no other ``<``, so only the suffix from the last
    ``<`` can be a tag's start: one check per streamed piece instead of one per length.
    """
    start = text.rfind("<", max(0, len(text) - _HOLD))
    if start == -1:
        return 0
    suffix = text[start:]
    return len(suffix) if any(tag.startswith(suffix) for tag in tags) else 0
