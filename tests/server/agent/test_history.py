"""``History``, the one writer of a run's messages: a turn taken back is the one it added."""

from __future__ import annotations

import pytest

from server.agent.loop import History


def test_a_turn_is_added_taken_back_and_observed() -> None:
    messages = [{"role": "user", "content": "Task:\n6 * 7?"}]
    history = History(messages)
    history.add_turn("<execute>print(6 * 7)</execute>")
    history.take_back_turn()
    assert messages == [{"role": "user", "content": "Task:\n6 * 7?"}]
    history.add_turn("<execute>print(6*7)</execute>")
    history.add_observation("Observation:\n42")
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert history.prompt().endswith("Observation:\n42<|im_end|>\n<|im_start|>assistant\n")


def test_only_the_turn_just_added_can_be_taken_back() -> None:
    history = History([{"role": "user", "content": "x"}])
    with pytest.raises(RuntimeError):
        history.take_back_turn()  # none was added
    history.add_turn("<execute>1</execute>")
    history.add_observation("Observation:\n1")
    with pytest.raises(RuntimeError):
        history.take_back_turn()  # an observation followed it: removing it would be wrong
    history.add_turn("<execute>2</execute>")
    history.take_back_turn()
    with pytest.raises(RuntimeError):
        history.take_back_turn()  # taken back once already
