"""Where results go: JSON Lines files, BigQuery and Pub/Sub, each record serialised from its contract."""

from __future__ import annotations

import json
import logging

import apache_beam as beam
from apache_beam.io.gcp.bigquery import BigQueryDisposition, BigQueryWriteFn
from apache_beam.io.gcp.bigquery_tools import RetryStrategy, parse_table_reference
from apache_beam.io.gcp.pubsub import PubsubMessage, WriteToPubSub
from pydantic import BaseModel

from pipeline.contracts import DeadLetter, Stage, TriageRow
from pipeline.table_schema import bigquery_schema


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


def _table_client(table: str, test_client=None):
    """A google-cloud-bigquery client for `table` (PROJECT:DATASET.TABLE) and the table's name as it spells it."""
    from google.cloud import bigquery

    reference = parse_table_reference(table)
    name = f"{reference.projectId}.{reference.datasetId}.{reference.tableId}"
    return test_client or bigquery.Client(project=reference.projectId), name


def add_missing_columns(client, table_id: str, schema: dict) -> list[str]:
    """Adds the columns of `schema` that the table lacks (a table made by an older version of the job), keeping
    its rows; returns their names. A table that does not exist yet is left to CREATE_IF_NEEDED.

    One `tables.patch` with the whole schema: adding NULLABLE columns is the one schema change BigQuery makes in
    place. Two workers that patch at once send the same schema, so the race is harmless.
    """
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery

    try:
        existing = client.get_table(table_id)
    except NotFound:
        return []
    present = {field.name for field in existing.schema}
    missing = [field for field in schema["fields"] if field["name"] not in present]
    required = [field["name"] for field in missing if field["mode"] == "REQUIRED"]
    if required:
        raise ValueError(f"{table_id} lacks columns that are REQUIRED in the contract, which BigQuery cannot add: "
                         f"{required}; make them optional")
    if missing:
        existing.schema = [*existing.schema, *map(bigquery.SchemaField.from_api_repr, missing)]
        client.update_table(existing, ["schema"])
    return [field["name"] for field in missing]


class _AddMissingColumnsFn(beam.DoFn):
    """Passes rows through; at setup, gives the table the contract's new columns (`add_missing_columns`), before
    the first row of this worker is inserted."""

    def __init__(self, table: str, test_client=None):
        self._table = table
        self._test_client = test_client

    def setup(self):
        client, name = _table_client(self._table, self._test_client)
        if added := add_missing_columns(client, name, bigquery_schema(TriageRow)):
            logging.info("added the columns %s to %s", ", ".join(added), name)

    def process(self, row: TriageRow):
        yield row


class WriteTriageRows(beam.PTransform):
    """TriageRows in (streaming inserts, table created if needed, new columns added); dead letters for rejected
    rows out.

    Each row's insert id is its chat id, so BigQuery drops a chat written twice within its deduplication window
    (best effort, about a minute): a redelivered Pub/Sub message, a retried bundle. `WriteToBigQuery` makes its
    own random insert ids and takes none from the caller, so this runs the DoFn inside it, Beam's
    `BigQueryWriteFn`, on `(table, (row, insert id))` pairs. `write_kwargs` go to that DoFn (the local stack
    passes `test_client`).
    """

    def __init__(self, table: str, **write_kwargs):
        super().__init__()
        self._table = table
        self._write_kwargs = write_kwargs

    def expand(self, rows):
        table = self._table
        result = (
            rows
            | "AddMissingColumns" >> beam.ParDo(_AddMissingColumnsFn(table, self._write_kwargs.get("test_client")))
            | "WithInsertIds" >> beam.Map(lambda row: (table, (row.model_dump(mode="json"), row.chat_id)))
            | "StreamInsertRows" >> beam.ParDo(
                BigQueryWriteFn(
                    batch_size=BigQueryWriteFn.DEFAULT_MAX_BATCH_SIZE,
                    schema=bigquery_schema(TriageRow),
                    create_disposition=BigQueryDisposition.CREATE_IF_NEEDED,
                    write_disposition=BigQueryDisposition.WRITE_APPEND,
                    retry_strategy=RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
                    **self._write_kwargs,
                )
            ).with_outputs(BigQueryWriteFn.FAILED_ROWS_WITH_ERRORS, BigQueryWriteFn.FAILED_ROWS, main="written")
        )
        return result[BigQueryWriteFn.FAILED_ROWS_WITH_ERRORS] | "DeadLetterRejectedRows" >> beam.Map(rejected_row)


# Chat ids per lookup query: far below BigQuery's limits on query parameters and request size.
LOOKUP_CHUNK = 10_000


class _LandedChatIdsFn(beam.DoFn):
    """A set of chat ids in; the subset already in the table out (empty while the table does not exist)."""

    def __init__(self, table: str, test_client=None):
        self._table = table
        self._test_client = test_client

    def setup(self):
        self._client, self._name = _table_client(self._table, self._test_client)

    def process(self, chat_ids: set[str]):
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        ids, landed = sorted(chat_ids), set()
        for start in range(0, len(ids), LOOKUP_CHUNK):
            config = bigquery.QueryJobConfig(
                query_parameters=[bigquery.ArrayQueryParameter("ids", "STRING", ids[start:start + LOOKUP_CHUNK])]
            )
            query = f"SELECT DISTINCT chat_id FROM `{self._name}` WHERE chat_id IN UNNEST(@ids)"
            try:
                landed.update(row["chat_id"] for row in self._client.query(query, job_config=config).result())
            except NotFound:
                break
        yield frozenset(landed)


class LandedChatIds(beam.PTransform):
    """Chat ids in; one set out: those of them that already have a row in `table`.

    The replay job skips these, which is what keeps a replay from adding a second row for a chat (insert ids
    deduplicate only within about a minute). `test_client` is the local stack's BigQuery client.
    """

    def __init__(self, table: str, test_client=None):
        super().__init__()
        self._table = table
        self._test_client = test_client

    def expand(self, chat_ids):
        return (
            chat_ids
            | "AllIds" >> beam.CombineGlobally(beam.combiners.ToSetCombineFn())
            | "InTable" >> beam.ParDo(_LandedChatIdsFn(self._table, self._test_client))
        )
