"""Rendering conversations into the prompt text the model was trained on.

CodeActAgent-Mistral-7B was fine-tuned on ChatML, and so was the embedded SmolLM2: every
message is ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` and generation starts at
``<|im_start|>assistant\\n``. The engine checks the GGUF's own chat template at load time
(``looks_like_chatml``) so a model with another format is reported, not silently garbled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
CHATML_STOP = (IM_END,)


def render_message(role: str, content: str) -> str:
    """One ChatML message, terminated so that the next message only appends."""
    return f"{IM_START}{role}\n{content}{IM_END}\n"


def generation_prompt() -> str:
    """The text after which the assistant's turn is generated."""
    return f"{IM_START}assistant\n"


def render_chatml(messages: Iterable[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
    """Render ``{"role", "content"}`` messages; each message only appends to the prefix."""
    text = "".join(render_message(m["role"], m["content"]) for m in messages)
    return text + generation_prompt() if add_generation_prompt else text


def looks_like_chatml(chat_template: str | None) -> bool:
    """True when a GGUF's ``tokenizer.chat_template`` uses ChatML markers (or has none)."""
    return chat_template is None or (IM_START in chat_template and IM_END in chat_template)
