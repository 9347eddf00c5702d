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


def _taught(chat_id: str, reference: str, text: str | None) -> text_metrics.Written:
    """A taught chat's text as the metrics take it, beside its reference."""
    chat = next(chat for cid, _, chat, _ in TRIAGE_LESSONS if cid == chat_id)
    references = REFERENCES[chat_id]
    return text_metrics.Written(chat_id, chat, reference, text, references["key_terms"], references.get("language"))


def test_rows_with_references_get_a_report_of_the_text_the_model_wrote(tiny_gemma, tmp_path, capsys):
    rows = write_lines(tmp_path / "rows.jsonl", [{**row, **REFERENCES[row["id"]]} for row in _examples()])
    comparison = evaluate.run([
        "--labeled", str(rows), "--model", tiny_gemma, "--model_family", "instruct", "--max_length", "384",
        "--compare", tiny_gemma,
    ])
    report, compared = comparison.reports
    assert compared.text == report.text, "--compare reports the text of each model, on the same rows"
    assert report.macro_recall == 0.8333, "the sentiment is scored as without references"
    # What the tiny model was taught to write: a summary for chats 1-3 (chat 4's ends in `error`), a draft for chat 1.
    written = {cid: summary.strip() for cid, _, summary in SCORED_LESSONS[:3]}
    summaries = [_taught(cid, REFERENCES[cid]["summary"], written.get(cid)) for cid in REFERENCES]
    chat_id, _, _, draft = APOLOGY_LESSON
    replies = [_taught(chat_id, REFERENCES[chat_id]["reply"], draft)]
    assert report.text.summaries == text_metrics.score_texts(summaries)
    assert report.text.replies == text_metrics.score_texts(replies)
    assert (report.text.summaries.written, report.text.summaries.names_problem) == (3, 0.6667)
    replies_report = report.text.replies
    assert (replies_report.references, replies_report.written, replies_report.names_problem) == (1, 1, 1.0)
    (worst,) = report.text.worst_replies
    assert (worst.id, worst.draft, worst.chrf) == (chat_id, draft, text_metrics.sentence_chrf(draft, worst.reference))
    printed = capsys.readouterr().out
    text_table = printed[printed.index("| model | text |"):]
    assert text_table.count("| replies | 1 / 1 |") == 2, "one line per model"
    assert f"draft:\n    {draft}" in printed and f"reference:\n    {REFERENCES[chat_id]['reply']}" in printed


def test_sentiment_only_writes_no_text_even_with_references(tiny_gemma, tmp_path):
    rows = write_lines(tmp_path / "rows.jsonl", [{**row, **REFERENCES[row["id"]]} for row in _examples()])
    (report,) = evaluate.run([
        "--labeled", str(rows), "--model", tiny_gemma, "--model_family", "instruct", "--max_length", "384",
        "--sentiment_only",
    ]).reports
    assert report.sentiment_only and report.text is None


# Support chats whose sentiment no reader would dispute.


@pytest.mark.slow
def test_the_real_gemma3_scores_every_chat_with_a_valid_sentiment(gemma3_preset, tmp_path):
    rows = write_lines(tmp_path / "rows.jsonl", [{"id": i, "text": t, "label": label} for i, t, label in OBVIOUS_CHATS])
    (report,) = evaluate.run(["--labeled", str(rows), "--model", str(gemma3_preset)]).reports
    assert report.prompt_version == "triage-base-score-v1", "the 270M is a base model: few-shot scoring prompt"
    assert report.error_share == 0, report.confusion
    assert report.recall["negative"] == 1.0, report.confusion


# Referenced support chats, two in English and two in Korean, three of them complaints.
REFERENCED_CHATS = [
    {"id": "en-1", "label": -1, "language": "en", "problem": "late_delivery",
     "text": "Customer: My burger order arrived 80 minutes late and the fries were stone cold.\n"
             "Agent: I'm sorry to hear that. Could you share your order number?\nCustomer: It's 5521. Not again!",
     "summary": "The customer's order arrived 80 minutes late with cold fries.",
     "reply": "We are sorry your order arrived 80 minutes late and cold. Could you send us the delivery time so we "
              "can look into it?",
     "key_terms": ["late", "80 minutes", "cold"]},
    {"id": "en-2", "label": 0, "language": "en", "problem": "allergens",
     "text": "Customer: Do you have gluten-free pizza bases at the Main Street store?",
     "summary": "The customer asked about gluten-free pizza bases.", "reply": None,
     "key_terms": ["gluten"]},
    {"id": "ko-1", "label": -1, "language": "ko", "problem": "late_delivery",
     "text": "고객: 치킨을 주문했는데 한 시간이 넘게 늦게 왔고 다 식어 있었어요. 너무 실망했습니다.",
     "summary": "치킨이 한 시간 넘게 늦게 식은 채로 도착했다.",
     "reply": "치킨이 늦게 식은 채로 도착해 죄송합니다. 주문 번호를 알려 주시면 확인하겠습니다.",
     "key_terms": ["늦", "식"]},
    {"id": "ko-2", "label": -1, "language": "ko", "problem": "coupon",
     "text": "고객: 쿠폰을 적용했는데 결제 금액에 할인이 안 됐어요. 두 번이나 시도했는데 똑같아요. 정말 짜증나네요.",
     "summary": "쿠폰을 적용했지만 할인이 되지 않았다.",
     "reply": "쿠폰 할인이 적용되지 않아 불편을 드려 죄송합니다. 주문 번호를 보내 주시면 확인하겠습니다.",
     "key_terms": ["쿠폰", "할인"]},
]


@pytest.mark.slow
def test_the_real_gemma3_text_report_on_english_and_korean_chats(gemma3_preset, tmp_path):
    rows = write_lines(tmp_path / "rows.jsonl", REFERENCED_CHATS)
    (report,) = evaluate.run(["--labeled", str(rows), "--model", str(gemma3_preset)]).reports
    summaries, replies = report.text.summaries, report.text.replies
    assert (summaries.references, replies.references) == (4, 3)
    assert 1 <= summaries.written <= round(report.valid_share * 4), "a summary for each chat triaged"
    assert 1 <= replies.written <= report.confusion["negative"].get("negative", 0), "drafts only for negatives"
    for scores in (summaries, replies):
        assert 0 <= scores.chrf <= 100
        for value in (scores.names_problem, scores.in_chat_language, scores.boilerplate_share):
            assert 0 <= value <= 1
        assert set(scores.mean_length) <= {"en", "ko", "und"} and all(v > 0 for v in scores.mean_length.values())
    assert len(report.text.worst_replies) == replies.written
    assert all(reply.chat and reply.reference and reply.draft.strip() for reply in report.text.worst_replies)
