"""Replaying dead letters: which to try again, and what a retry that fails again becomes.

A Beam graph cannot loop, so retries are a batch job of their own (`pipeline.replay`): read dead letters, keep
one per chat, park what can never succeed or has used up its attempts, run the rest through the triage graph
(rows of `sink` letters are written again, not re-inferred), and turn each new failure into the chat's next
attempt, with the failures before it in its history.
"""

from __future__ import annotations

import apache_beam as beam
from pydantic import ValidationError

from pipeline import METRICS_NAMESPACE as NAMESPACE
from pipeline.contracts import DeadLetter, LetterStatus, Stage, TriageRow, describe_validation_error

PARKED = "parked"
CHATS = "chats"
ROWS = "rows"

# Stages whose input can never succeed: the payload is not a chat, or not a dead letter at all.
_HOPELESS = {Stage.INPUT, Stage.REPLAY_INPUT}


class ParseDeadLetterFn(beam.DoFn):
    """One line or message in; its `DeadLetter` out, or on `parked` a parked letter saying why it is none."""

    def __init__(self):
        self._unreadable = beam.metrics.Metrics.counter(NAMESPACE, "replay_unreadable")

    def process(self, data: bytes):
        try:
            yield DeadLetter.model_validate_json(data)
        except ValidationError as error:
            self._unreadable.inc()
            reason = f"not a dead letter: {describe_validation_error(error)}"
            letter = DeadLetter.from_bytes(data, stage=Stage.REPLAY_INPUT, reason=reason, status=LetterStatus.PARKED)
            yield beam.pvalue.TaggedOutput(PARKED, letter)


def _chat_key(letter: DeadLetter) -> tuple[str, str]:
    # A letter without a chat id (its payload was not a chat) can only be recognised by its payload.
    return ("chat", letter.chat_id) if letter.chat_id is not None else ("payload", letter.payload)


def _latest(letters) -> DeadLetter:
    return max(letters, key=lambda letter: (letter.attempt, letter.failed_at))


class LatestPerChat(beam.PTransform):
    """Dead letters in; one per chat out: the one with the most attempts (the same chat may be in the input twice,
    e.g. after a Pub/Sub redelivery or a seek back to a snapshot)."""

    def expand(self, letters):
        return (
            letters
            | "ByChat" >> beam.Map(lambda letter: (_chat_key(letter), letter))
            | "GroupByChat" >> beam.GroupByKey()
            | "Latest" >> beam.MapTuple(lambda _key, group: _latest(group))
        )


class PlanReplayFn(beam.DoFn):
    """A dead letter in; out on `chats` (to triage again), `rows` (`(letter, TriageRow)`: to write again) or
    `parked` (final: parked already, input that can never succeed, attempts used up)."""

    def __init__(self, max_attempts: int):
        self._max_attempts = max_attempts
        self._parked = beam.metrics.Metrics.counter(NAMESPACE, "replay_parked")

    def process(self, letter: DeadLetter):
        if letter.status is LetterStatus.PARKED:
            yield beam.pvalue.TaggedOutput(PARKED, letter)
        elif letter.stage in _HOPELESS or letter.attempt >= self._max_attempts:
            self._parked.inc()
            yield beam.pvalue.TaggedOutput(PARKED, letter.parked())
        elif letter.stage is Stage.SINK:
            try:
                yield beam.pvalue.TaggedOutput(ROWS, (letter, TriageRow.model_validate_json(letter.payload)))
            except ValidationError as error:
                self._parked.inc()
                reason = f"the row does not fit the TriageRow contract: {describe_validation_error(error)}"
                again = DeadLetter(payload=letter.payload, stage=Stage.SINK, reason=reason, chat_id=letter.chat_id)
                yield beam.pvalue.TaggedOutput(PARKED, again.retry_of(letter).parked())
        else:
            yield beam.pvalue.TaggedOutput(CHATS, letter)


class NextAttemptFn(beam.DoFn):
    """`(chat id, {"tried": [letter], "failed": [new dead letters]})` in; each new failure as the chat's next
    attempt out, parked (on `parked`) when its input can never succeed or it was the last attempt allowed."""

    def __init__(self, max_attempts: int):
        self._max_attempts = max_attempts
        self._failed = beam.metrics.Metrics.counter(NAMESPACE, "replay_failed_again")
        self._parked = beam.metrics.Metrics.counter(NAMESPACE, "replay_parked")

    def process(self, element):
        _chat_id, groups = element
        tried = list(groups["tried"])
        for failure in groups["failed"]:
            # A failure without its letter (no chat id to join on) keeps its own count.
            letter = failure.retry_of(tried[0]) if tried else failure
            self._failed.inc()
            if letter.stage in _HOPELESS or letter.attempt >= self._max_attempts:
                self._parked.inc()
                yield beam.pvalue.TaggedOutput(PARKED, letter.parked())
            else:
                yield letter


class NextAttempts(beam.PTransform):
    """`{"tried": letters replayed, "failed": dead letters of this run}` in; the retryable ones on the main output
    and the final ones on `parked`."""

    def __init__(self, max_attempts: int):
        super().__init__()
        self._max_attempts = max_attempts

    def expand(self, inputs):
        keyed = {
            name: letters | f"Key_{name}" >> beam.Map(lambda letter: (letter.chat_id, letter))
            for name, letters in inputs.items()
        }
        return (
            keyed
            | "JoinOnChat" >> beam.CoGroupByKey()
            | "Next" >> beam.ParDo(NextAttemptFn(self._max_attempts)).with_outputs(PARKED, main="retry")
        )
