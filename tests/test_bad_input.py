"""Property tests of bad input: whatever arrives, each message ends in exactly one output and nothing raises.

The streaming job's run over the same kind of payloads is in `tests/test_streaming_faults.py`.
"""

from __future__ import annotations

import json
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from local.job import dead_letter_key, message_key
from pipeline import batch
from pipeline.contracts import MAX_KEPT_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES, ChatMessage, DeadLetter, Stage
from pipeline.inputs import ParseChatFn
from tests.payloads import huge_payloads, payloads, repeated_ids, sample_payloads
from tests.support import read_lines, write_lines


def _parse(payload: bytes) -> list:
    return list(ParseChatFn().process(payload))


@settings(max_examples=300, deadline=None)
@given(st.one_of(payloads(), payloads(repeated_ids())))
def test_any_payload_parses_to_one_chat_or_one_dead_letter_that_keeps_it(payload):
    [output] = _parse(payload)
    if isinstance(output, ChatMessage):
        chat = json.loads(payload)["chat_message"]
        assert output.chat_message in chat and output.chat_message.strip() == chat.strip()
        return
    letter = output.value
    assert output.tag == "error" and isinstance(letter, DeadLetter) and letter.stage == Stage.INPUT
    assert letter.payload_bytes() == payload, "the payload is kept byte for byte"
    assert letter.reason
    # A dead letter travels as JSON on Pub/Sub, whose messages hold at most 10 MB.
    assert len(letter.model_dump_json().encode()) < 10_000_000


def test_the_size_limits_reject_whole_and_cut_only_what_no_dead_letter_can_hold():
    one_mb_chat, over_limit = huge_payloads()
    [rejected_chat] = _parse(one_mb_chat)
    assert rejected_chat.value.chat_id == "huge-1" and "chat_message" in rejected_chat.value.reason
    assert rejected_chat.value.payload_bytes() == one_mb_chat, "a chat over the limit is rejected, not truncated"
    [rejected_payload] = _parse(over_limit)
    assert rejected_payload.value.reason == f"payload is {len(over_limit)} bytes, over the limit of {MAX_PAYLOAD_BYTES}"
    assert rejected_payload.value.payload_bytes() == over_limit
    # The largest payload Pub/Sub delivers, of control characters (which JSON would escape sixfold): cut, and the
    # dead letter still fits in a Pub/Sub message (10 MB).
    largest = b"\x01" * 10_000_000
    [cut] = _parse(largest)
    assert cut.value.reason.endswith(f"; its first {MAX_KEPT_PAYLOAD_BYTES} are kept")
    assert cut.value.payload_bytes() == largest[:MAX_KEPT_PAYLOAD_BYTES]
    assert len(cut.value.model_dump_json().encode()) < 10_000_000


def test_the_batch_job_puts_every_generated_line_in_exactly_one_output(tiny_gemma, tmp_path):
    lines = sample_payloads(60, line_safe=True)
    source = write_lines(tmp_path / "chats.jsonl", lines)
    out = tmp_path / "out"

    batch.run([
        "--input", str(source), "--output_dir", str(out), "--model", tiny_gemma, "--max_length", "384",
        "--apology_max_length", "384", "--model_family", "instruct", "--sentiment_mode", "generate",
    ])

    main, negative, error = (read_lines(out, name) for name in ("main", "negative", "error"))
    letters = [DeadLetter.model_validate(letter) for letter in error]
    outputs = Counter([row["chat_id"] for row in main + negative] + [dead_letter_key(letter) for letter in letters])
    assert outputs == Counter(map(message_key, lines)), "each line exactly once"
    valid = sum(isinstance(_parse(line)[0], ChatMessage) for line in lines)
    assert len(main) + len(negative) + sum(letter.stage != Stage.INPUT for letter in letters) == valid
    assert Counter(letter.stage for letter in letters)[Stage.INPUT] == len(lines) - valid
