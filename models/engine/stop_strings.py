"""Stop-string detection over streamed text.

A stop string can arrive split across tokens, so text that might be the start of one is
held back until it is either completed (generation stops, the stop string is not part of
the output, as OpenAI does) or ruled out (the held text is released).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StopScan:
    """What ``StopMatcher.feed`` decided for one piece of text."""

    emit: str
    stopped: bool = False
    stop_string: str | None = None


class StopMatcher:
    """Feed text pieces; get back what is safe to emit and whether a stop string ended it."""

    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.text = ""  # everything emitted so far

    def feed(self, piece: str) -> StopScan:
        buffer = self._held + piece
        first_hit: tuple[int, str] | None = None
        for stop in self._stops:
            index = buffer.find(stop)
            if index != -1 and (first_hit is None or index < first_hit[0]):
                first_hit = (index, stop)
        if first_hit is not None:
            emit = buffer[: first_hit[0]]
            self._held = ""
            self.text += emit
            return StopScan(emit=emit, stopped=True, stop_string=first_hit[1])
        keep = self._longest_partial_stop(buffer)
        emit = buffer[: len(buffer) - keep]
        self._held = buffer[len(buffer) - keep :]
        self.text += emit
        return StopScan(emit=emit)

    def flush(self) -> str:
        """Release held text when generation ends without a stop string."""
        rest, self._held = self._held, ""
        self.text += rest
        return rest

    def _longest_partial_stop(self, buffer: str) -> int:
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest
