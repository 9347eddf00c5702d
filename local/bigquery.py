"""Pointing BigQuery clients, Beam's `WriteToBigQuery` among them, at the local BigQuery emulator.

Beam's sink hard-codes bigquery.googleapis.com and asks `google.auth.default()` for credentials. Its documented
way around both is `test_client=...` (of `WriteToBigQuery` and of the `BigQueryWriteFn` inside it):
`BigQueryWrapper` then uses that one object as its apitools client (tables and datasets) and as its
google-cloud-bigquery client (`insert_rows_json` for streaming inserts). The replay job's lookup of landed chats
(`pipeline.sinks.LandedChatIds`) takes the same object for its `query`. `EmulatorBigQueryClient` is that object
for the emulator. Production never passes it.
"""

from __future__ import annotations

import functools


def emulator_client(endpoint: str, project: str):
    """A google-cloud-bigquery `Client` for the emulator at `endpoint`, with anonymous credentials."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project=project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint)
    )


class EmulatorBigQueryClient:
    """Beam's `test_client` for the emulator: apitools calls and `insert_rows_json`, both to `endpoint`.

    Only the endpoint and project are pickled (Beam pickles the sink's DoFn); the clients are made on first use.
    """

    def __init__(self, endpoint: str, project: str):
        self.endpoint = endpoint
        self.project = project

    def __getstate__(self) -> dict:
        return {"endpoint": self.endpoint, "project": self.project}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    @functools.cached_property
    def _apitools(self):
        import httplib2
        from apache_beam.io.gcp.internal.clients import bigquery

        return bigquery.BigqueryV2(
            url=f"{self.endpoint}/bigquery/v2/", get_credentials=False, http=httplib2.Http(timeout=60),
            response_encoding="utf8",
        )

    @functools.cached_property
    def _cloud(self):
        return emulator_client(self.endpoint, self.project)

    def insert_rows_json(self, *args, **kwargs):
        """Streaming inserts, as `google.cloud.bigquery.Client.insert_rows_json`."""
        return self._cloud.insert_rows_json(*args, **kwargs)

    def query(self, *args, **kwargs):
        """SQL queries, as `google.cloud.bigquery.Client.query` (the replay job's lookup of landed chats)."""
        return self._cloud.query(*args, **kwargs)

    def get_table(self, *args, **kwargs):
        """A table's metadata, as `google.cloud.bigquery.Client.get_table` (`pipeline.sinks.add_missing_columns`)."""
        return self._cloud.get_table(*args, **kwargs)

    def update_table(self, table, fields: list[str]):
        """`google.cloud.bigquery.Client.update_table` for new columns (`pipeline.sinks.add_missing_columns`).

        bqemulator's tables.patch changes its catalog only, not the DuckDB table under it (a row with the new field
        is then refused), and its ALTER TABLE changes the DuckDB table only: a new column takes both here.
        """
        if fields != ["schema"]:
            raise ValueError(f"the emulator's client updates schemas only, not {fields}")
        present = {field.name for field in self._cloud.get_table(table.reference).schema}
        for field in table.schema:
            if field.name not in present:
                column_type = {"FLOAT": "FLOAT64", "INTEGER": "INT64", "BOOLEAN": "BOOL"}.get(
                    field.field_type, field.field_type
                )
                self._cloud.query(
                    f"ALTER TABLE `{table.full_table_id.replace(':', '.')}` ADD COLUMN {field.name} {column_type}"
                ).result()
        return self._cloud.update_table(table, fields)

    def __getattr__(self, name: str):
        # `datasets`, `tables`, `jobs`, `tabledata`: the apitools services Beam calls.
        if name.startswith("_") or name in {"endpoint", "project"}:
            raise AttributeError(name)
        return getattr(self._apitools, name)
