"""A triage table made before a column of the contract existed gains it at the job's start, keeping its rows
(BigQuery emulator, Beam's own write)."""

from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from google.cloud import bigquery

from pipeline.contracts import TriageRow
from pipeline.sinks import WriteTriageRows
from pipeline.table_schema import bigquery_schema
from tests.support import own_stack

WHEN = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def _row(chat_id: str, confidence: float | None) -> TriageRow:
    return TriageRow(
        chat_id=chat_id, user_id="u", sentiment=1, summary="Liked it.", model_id="m", prompt_version="v",
        processed_at=WHEN, confidence=confidence,
    )


def test_an_older_table_gains_the_confidence_column_and_keeps_its_rows(stack):
    local = own_stack(stack, "table-evolution")
    names = local.resources
    table_id = f"{names.project}.{names.dataset}.{names.table}"
    older = [field for field in bigquery_schema(TriageRow)["fields"] if field["name"] != "confidence"]
    local.bigquery.create_table(bigquery.Table(table_id, schema=[*map(bigquery.SchemaField.from_api_repr, older)]))
    old_row = _row("old", None).model_dump(mode="json", exclude={"confidence"})
    assert local.bigquery.insert_rows_json(table_id, [old_row], row_ids=["old"]) == []

    with TestPipeline(runner="FnApiRunner") as pipeline:
        rejected = (
            pipeline
            | beam.Create([_row("new", 0.8)])
            | WriteTriageRows(names.bigquery_table, **local.bigquery_write_kwargs())
        )
        assert_that(rejected, equal_to([]))

    columns = {field.name: (field.field_type, field.mode) for field in local.bigquery.get_table(table_id).schema}
    assert columns["confidence"] == ("FLOAT", "NULLABLE")
    assert sorted((row["chat_id"], row["confidence"]) for row in local.rows()) == [("new", 0.8), ("old", None)]
