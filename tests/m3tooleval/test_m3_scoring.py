"""The reference judge against all upstream verdicts, and the lenient judge's contract."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.m3tooleval.data import expected_value, load_examples, load_tasks, task_by_name
from benchmarks.m3tooleval.scoring import check_answer, score_lenient, score_reference

VERDICTS = [
    pytest.param(entry["name"], candidate["answer"], candidate["accepted"], id=f"{entry['name']}-{i}")
    for entry in load_examples("check_answer_examples.json")["tasks"]
    for i, candidate in enumerate(entry["candidates"])
]


def test_every_task_has_verdicts_and_a_typed_expected_value() -> None:
    names = {entry["name"] for entry in load_examples("check_answer_examples.json")["tasks"]}
    tasks = load_tasks()
    assert len(tasks) == 82
    assert names == {task["name"] for task in tasks}
    for task in tasks:
        assert repr(expected_value(task)) == task["expected_output_repr"]


@pytest.mark.parametrize(("name", "answer", "accepted"), VERDICTS)
def test_reference_verdict(name: str, answer: str, accepted: bool) -> None:
    task = task_by_name(name)
    assert check_answer(answer, expected_value(task)) is accepted
    # What the harness calls: strips the solution text first, like upstream's parser did.
    assert score_reference(answer, task) is accepted


@pytest.mark.parametrize(("name", "answer", "accepted"), VERDICTS)
def test_lenient_accepts_whatever_reference_accepts(name: str, answer: str, accepted: bool) -> None:
    if accepted:
        assert score_lenient(answer, task_by_name(name))


@pytest.mark.parametrize(
    ("name", "answer", "ok"),
    [
        ("web_browsing/total_price_of_selected_items_2", "380.42", True),
        ("web_browsing/total_price_of_selected_items_2", "$380.42", True),
        ("web_browsing/total_price_of_selected_items_2", "380.5", False),
        ("web_browsing/total_price_of_selected_items_after_discount_0", "237.94", True),
        ("travel_itinerary_planning/plan_trip_to_0", "1,050", True),
        ("travel_itinerary_planning/plan_trip_to_0", "The total budget is $1050.", True),
        ("travel_itinerary_planning/plan_trip_to_0", "700", False),
        ("travel_itinerary_planning/plan_trip_to_0", "450 + 120*5", False),
        ("web_browsing/department_of_allison_hill", "engineering", True),
        ("web_browsing/department_of_allison_hill", "'Engineering.'", True),
        ("web_browsing/department_of_allison_hill", "Marketing", False),
        ("trade_calculator/fluctuating_conversion_rates_impact", "[36380, 48150, 68480]", True),
        ("trade_calculator/fluctuating_conversion_rates_impact", "36380.0, 48150.0, 68480.0", True),
        ("trade_calculator/fluctuating_conversion_rates_impact", "[48150, 36380, 68480]", False),
        (
            "cryptobotanists_plant_dna_sequencer/reverse_transcribe_palindrome_check",
            '{"A": 2, "T": 1, "C": 2, "G": 1}',
            True,
        ),
        ("cryptobotanists_plant_dna_sequencer/find_most_common_nucleotide_combined_sequence", "['A', 3]", True),
        ("cryptobotanists_plant_dna_sequencer/transcribe_translate_find_amino_acid", "false", True),
        ("cryptobotanists_plant_dna_sequencer/transcribe_translate_find_amino_acid", "True", False),
    ],
)
def test_lenient_examples(name: str, answer: str, ok: bool) -> None:
    task = task_by_name(name)
    assert score_lenient(answer, task) is ok


@pytest.mark.parametrize("prediction", [None, ""])
def test_missing_answer_fails_both(prediction: Any) -> None:
    task = task_by_name("message_decoder/full_alien_message_decoding")
    assert not score_reference(prediction, task)
    assert not score_lenient(prediction, task)
