"""The user message for one task: the instruction plus how to hand in the answer.

Upstream's code-mode prompt (see ``prompt_examples.txt``) listed the tools, asked for code
that prints the final answer, gave the instruction, then asked for the result as
``Answer: your answer`` with "only the answer (e.g., single number), without any other
text". Here the server lists the tools (from the request's ``tools``) and its system prompt
explains ``<execute>``/``<solution>``; this message carries the rest of that phrasing, in
our own words, with ``<solution>`` taking the place of ``Answer:``. Keeping the "only the
answer" demand matters: the reference judge rejects ``The answer is 3``.
"""

from __future__ import annotations

from typing import Any

ANSWER_FORMAT = (
    "Use the tools listed above by calling them in Python code, and print the values you "
    "need to see.\n"
    "When you have the final answer, reply with just that answer inside "
    "<solution></solution>: only the answer itself (for example a single number), "
    "with no other text."
)


def user_message(task: dict[str, Any]) -> str:
    """The single user message sent for ``task``."""
    return f"{task['instruction'].rstrip()}\n\n{ANSWER_FORMAT}"
