"""The local stack: Pub/Sub and BigQuery emulators for `make demo` and the end-to-end tests (never shipped)."""
