"""`python -m review`: the desk with its real clients (Pub/Sub, BigQuery), served by uvicorn.

    python -m review [--database_url URL] [--subscription S] [--replies_topic T] [--chats_topic T]
        [--bigquery_table P:D.T] …

`python -m review --help` lists every flag; each can also be set as `REVIEW_<FLAG>` in the environment.
"""

from __future__ import annotations

import logging
import sys

from pydantic_settings import CliApp

from pipeline.contracts import utc_now
from review.app import Desk, create_app
from review.checks import CHATS
from review.config import Settings
from review.db import make_engine, session_factory, upgrade
from review.decisions import REPLIES
from review.identity import IapVerifier
from review.ingest import Ingest
from review.outbox import BigQueryTable, Outbox, Topic

_LOGGER = logging.getLogger("review")


def build_desk(settings: Settings, *, subscriber=None, publisher=None, bigquery=None, clock=utc_now) -> Desk:
    """The desk's parts for `settings`; each client is used only where its flag names a resource."""
    engine = make_engine(settings.database_url)
    upgrade(engine)
    sessions = session_factory(engine)
    destinations = []
    if settings.bigquery_table and bigquery is not None:
        destinations.append(BigQueryTable(bigquery, settings.bigquery_table_id()))
    for name, topic in ((REPLIES, settings.replies_topic), (CHATS, settings.chats_topic)):
        if topic and publisher is not None:
            destinations.append(Topic(name, publisher, topic))
    ingest = None
    if settings.subscription and subscriber is not None:
        ingest = Ingest(subscriber, settings.subscription, sessions, clock)
    verifier = IapVerifier(settings.iap_audience, settings.iap_certs_url) if settings.auth == "iap" else None
    return Desk(
        settings, sessions, verifier=verifier, ingest=ingest, outbox=Outbox(sessions, destinations, clock), clock=clock
    )


def cloud_clients(settings: Settings) -> dict:
    """Google Cloud clients for the resources the settings name (Application Default Credentials)."""
    from google.cloud import bigquery, pubsub

    clients = {}
    if settings.subscription:
        clients["subscriber"] = pubsub.SubscriberClient()
    if settings.replies_topic or settings.chats_topic:
        clients["publisher"] = pubsub.PublisherClient()
    if settings.bigquery_table:
        clients["bigquery"] = bigquery.Client(project=settings.bigquery_table_id().split(".")[0])
    return clients


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(desk: Desk) -> None:
    import uvicorn

    settings = desk.settings
    _LOGGER.info("review desk on http://%s:%d (reviewers: %s)", settings.host, settings.port, settings.auth)
    uvicorn.run(create_app(desk), host=settings.host, port=settings.port, log_level=settings.log_level.lower())


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(Settings, cli_args=sys.argv[1:] if argv is None else argv)
    configure_logging(settings.log_level)
    serve(build_desk(settings, **cloud_clients(settings)))
    return 0
