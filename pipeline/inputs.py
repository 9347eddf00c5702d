"""Parse and validate incoming chats; anything unusable becomes a dead letter with its reason."""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from pydantic import ValidationError

from pipeline import METRICS_NAMESPACE as NAMESPACE
from pipeline.contracts import (
    MAX_KEPT_PAYLOAD_BYTES,
    MAX_PAYLOAD_BYTES,
    ChatMessage,
    DeadLetter,
    Stage,
    describe_validation_error,
)
from pipeline.tags import ERROR


class ParseChatFn(beam.DoFn):
    """Turns one raw payload (bytes, or a Pub/Sub message) into a `ChatMessage` or a dead letter."""

    def __init__(self):
        self._parsed = beam.metrics.Metrics.counter(NAMESPACE, "chats_parsed")
        self._rejected = beam.metrics.Metrics.counter(NAMESPACE, "chats_rejected")

    def process(self, element: bytes | PubsubMessage):
        data, envelope = _unwrap(element)
        if len(data) > MAX_PAYLOAD_BYTES:
            kept = data[:MAX_KEPT_PAYLOAD_BYTES]
            cut = f"; its first {len(kept)} are kept" if len(kept) < len(data) else ""
            yield self._reject(kept, f"payload is {len(data)} bytes, over the limit of {MAX_PAYLOAD_BYTES}{cut}")
            return
        try:
            fields = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as error:
            yield self._reject(data, f"payload is not UTF-8: {error.reason} at byte {error.start}")
            return
        except ValueError as error:  # json.JSONDecodeError
            yield self._reject(data, f"payload is not JSON: {error}")
            return
        if not isinstance(fields, dict):
            yield self._reject(data, f"payload is JSON {type(fields).__name__}, not an object")
            return
        try:
            chat = ChatMessage.model_validate({**fields, **envelope})
        except ValidationError as error:
            chat_id = fields.get("id")
            yield self._reject(data, describe_validation_error(error), None if chat_id is None else str(chat_id))
            return
        self._parsed.inc()
        yield chat

    def _reject(self, data: bytes, reason: str, chat_id: str | None = None) -> beam.pvalue.TaggedOutput:
        self._rejected.inc()
        letter = DeadLetter.from_bytes(data, stage=Stage.INPUT, reason=reason, chat_id=chat_id)
        return beam.pvalue.TaggedOutput(ERROR, letter)


def _unwrap(element: bytes | PubsubMessage) -> tuple[bytes, dict]:
    """The payload, and the Pub/Sub fields kept for tracing."""
    if isinstance(element, PubsubMessage):
        return element.data, {"message_id": element.message_id, "publish_time": element.publish_time}
    return element, {}


class ParseChats(beam.PTransform):
    """Raw payloads in; valid chats on the main output and dead letters on `dead_letter`."""

    def expand(self, payloads):
        return payloads | "ParseChat" >> beam.ParDo(ParseChatFn()).with_outputs(ERROR, main="chats")
