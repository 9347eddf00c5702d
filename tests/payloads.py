"""Hypothesis strategies for what upstream systems may put on the input topic, well-formed or not."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline.contracts import MAX_CHAT_CHARS, MAX_PAYLOAD_BYTES

# Chats in several scripts and directions, with the emoji, combining marks and zero-width characters real chats
# carry; hypothesis mixes them with text of its own.
CHATS_IN_MANY_SCRIPTS = [
    "La pizza est arrivée froide, je suis déçu.",
    "Die Lieferung war pünktlich, danke!",
    "配達が遅すぎます。二時間も待ちました。",
    "披萨很好吃，谢谢！",  # noqa: RUF001 - full-width punctuation on purpose: multilingual test data
    "الطلب وصل باردًا ومتأخرًا",
    "המשלוח הגיע בזמן, תודה",
    "Доставка опоздала на час.",
    "खाना ठंडा था और देर से आया।",
    "배달이 정말 빨랐어요 👍",
    "e\u0301\u0301\u0301 zero\u200bwidth\u200d joiner \U0001f469\u200d\U0001f373",
    "RTL \u202eoverride\u202c and a BOM \ufeff inside",
]
CONTROL_CHARACTERS = "".join(map(chr, range(0x20))) + "\x7f\x85\u2028\u2029"
_IDS = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text("abcXYZ0123456789-_", min_size=1, max_size=12)
_CHAT_TEXT = st.sampled_from(CHATS_IN_MANY_SCRIPTS) | st.text(min_size=1, max_size=200).filter(str.strip)
# Values of the wrong type for any field: floats, booleans, containers, numbers where text is expected.
_WRONG_TYPES = st.sampled_from([1.5, True, False, [], {}, ["a"], {"text": "hi"}, float("inf")]) | st.floats()
_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_NOT_OBJECTS = st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)


def _encode(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", errors="surrogatepass")


@st.composite
def valid_chats(draw, ids=_IDS) -> dict:
    return {"id": draw(ids), "user_id": draw(_IDS), "chat_message": draw(_CHAT_TEXT)}


@st.composite
def broken_chats(draw, ids=_IDS) -> dict:
    """A chat object with one field missing, null, blank or of the wrong type."""
    chat = draw(valid_chats(ids))
    field = draw(st.sampled_from(sorted(chat)))
    fault = draw(st.sampled_from(["missing", "null", "wrong type", "blank"]))
    if fault == "missing":
        del chat[field]
    elif fault == "null":
        chat[field] = None
    elif fault == "wrong type":
        chat[field] = draw(_WRONG_TYPES)
    else:
        chat[field] = draw(st.sampled_from(["", " ", "\t\n", "\u3000"]))
    return chat


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def payloads(ids=_IDS, line_safe: bool = False) -> st.SearchStrategy[bytes]:
    """One input message of any kind; `line_safe` leaves out newlines and blank payloads (JSON Lines files)."""
    text = st.text(alphabet=st.characters(blacklist_characters="\n\r"), min_size=1) if line_safe else st.text()
    raw = st.binary(min_size=1)
    if line_safe:
        raw = raw.filter(lambda data: b"\n" not in data and b"\r" not in data)
    strategy = st.one_of(
        valid_chats(ids).map(_encode),
        # Control characters are legal inside a chat; json.dumps escapes the ones a line cannot hold.
        valid_chats(ids).map(lambda chat: {**chat, "chat_message": "ok " + CONTROL_CHARACTERS}).map(_encode),
        broken_chats(ids).map(_encode),
        _NOT_OBJECTS.map(_encode),
        text.map(lambda t: t.encode("utf-8", errors="surrogatepass")).filter(lambda b: not _is_json(b)),
        raw.filter(_not_utf8),
    )
    return strategy.filter(lambda data: data.strip()) if line_safe else strategy


def repeated_ids() -> st.SearchStrategy:
    """Ids from a pool of three, so that a list of payloads repeats some."""
    return st.sampled_from([7, "7", "web-7"])


def huge_payloads() -> list[bytes]:
    """A chat of 1 MB (well formed, over MAX_CHAT_CHARS) and a payload over MAX_PAYLOAD_BYTES."""
    one_mb = {"id": "huge-1", "user_id": 1, "chat_message": "My order never came. " * 47_000}
    assert len(one_mb["chat_message"]) > MAX_CHAT_CHARS and len(_encode(one_mb)) < MAX_PAYLOAD_BYTES
    over_limit = {"id": "huge-2", "user_id": 1, "chat_message": "é" * MAX_PAYLOAD_BYTES}
    return [_encode(one_mb), _encode(over_limit)]


def sample_payloads(count: int, line_safe: bool = False) -> list[bytes]:
    """`count` payloads drawn by hypothesis, reproducibly, for one run of a whole job (which takes too long to
    run once per example): some with repeated ids, plus the two huge ones."""
    drawn: list[bytes] = []

    @settings(
        max_examples=count, database=None, derandomize=True, phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.one_of(payloads(line_safe=line_safe), payloads(repeated_ids(), line_safe=line_safe)))
    def collect(payload: bytes) -> None:
        drawn.append(payload)

    collect()
    return drawn + huge_payloads()
