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
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+")


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


def cut_repeats(text: str) -> str:
    """`text` up to its first sentence that repeats an earlier one, or begins to where the token budget cut it off.

    Greedy decoding of a small model sometimes loops, writing one sentence again until its budget runs out, and
    KerasHub's samplers have no repetition penalty: the loop is cut here, after the fact.
    """
    seen: set[str] = set()
    start = 0
    for end in [*(match.start() for match in _SENTENCE_END.finditer(text)), len(text)]:
        sentence = text[start:end].strip()
        unfinished = end == len(text) and not sentence.endswith(_TERMINATORS)
        if sentence and (sentence in seen or (unfinished and any(whole.startswith(sentence) for whole in seen))):
            return text[:start].rstrip()
        seen.add(sentence)
        start = end
    return text


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
