"""The malformed-turn judge of ``benchmarks/agent_wellformed.py`` (pure text, no model)."""

from __future__ import annotations

import pytest

from benchmarks.agent_wellformed import classify_turn


@pytest.mark.parametrize(
    "raw",
    [
        "Let me compute.\n<execute>\nprint(17 * 23)\n</execute>",
        "<solution>391</solution>",
        "I know it.\n<solution> 391 </solution>\n",
        "Compare: a < b.\n<execute>print(1 < 2)</execute>",
    ],
)
def test_well_formed(raw: str) -> None:
    assert classify_turn(raw) is None


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("The answer is 391.", "no_action"),
        ("```python\nprint(1)\n```", "no_action"),
        ("<execute>\nprint(1)\nprint(2", "unclosed"),
        ("</execute>", "garbled"),
        ("<execute>print(1)</solution>", "garbled"),
        ("<execute>print(1)</execute><execute>print(2)</execute>", "garbled"),
        ("<solution>  </solution>", "garbled"),
        ("<solution>391</solution> and some more chat", "garbled"),
        ("<execute><solution>1</solution></execute>", "garbled"),
    ],
)
def test_malformed(raw: str, kind: str) -> None:
    assert classify_turn(raw) == kind
