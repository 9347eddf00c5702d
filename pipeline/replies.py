"""Turning a model's free text into a validated reply, or a clear reason why it is not one."""

from __future__ import annotations

import json
import re

from pydantic import ValidationError

from pipeline.contracts import ApologyDraft, ModelReply, describe_validation_error

_DECODER = json.JSONDecoder()
# Chat models close their turn with a marker that is not part of the reply.
_TURN_END = re.compile(r"<end_of_turn>|<eos>")
# Where a sentence ends, in English and Korean ("요." ends one too): after . ! ? or 。 and a space.
_TERMINATORS = (".", "!", "?", "。")
_SENTENCE_END = re.compile(rf"(?<=[{re.escape(''.join(_TERMINATORS))}])\s+")
# A loop: a run of up to this many words, this many times in a row.
_LOOP_WORDS, _LOOP_COPIES = 8, 3


class ReplyError(ValueError):
    """The model's text holds no acceptable reply; the message says why."""


def _json_objects(text: str):
    """Every JSON object embedded in `text`, in order (prose, code fences and trailing text are skipped)."""
    position = text.find("{")
    while position != -1:
        try:
            value, end = _DECODER.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            yield value
        position = text.find("{", end)


def parse_triage_reply(text: str) -> ModelReply:
    """The first JSON object in `text` that is a valid triage reply.

    Raises:
        ReplyError: no JSON object was found, or none validates; the reason names the first problem.
    """
    first_error: str | None = None
    for candidate in _json_objects(text):
        try:
            return ModelReply.model_validate(candidate)
        except ValidationError as error:
            first_error = first_error or describe_validation_error(error)
    if first_error is None:
        raise ReplyError("no JSON object in the reply")
    raise ReplyError(f"invalid reply: {first_error}")


def cut_loop(text: str) -> str:
    """`text` without the loop greedy decoding sometimes falls into: cut after the first copy of a run of words
    that comes three times in a row, or before the first sentence that repeats an earlier one (or begins to, where
    the token budget cut it off).

    KerasHub's samplers have no repetition penalty, so the loop is cut here, after the fact.
    """
    end = min(_phrase_loop_end(text), _repeated_sentence_start(text))
    return text[:end].rstrip() if end < len(text) else text


def _phrase_loop_end(text: str) -> int:
    """Where the first copy of a run of up to `_LOOP_WORDS` words ends, if `_LOOP_COPIES` copies of it follow one
    another ("속을 뜯고 속을 뜯고 속을 뜯고"); else the text's length."""
    words = list(re.finditer(r"\S+", text))
    tokens = [word.group() for word in words]
    for start in range(len(tokens)):
        for size in range(1, _LOOP_WORDS + 1):
            if start + _LOOP_COPIES * size > len(tokens):
                break
            run = tokens[start:start + size]
            if all(tokens[start + copy * size:start + (copy + 1) * size] == run for copy in range(1, _LOOP_COPIES)):
                return words[start + size - 1].end()
    return len(text)


def _repeated_sentence_start(text: str) -> int:
    """Where the first sentence that repeats an earlier one starts; else the text's length."""
    seen: set[str] = set()
    start = 0
    for end in [*(match.start() for match in _SENTENCE_END.finditer(text)), len(text)]:
        sentence = text[start:end].strip()
        unfinished = end == len(text) and not sentence.endswith(_TERMINATORS)
        if sentence and (sentence in seen or (unfinished and any(whole.startswith(sentence) for whole in seen))):
            return start
        seen.add(sentence)
        start = end
    return len(text)


def parse_scored_reply(sentiment: int, summary: str) -> ModelReply:
    """The reply of the scoring mode: the sentiment the model's likelihood chose and the summary it wrote.

    Raises:
        ReplyError: the summary is empty or too long.
    """
    try:
        return ModelReply(sentiment=sentiment, summary=_TURN_END.split(summary, maxsplit=1)[0])
    except ValidationError as error:
        raise ReplyError(f"invalid reply: {describe_validation_error(error)}") from error


def parse_apology(text: str) -> ApologyDraft:
    """The draft apology in `text`, up to the model's end-of-turn marker.

    Raises:
        ReplyError: the draft is empty or too long.
    """
    draft = _TURN_END.split(text, maxsplit=1)[0]
    try:
        return ApologyDraft(text=draft)
    except ValidationError as error:
        raise ReplyError(f"invalid apology: {describe_validation_error(error)}") from error
