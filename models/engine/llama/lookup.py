"""Draft tokens for prompt-lookup speculative decoding.

Code-acting turns repeat what they have already seen: variable and function names from
earlier code, tool names from the system prompt, values from observations. When the last
few generated tokens also occur earlier in the conversation, the tokens that followed them
there are a cheap guess at what comes next. The engine decodes those guesses in the same
batch as the real next token and keeps the ones the model would have sampled anyway, so the
output is exactly what one-token-at-a-time decoding gives (see ``models.engine.llama.batch``).

The index maps every n-gram (n = 1..``max_ngram``) to the most recent position where it
ended *and was followed by a known token*; appending a token is O(max_ngram), proposing a
draft is O(max_ngram + draft length). Longer n-grams are tried first: they predict better.
"""

from __future__ import annotations

from collections.abc import Iterable


class PromptLookup:
    """An n-gram index over one conversation's tokens (prompt plus everything generated)."""

    def __init__(self, tokens: Iterable[int] = (), *, max_ngram: int = 3, min_ngram: int = 1) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError("need 1 <= min_ngram <= max_ngram")
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.tokens: list[int] = []
        self._ends: dict[tuple[int, ...], int] = {}
        for token in tokens:
            self.append(token)

    def append(self, token: int) -> None:
        """Add the next token; the n-grams that ended just before it now have a successor."""
        tokens = self.tokens
        end = len(tokens) - 1
        for n in range(1, min(self.max_ngram, len(tokens)) + 1):
            self._ends[tuple(tokens[end - n + 1 : end + 1])] = end
        tokens.append(token)

    def propose(self, max_draft: int) -> list[int]:
        """Up to ``max_draft`` tokens that followed the latest earlier match of the tail."""
        if max_draft <= 0:
            return []
        tokens = self.tokens
        for n in range(min(self.max_ngram, len(tokens)), self.min_ngram - 1, -1):
            end = self._ends.get(tuple(tokens[len(tokens) - n :]))
            if end is not None:
                return tokens[end + 1 : end + 1 + max_draft]
        return []
