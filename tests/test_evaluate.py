"""`python -m training.evaluate` scores the triage model's sentiment against labeled rows."""

import json

import pytest

from tests.support import OBVIOUS_CHATS, write_lines
from tests.tiny_gemma import APOLOGY_LESSON, SCORED_LESSONS, TRIAGE_LESSONS
from training import evaluate, text_metrics

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
    assert report.text is None, "plain labeled rows carry no references"


def test_limit_takes_the_first_rows(tiny_gemma, tmp_path):
    rows = write_lines(tmp_path / "rows.jsonl", _examples())
    (report,) = evaluate.run([
        "--labeled", str(rows), "--limit", "1", "--model", tiny_gemma, "--model_family", "instruct",
        "--max_length", "384",
    ]).reports
    assert (report.rows, report.recall["negative"]) == (1, 1.0)


# References for the taught chats, as data/support_chats writes them: chat 4 (whose reply ends in `error`) has a
# summary but none is written; only chat 1 is a complaint; chat 3 has no language, so lingua reads it.
REFERENCES = {
    "1": {"language": "en", "summary": "The pizza came cold and two hours late.", "key_terms": ["cold", "late"],
          "reply": "We are sorry your pizza arrived cold and two hours late. Please send us your order number."},
    "2": {"language": "en", "summary": "The customer praised the burger.", "key_terms": ["burger"]},
    "3": {"summary": "The customer asked when the store opens on Sunday.", "key_terms": ["opening hours"]},
    "4": {"language": "en", "summary": "The customer gave an order number.", "key_terms": ["order number"]},
}


def test_rows_with_references_get_a_report_of_the_text_the_model_wrote(tiny_gemma, tmp_path, capsys):
    rows = write_lines(tmp_path / "rows.jsonl", [{**row, **REFERENCES[row["id"]]} for row in _examples()])
    (report,) = evaluate.run([
        "--labeled", str(rows), "--model", tiny_gemma, "--model_family", "instruct", "--max_length", "384",
    ]).reports
    assert report.macro_recall == 0.8333, "the sentiment is scored as without references"
    # What the tiny model was taught to write: a summary for chats 1-3, a draft for chat 1.
    summaries = [text_metrics.Written(cid, chat, REFERENCES[cid]["summary"], summary, REFERENCES[cid]["key_terms"],
                                      REFERENCES[cid].get("language"))
                 for (cid, _, chat, _), (_, _, summary) in zip(TRIAGE_LESSONS, SCORED_LESSONS)]
    summaries[3] = summaries[3]._replace(text=None)
    summaries = [row._replace(text=row.text and row.text.strip()) for row in summaries]
    chat_id, _, _, draft = APOLOGY_LESSON
    replies = [text_metrics.Written(chat_id, TRIAGE_LESSONS[0][2], REFERENCES["1"]["reply"], draft, ["cold", "late"], "en")]
    assert report.text.summaries == text_metrics.score_texts(summaries)
    assert report.text.replies == text_metrics.score_texts(replies)
    assert (report.text.summaries.written, report.text.summaries.names_problem) == (3, pytest.approx(2 / 3, abs=1e-4))
    assert (report.text.replies.references, report.text.replies.written, report.text.replies.names_problem) == (1, 1, 1.0)
    (worst,) = report.text.worst_replies
    assert (worst.id, worst.draft) == (chat_id, draft)
    printed = capsys.readouterr().out
    assert "| replies | 1 / 1 |" in printed
    assert f"draft:\n    {draft}" in printed and f"reference:\n    {REFERENCES['1']['reply']}" in printed


def test_sentiment_only_writes_no_text_even_with_references(tiny_gemma, tmp_path):
    rows = write_lines(tmp_path / "rows.jsonl", [{**row, **REFERENCES[row["id"]]} for row in _examples()])
    (report,) = evaluate.run([
        "--labeled", str(rows), "--model", tiny_gemma, "--model_family", "instruct", "--max_length", "384",
        "--sentiment_only",
    ]).reports
    assert report.sentiment_only and report.text is None


def test_compare_puts_the_text_reports_side_by_side():
    scores = text_metrics.score_texts([text_metrics.Written("1", "late pizza", "Sorry it was late.", "Sorry, late.", ["late"], "en")])
    text = evaluate.TextReport(summaries=scores, replies=scores, worst_replies=[])
    reports = [
        evaluate.SentimentReport(**evaluate.score({"1": -1}, {"1": -1}), chats_per_second=1.0, wall_seconds=1.0,
                                 model_id=model, prompt_version="v1", text=text)
        for model in ("base", "tuned")
    ]
    table = evaluate.text_table(evaluate.SentimentComparison(reports=reports))
    rows = [line for line in table.splitlines() if line.startswith(("| base", "| tuned"))]
    assert [row.split(" | ")[:3] for row in rows] == [
        ["| base", "summaries", "1 / 1"], ["| base", "replies", "1 / 1"],
        ["| tuned", "summaries", "1 / 1"], ["| tuned", "replies", "1 / 1"],
    ]
    assert f"| {scores.chrf:g} | 1 | 1 |" in rows[0]


# Support chats whose sentiment no reader would dispute.


@pytest.mark.slow
def test_the_real_gemma3_scores_every_chat_with_a_valid_sentiment(gemma3_preset, tmp_path):
    rows = write_lines(tmp_path / "rows.jsonl", [{"id": i, "text": t, "label": label} for i, t, label in OBVIOUS_CHATS])
    (report,) = evaluate.run(["--labeled", str(rows), "--model", str(gemma3_preset)]).reports
    assert report.prompt_version == "triage-base-score-v1", "the 270M is a base model: few-shot scoring prompt"
    assert report.error_share == 0, report.confusion
    assert report.recall["negative"] == 1.0, report.confusion
