"""The review desk: agents approve, edit or reject the pipeline's apology drafts, and what they decide flows back.

Ingest (review topic → database) and the outbox (database → BigQuery and the replies topic) run beside a FastAPI
application of server-rendered pages and a JSON API. `python -m review --help` lists its flags.
"""
