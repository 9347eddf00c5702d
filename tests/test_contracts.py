"""The data contracts accept what the design says and reject the rest with a reason."""

import pytest
from pydantic import ValidationError

from pipeline.contracts import MAX_CHAT_CHARS, ChatMessage, DeadLetter, ModelReply, Stage, TriageRow


@pytest.mark.parametrize("chat_id", [1, "a-17"])
def test_chat_accepts_int_or_string_ids(chat_id):
    chat = ChatMessage.model_validate({"id": chat_id, "user_id": 5, "chat_message": " Hi "})
    assert chat.chat_id == str(chat_id)
    assert chat.chat_message == "Hi"


@pytest.mark.parametrize(
    "fields",
    [
        {"user_id": 5, "chat_message": "hi"},
        {"id": None, "user_id": 5, "chat_message": "hi"},
        {"id": True, "user_id": 5, "chat_message": "hi"},
        {"id": 1.5, "user_id": 5, "chat_message": "hi"},
        {"id": 1, "user_id": 5, "chat_message": "   "},
        {"id": 1, "user_id": 5, "chat_message": 42},
        {"id": 1, "user_id": 5, "chat_message": "x" * (MAX_CHAT_CHARS + 1)},
    ],
)
def test_chat_rejects_bad_fields(fields):
    with pytest.raises(ValidationError):
        ChatMessage.model_validate(fields)


def test_chat_payload_drops_the_pubsub_envelope():
    chat = ChatMessage.model_validate({"id": 1, "user_id": 2, "chat_message": "hi", "message_id": "m1"})
    assert ChatMessage.model_validate_json(chat.payload()) == chat.model_copy(update={"message_id": None})


@pytest.mark.parametrize("sentiment", [-1, 0, 1])
def test_reply_accepts_integer_sentiments(sentiment):
    assert ModelReply.model_validate({"sentiment": sentiment, "summary": "ok"}).sentiment == sentiment


@pytest.mark.parametrize("sentiment", ["-1", 2, -2, True, 1.0, None])
def test_reply_rejects_anything_but_minus_one_zero_one(sentiment):
    with pytest.raises(ValidationError):
        ModelReply.model_validate({"sentiment": sentiment, "summary": "ok"})


@pytest.mark.parametrize("summary", ["", "  ", "x" * 513, None])
def test_reply_rejects_empty_or_long_summaries(summary):
    with pytest.raises(ValidationError):
        ModelReply.model_validate({"sentiment": 0, "summary": summary})


def test_triage_row_holds_only_positive_or_neutral():
    with pytest.raises(ValidationError):
        TriageRow(
            chat_id="1", user_id="2", sentiment=-1, summary="s", model_id="m", prompt_version="v",
            processed_at="2026-01-01T00:00:00Z",
        )


@pytest.mark.parametrize("data", [b'{"id": 1}', b"\xff\xfe not utf-8"])
def test_dead_letter_keeps_the_payload_byte_for_byte(data):
    letter = DeadLetter.from_bytes(data, stage=Stage.INPUT, reason="r")
    restored = DeadLetter.model_validate_json(letter.model_dump_json())
    assert restored.payload_bytes() == data
