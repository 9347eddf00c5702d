"""`training.evaluate --compare` judges each compared model against the first row by row (`training.paired`)."""

import pytest

from pipeline.contracts import SentimentComparison, SentimentReport
from training.evaluate import CLASSES, comparison_table, render, score
from training.paired import paired_difference

# 300 rows, 100 per class: the first model gets 60 of each class right, the other the same 60 and 10 more.
LABELS = {f"r{i}": (i % 3) - 1 for i in range(300)}


def _right_on(count_per_class: int) -> dict[str, int | None]:
    """Right on the first `count_per_class` rows of each class, a wrong label on the rest."""
    return {
        row: label if int(row[1:]) // 3 < count_per_class else (label + 2) % 3 - 1 for row, label in LABELS.items()
    }


def test_identical_labels_differ_by_nothing():
    pair = paired_difference(LABELS, CLASSES, ("a", _right_on(60)), ("b", _right_on(60)))
    assert (pair.macro_recall_difference, pair.low, pair.high) == (0.0, 0.0, 0.0)
    assert (pair.only_this_right, pair.only_first_right, pair.mcnemar_p) == (0, 0, 1.0)


def test_a_model_right_on_more_rows_is_ahead_by_the_reports_difference_beyond_luck():
    first, other = _right_on(60), _right_on(70)
    pair = paired_difference(LABELS, CLASSES, ("first", first), ("other", other))
    assert (pair.model_id, pair.against) == ("other", "first")
    assert pair.macro_recall_difference == pytest.approx(
        score(LABELS, other)["macro_recall"] - score(LABELS, first)["macro_recall"], abs=1e-4
    ) == pytest.approx(0.1)
    assert (pair.only_this_right, pair.only_first_right) == (30, 0)
    assert 0 < pair.low < pair.macro_recall_difference < pair.high and pair.mcnemar_p < 0.001


def test_a_few_rows_either_way_are_within_luck_and_a_missing_label_is_wrong():
    first = _right_on(60)
    other = dict(first, r0=None, r1=None, r180=-1, r181=0, r182=1)  # two wrong more, three right more
    pair = paired_difference(LABELS, CLASSES, ("first", first), ("other", other))
    assert (pair.only_this_right, pair.only_first_right) == (3, 2)
    assert pair.low < 0 < pair.high and pair.mcnemar_p == 1.0


def test_the_report_shows_the_pairs_beside_the_models():
    reports = [
        SentimentReport(**score(LABELS, predicted), chats_per_second=1.0, wall_seconds=1.0, model_id=name,
                        prompt_version="v1")
        for name, predicted in (("first", _right_on(60)), ("other", _right_on(70)))
    ]
    pair = paired_difference(LABELS, CLASSES, ("first", _right_on(60)), ("other", _right_on(70)))
    text = render(SentimentComparison(reports=reports, paired=[pair]))
    assert text.startswith(comparison_table(SentimentComparison(reports=reports)))
    assert f"| other | first | +0.1000 | {pair.low:+.4f} to {pair.high:+.4f} | 30 / 0 |" in text
