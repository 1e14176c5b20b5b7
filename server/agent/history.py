"""The conversation the model reads, and the one object that writes it during a run.

The session's message list is the model's memory: every turn renders it whole as ChatML
(each turn only appends, so the engine's prefix cache re-uses everything before it). The
loop never edits that list itself; it tells ``History`` what happened, and ``History``
knows which message is whose:

* ``add_turn``: an assistant turn enters *before* its code runs, so a run stopped during
  the execution (a cancel, a client tool call) keeps the turn it was acting on;
* ``take_back_turn``: that turn leaves again (a repeat taken again as an answer, or left
  out so that the next turn is sampled). It removes the message ``add_turn`` added, found
  by its position, and refuses if anything came after it;
* ``add_observation``: what the model reads next, as a user message.
"""

from __future__ import annotations

from models.engine.chat_format import render_chatml


class History:
    """The only writer of a run's messages (a session's list, appended to in place)."""

    def __init__(self, messages: list[dict[str, str]]) -> None:
        self.messages = messages
        self._turn: int | None = None  # where the turn being acted on sits

    def prompt(self) -> str:
        """The whole conversation as the model reads it, ready for the next assistant turn."""
        return render_chatml(self.messages)

    def add_turn(self, raw: str) -> None:
        self._turn = len(self.messages)
        self.messages.append({"role": "assistant", "content": raw})

    def take_back_turn(self) -> None:
        """Remove the turn ``add_turn`` added last; nothing may have followed it."""
        if self._turn is None or self._turn != len(self.messages) - 1:
            raise RuntimeError("no turn to take back: it was never added or something followed it")
        del self.messages[self._turn]
        self._turn = None

    def add_observation(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})
        self._turn = None
