"""What the confidence is worth: the reliability table, the calibration error and the cascade's threshold."""

import json

import pytest

from tests.support import write_lines
from tests.tiny_gemma import TRIAGE_LESSONS
from training import evaluate
from training.reliability import reliability, table


def test_bins_the_rows_by_confidence_and_weighs_each_bins_gap():
    rows = [(1, 1, 0.95), (1, 1, 0.92), (0, 1, 0.91), (0, 0, 0.55), (-1, 0, 0.52), (-1, -1, 0.45)]
    report = reliability("m", rows)
    bins = [(entry.low, entry.high, entry.rows) for entry in report.bins]
    assert bins == [(0.4, 0.5, 1), (0.5, 0.6, 2), (0.9, 1.0, 3)]
    assert [entry.accuracy for entry in report.bins] == pytest.approx([1.0, 0.5, 2 / 3])
    gaps = [1 / 6 * abs(1 - 0.45), 2 / 6 * abs(0.5 - 0.535), 3 / 6 * abs(2 / 3 - 0.9266667)]
    assert report.expected_calibration_error == pytest.approx(sum(gaps), abs=1e-6)


def test_the_cascade_defers_the_least_confident_chats_until_the_rest_reach_the_target():
    # Wrong only under 0.5. All kept: recall 1, 1/2, 1/2 (0.667); without the 0.4: 1, 1, 1/2 (0.833).
    rows = [(-1, -1, 0.9), (0, 0, 0.8), (1, 1, 0.7), (1, 0, 0.45), (0, -1, 0.4), (-1, -1, 0.6)]
    report = reliability("m", rows)
    assert (report.threshold, report.share_under_threshold) == (pytest.approx(0.45), pytest.approx(1 / 6))
    assert "under a confidence of 0.450 go 16.7% of the chats" in table(report)
    unreachable = reliability("m", [(1, 0, 0.9), (0, 1, 0.8)])
    assert unreachable.threshold is None and "No threshold" in table(unreachable)


def test_the_evaluation_writes_the_reliability_table_and_plot(tiny_gemma, tmp_path):
    rows = write_lines(tmp_path / "rows.jsonl", [
        {"id": chat_id, "text": chat, "label": label}
        for (chat_id, _, chat, _), label in zip(TRIAGE_LESSONS, (-1, 1, 0, 0))
    ])
    evaluate.run([
        "--labeled", str(rows), "--model", tiny_gemma, "--model_family", "instruct", "--max_length", "384",
        "--sentiment_only", "--reliability", str(tmp_path / "out" / "reliability"),
    ])
    model_id = tiny_gemma.rstrip("/").rsplit("/", 1)[-1]
    written = json.loads((tmp_path / "out" / f"reliability-{model_id}.json").read_text())
    assert written["rows"] == 4 and sum(entry["rows"] for entry in written["bins"]) == 4
    assert "Expected calibration error" in (tmp_path / "out" / f"reliability-{model_id}.md").read_text()
    assert (tmp_path / "out" / f"reliability-{model_id}.png").read_bytes().startswith(b"\x89PNG")
