"""Where results go: JSON Lines files, BigQuery and Pub/Sub, each record serialised from its contract."""

from __future__ import annotations

import json
import types
import typing
from datetime import datetime

import apache_beam as beam
from apache_beam.io.gcp.bigquery import BigQueryDisposition, WriteToBigQuery
from apache_beam.io.gcp.bigquery_tools import RetryStrategy
from apache_beam.io.gcp.pubsub import PubsubMessage, WriteToPubSub
from pydantic import BaseModel

from pipeline.contracts import DeadLetter, Stage, TriageRow

_BIGQUERY_TYPES = {str: "STRING", int: "INTEGER", float: "FLOAT", bool: "BOOLEAN", datetime: "TIMESTAMP"}


def bigquery_schema(model: type[BaseModel]) -> dict:
    """The BigQuery table schema of a contract: required columns unless the field may be None."""
    fields = []
    for name, field in model.model_fields.items():
        annotation, nullable = field.annotation, False
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            annotation, nullable = members[0], len(members) < len(typing.get_args(annotation))
        annotation = typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation
        fields.append({"name": name, "type": _BIGQUERY_TYPES[annotation], "mode": "NULLABLE" if nullable else "REQUIRED"})
    return {"fields": fields}


class WriteJsonLines(beam.PTransform):
    """Records in; `<prefix>-SSSSS-of-NNNNN.jsonl` files out, one JSON object per line."""

    def __init__(self, prefix: str):
        super().__init__()
        self._prefix = prefix

    def expand(self, records):
        return (
            records
            | "ToJson" >> beam.Map(lambda record: record.model_dump_json())
            | "Write" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl")
        )


def to_pubsub_message(record: BaseModel) -> PubsubMessage:
    """A record as a Pub/Sub message; the chat id travels as an attribute so consumers can filter unparsed."""
    chat_id = getattr(record, "chat_id", None)
    return PubsubMessage(record.model_dump_json().encode("utf-8"), {"chat_id": chat_id} if chat_id else {})


class PublishRecords(beam.PTransform):
    """Records in; one Pub/Sub message each on `topic`."""

    def __init__(self, topic: str):
        super().__init__()
        self._topic = topic

    def expand(self, records):
        return (
            records
            | "ToPubsubMessage" >> beam.Map(to_pubsub_message)
            | "Publish" >> WriteToPubSub(self._topic, with_attributes=True)
        )


def rejected_row(failure: tuple) -> DeadLetter:
    """A dead letter for a row BigQuery refused, holding the row so it can be written again."""
    _table, row, errors = failure
    return DeadLetter(
        payload=json.dumps(row), stage=Stage.SINK, chat_id=row.get("chat_id"),
        reason=f"BigQuery rejected the row: {errors}", model_id=row.get("model_id"),
        prompt_version=row.get("prompt_version"),
    )


class WriteTriageRows(beam.PTransform):
    """TriageRows in (streaming inserts, table created if needed); dead letters for rejected rows out."""

    def __init__(self, table: str, **write_kwargs):
        super().__init__()
        self._table = table
        self._write_kwargs = write_kwargs

    def expand(self, rows):
        result = (
            rows
            | "ToRow" >> beam.Map(lambda row: row.model_dump(mode="json"))
            | "Write" >> WriteToBigQuery(
                self._table,
                schema=bigquery_schema(TriageRow),
                create_disposition=BigQueryDisposition.CREATE_IF_NEEDED,
                write_disposition=BigQueryDisposition.WRITE_APPEND,
                method=WriteToBigQuery.Method.STREAMING_INSERTS,
                insert_retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
                **self._write_kwargs,
            )
        )
        return result.failed_rows_with_errors | "DeadLetterRejectedRows" >> beam.Map(rejected_row)
