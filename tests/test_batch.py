"""`python -m pipeline.batch` turns a JSON Lines file into main/negative/error files, losing nothing."""

from collections import Counter

import pytest

from pipeline import batch
from pipeline.contracts import DeadLetter
from tests.support import read_lines, usage_error, write_lines
from tests.tiny_gemma import lesson_chats

MALFORMED = [
    b"{not json",
    b"\xc3\x28 invalid utf-8",
    b'["an", "array"]',
    b'{"id": 20, "chat_message": "no user id"}',
    b'{"id": 21, "user_id": 1, "chat_message": null}',
]


# The tiny model learned the instruct prompts; chat 4's reply is invalid in each mode, for its own reason.
@pytest.mark.parametrize(("mode", "chat_4_fault"), [("generate", "sentiment"), ("score", "summary")])
def test_every_line_ends_in_exactly_one_output(tiny_gemma, tmp_path, mode, chat_4_fault):
    too_long = {"id": 30, "user_id": 3, "chat_message": "I waited and waited. " * 60}
    chats = [*lesson_chats(), too_long]
    source = write_lines(tmp_path / "chats.jsonl", [*chats, *MALFORMED, ""])
    out = tmp_path / "out"

    batch.run([
        "--input", str(source), "--output_dir", str(out), "--model", tiny_gemma,
        "--max_length", "384", "--apology_max_length", "384", "--model_family", "instruct", "--sentiment_mode", mode,
    ])

    main, negative, error = (read_lines(out, name) for name in ("main", "negative", "error"))
    assert {row["chat_id"]: row["sentiment"] for row in main} == {"2": 1, "3": 0}
    assert [(m["chat_id"], m["draft_reply"]) for m in negative] == [("1", "We are sorry your pizza was cold and late.")]
    by_stage = Counter(letter["stage"] for letter in error)
    assert by_stage == {"input": len(MALFORMED), "triage_reply": 2}
    unanswerable = {letter["chat_id"]: letter["reason"] for letter in error if letter["stage"] == "triage_reply"}
    assert "no room" in unanswerable["30"]
    assert chat_4_fault in unanswerable["4"]
    ids = [row["chat_id"] for row in main] + [m["chat_id"] for m in negative] + list(unanswerable)
    assert sorted(ids) == sorted(str(chat["id"]) for chat in chats), "each chat exactly once"
    kept = [DeadLetter.model_validate(letter).payload_bytes() for letter in error if letter["stage"] == "input"]
    assert sorted(kept) == sorted(MALFORMED), "malformed lines are kept byte for byte"
    assert {letter["chat_id"] for letter in error if letter["stage"] == "input"} == {None, "20", "21"}


def test_missing_flags_are_a_usage_error(tmp_path, capsys):
    error = usage_error(capsys, lambda: batch.run(["--output_dir", str(tmp_path), "--model", "x"]))
    assert "the following arguments are required: --input" in error


def test_a_summary_language_in_generate_mode_is_a_usage_error(tmp_path, capsys):
    error = usage_error(capsys, lambda: batch.run([
        "--input", "x", "--output_dir", str(tmp_path), "--model", "x", "--sentiment_mode", "generate",
        "--summary_language", "ko",
    ]))
    assert "--summary_language needs --sentiment_mode score" in error
