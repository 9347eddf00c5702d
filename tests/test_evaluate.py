"""`python -m training.evaluate` scores the triage model's sentiment against labeled rows."""

import json

import pytest

from tests.support import OBVIOUS_CHATS, write_lines
from tests.tiny_gemma import TRIAGE_LESSONS
from training import evaluate

# What a careful reader would label the taught chats; chat 4's taught summary is empty, so it ends in `error`.
LESSON_LABELS = {"1": -1, "2": 1, "3": 0, "4": 0}


def _examples():
    return [{"id": cid, "text": chat, "label": LESSON_LABELS[cid]} for cid, _, chat, _ in TRIAGE_LESSONS]


def test_score_counts_errors_as_wrong_for_every_class():
    labels = {"a": -1, "b": -1, "c": 0, "d": 1, "e": 1}
    report = evaluate.score(labels, {"a": -1, "b": None, "c": 0, "d": 0})
    assert report["recall"] == {"negative": 0.5, "neutral": 1.0, "positive": 0.0}
    assert report["macro_recall"] == 0.5
    assert (report["valid_share"], report["error_share"]) == (0.6, 0.4)
    assert report["confusion"]["negative"] == {"negative": 1, "error": 1}
    assert report["confusion"]["positive"] == {"neutral": 1, "error": 1}
    # F1: negative p=1 r=.5 → .667; neutral p=.5 r=1 → .667; positive 0.
    assert report["macro_f1"] == pytest.approx(0.4444, abs=1e-4)


def test_chat_files_take_their_labels_from_a_labels_file(tmp_path):
    chats = write_lines(tmp_path / "chats.jsonl", [
        {"id": 1, "user_id": 7, "chat_message": "Cold pizza."}, "not json",
        {"id": 2, "user_id": 7, "chat_message": "?"},
        {"id": 3, "user_id": 7, "chat_message": "unlabeled"},
    ])
    labels = write_lines(tmp_path / "labels.jsonl", [{"id": 1, "label": -1}, {"id": 2, "label": 0}])
    pairs = evaluate.load_labeled(str(chats), str(labels))
    assert [(chat["chat_message"], label) for chat, label in pairs] == [("Cold pizza.", -1), ("?", 0)]


def test_repeated_ids_are_refused(tmp_path):
    rows = write_lines(
        tmp_path / "rows.jsonl", [{"id": 1, "text": "a", "label": 0}, {"id": 1, "text": "b", "label": 1}]
    )
    with pytest.raises(ValueError, match="repeated"):
        evaluate.load_labeled(str(rows))


def test_evaluates_the_triage_transforms_on_labeled_rows(tiny_gemma, tmp_path, capsys):
    rows = write_lines(tmp_path / "rows.jsonl", _examples())
    comparison = evaluate.run([
        "--labeled", str(rows), "--model", tiny_gemma, "--model_family", "instruct", "--max_length", "384",
    ])
    (report,) = comparison.reports
    assert report.recall == {"negative": 1.0, "neutral": 0.5, "positive": 1.0}
    assert (report.rows, report.valid_share, report.macro_recall) == (4, 0.75, 0.8333)
    assert report.prompt_version == "triage-instruct-score-v1"
    assert report.chats_per_second > 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == json.loads(comparison.model_dump_json())


def test_limit_takes_the_first_rows(tiny_gemma, tmp_path):
    rows = write_lines(tmp_path / "rows.jsonl", _examples())
    (report,) = evaluate.run([
        "--labeled", str(rows), "--limit", "1", "--model", tiny_gemma, "--model_family", "instruct",
        "--max_length", "384",
    ]).reports
    assert (report.rows, report.recall["negative"]) == (1, 1.0)


# Support chats whose sentiment no reader would dispute.


@pytest.mark.slow
def test_the_real_gemma3_scores_every_chat_with_a_valid_sentiment(gemma3_preset, tmp_path):
    rows = write_lines(tmp_path / "rows.jsonl", [{"id": i, "text": t, "label": label} for i, t, label in OBVIOUS_CHATS])
    (report,) = evaluate.run(["--labeled", str(rows), "--model", str(gemma3_preset)]).reports
    assert report.prompt_version == "triage-base-score-v1", "the 270M is a base model: few-shot scoring prompt"
    assert report.error_share == 0, report.confusion
    assert report.recall["negative"] == 1.0, report.confusion
