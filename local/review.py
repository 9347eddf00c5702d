"""`make review`: the review desk on the local stack, so that decisions reach the emulated BigQuery and Pub/Sub.

    python -m local.review [--database_url sqlite:///out/review-desk.sqlite3] [--port 8000] [other desk flags]

Starts the Pub/Sub emulator and bqemulator, creates the topics, subscriptions and dataset (the desk creates its
table), and serves the desk on http://127.0.0.1:PORT until Ctrl-C. The drafts `make demo` left in the desk's
database wait there; the emulators start empty, and stop with the desk.
"""

from __future__ import annotations

import logging
import signal
import sys

from pydantic_settings import CliApp

from local.stack import LocalStack, StackError
from review.config import Settings
from review.decisions import pending
from review.main import build_desk, configure_logging, serve

_LOGGER = logging.getLogger("local.review")


def _stop_on_sigterm(_signum, _frame) -> None:
    # uvicorn re-raises the signal that stopped it once it has shut down. SIGTERM's default action would end the
    # process there, leaving the emulators running; a KeyboardInterrupt is absorbed by uvicorn.run, so serve()
    # returns and the emulators are stopped on the way out.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(Settings, cli_args=sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    configure_logging(settings.log_level)
    _LOGGER.info("starting the Pub/Sub emulator and bqemulator …")
    try:
        with LocalStack.start() as stack:
            stack.create_resources()
            names = stack.resources
            settings = settings.model_copy(update={
                "subscription": names.review_desk_subscription, "replies_topic": names.replies_topic,
                "chats_topic": names.input_topic, "bigquery_table": names.reviews_table_name,
            })
            desk = build_desk(settings, subscriber=stack.subscriber, publisher=stack.publisher, bigquery=stack.bigquery)
            with desk.sessions() as session:
                waiting = len(pending(session))
            _LOGGER.info(
                "%d drafts wait in %s. Decisions go to BigQuery %s (emulator at %s) and approved replies to %s "
                "(Pub/Sub emulator at %s).", waiting, settings.database_url, names.reviews_table_name,
                stack.bigquery_endpoint, names.replies_topic, stack.pubsub_host,
            )
            _LOGGER.info(
                "open http://%s:%d in a browser; Ctrl-C stops the desk and the emulators", settings.host, settings.port
            )
            serve(desk)
    except StackError as error:
        _LOGGER.error("the local stack did not start: %s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
