"""`make demo`: the streaming job on the local stack, fed the sample chats, with a short report at the end.

    python -m local.demo [--model PRESET] [--samples samples/chats.jsonl] [--timeout 1800]
                         [--review_database_url sqlite:///out/review-desk.sqlite3] [--apology_variants FILE]

Starts the Pub/Sub emulator and bqemulator, creates the topics, subscriptions and dataset, runs `pipeline.run` on
BundleBasedDirectRunner in this process, publishes the samples, waits until each one is a BigQuery row, a review
message or a dead letter, prints the report, then cancels the job and stops both services (also on Ctrl-C).
The review desk's ingest runs beside the job, so the drafts end in the desk's database for `make review`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from local.job import StreamingJob, Tally
from local.stack import LocalStack, StackError
from pipeline.logs import drop_known_false_alarms
from pipeline.models import SHIPPED_APOLOGY_LORA, SHIPPED_TRIAGE_LORA
from review.config import DEFAULT_DATABASE_URL
from review.db import make_engine, session_factory, upgrade
from review.ingest import Ingest
from review.models import Draft

_LOGGER = logging.getLogger("local.demo")
SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "chats.jsonl"
HEARTBEAT_SECS = 20.0


class _Clock(logging.Formatter):
    """Progress lines stamped with the seconds since the demo started."""

    def __init__(self):
        super().__init__()
        self._started = time.monotonic()

    def format(self, record: logging.LogRecord) -> str:
        return f"[{time.monotonic() - self._started:6.1f} s] {record.getMessage()}"


def _short(record: dict, width: int = 110) -> str:
    """A record as one JSON line, long values cut."""
    cut = {
        key: (f"{value[:width]}…" if isinstance(value, str) and len(value) > width else value)
        for key, value in record.items()
    }
    return json.dumps(cut, ensure_ascii=False, default=str)


class _Progress:
    """Logs the tally when it changes, and a heartbeat while the model loads or works through a batch."""

    def __init__(self):
        self._last = ""
        self._last_time = time.monotonic()

    def __call__(self, tally: Tally) -> None:
        summary = tally.summary()
        if summary != self._last or time.monotonic() - self._last_time > HEARTBEAT_SECS:
            waiting = (
                "" if summary != self._last else " (still working: model load and each batch take a while on a CPU)"
            )
            _LOGGER.info("%s%s", summary, waiting)
            self._last, self._last_time = summary, time.monotonic()


def report(tally: Tally) -> None:
    """Counts per output, two example rows, one draft and one dead letter."""
    stages = Counter(letter.stage.value for letter in tally.dead_letters)
    _LOGGER.info("---- report ----")
    _LOGGER.info("published %d messages", sum(tally.expected.values()))
    _LOGGER.info("  BigQuery rows (sentiment 1 or 0): %d", len(tally.rows))
    _LOGGER.info("  drafts for review (sentiment -1): %d", len(tally.reviews))
    _LOGGER.info("  dead letters: %d %s", len(tally.dead_letters), dict(stages))
    duplicates = tally.accounted - tally.expected
    _LOGGER.info(
        "  missing: %s; written twice or unexpected: %s", dict(tally.missing) or "none", dict(duplicates) or "none"
    )
    examples = [("row", _short(row)) for row in tally.rows[:2]] or [("row", "none")]
    examples += [
        ("draft", _short({key: review[key] for key in ("chat_id", "summary", "draft_reply")}))
        for review in tally.reviews[:1]
    ] or [("draft", "none (no chat was triaged as negative)")]
    examples += [
        ("dead letter", _short(letter.model_dump(include={"chat_id", "stage", "reason", "payload"})))
        for letter in tally.dead_letters[:1]
    ] or [("dead letter", "none")]
    for kind, text in examples:
        _LOGGER.info("example %-12s %s", f"{kind}:", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", help="KerasHub preset for both steps (default: the shipped triage and apology LoRAs on the local "
        "Gemma 3 270M)"
    )
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="JSON Lines file of chats to publish")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for every message")
    parser.add_argument(
        "--review_database_url", default=DEFAULT_DATABASE_URL, help="the review desk's database, where the drafts go"
    )
    parser.add_argument("--apology_variants", help="apology variants file, as for pipeline.run (default: none)")
    args = parser.parse_args(argv)

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Clock())
    _LOGGER.addHandler(handler)
    _LOGGER.setLevel(logging.INFO)
    _LOGGER.propagate = False
    logging.getLogger().setLevel(logging.WARNING)
    drop_known_false_alarms()

    payloads = [line for line in args.samples.read_bytes().splitlines() if line.strip()]

    _LOGGER.info("starting the Pub/Sub emulator and bqemulator …")
    try:
        with LocalStack.start() as stack:
            _LOGGER.info("Pub/Sub emulator at %s, BigQuery emulator at %s", stack.pubsub_host, stack.bigquery_endpoint)
            stack.create_resources()
            names = stack.resources
            _LOGGER.info(
                "created topics chats, review, dead-letter, replies; subscriptions chats-triage (job input), "
                "review-agents, review-desk (the review desk), replies-sender, dead-letter-replay; dataset %s "
                "(project %s)", names.dataset, names.project,
            )
            engine = make_engine(args.review_database_url)
            upgrade(engine)
            drafts = session_factory(engine)
            ingest = Ingest(stack.subscriber, names.review_desk_subscription, drafts)
            ingest.start()
            try:
                variants = [f"--apology_variants={args.apology_variants}"] if args.apology_variants else []
                return _run(stack, args.model, payloads, args.timeout, drafts, args.review_database_url, *variants)
            finally:
                ingest.stop()
    except StackError as error:
        _LOGGER.error("the local stack did not start: %s", error)
        return 2
    except KeyboardInterrupt:
        _LOGGER.warning("interrupted")
        return 130
    finally:
        _LOGGER.info("emulators stopped")


def _await_desk(sessions, chat_ids: set[str], timeout: float = 30.0) -> set[str]:
    """Waits until the desk's ingest has stored every draft in `chat_ids`; returns those it stored."""
    deadline = time.monotonic() + timeout
    while True:
        with sessions() as session:
            stored = set(session.scalars(select(Draft.chat_id).where(Draft.chat_id.in_(chat_ids))))
        if stored == chat_ids or time.monotonic() > deadline:
            return stored
        time.sleep(0.5)


def _run(
    stack: LocalStack, model: str | None, payloads: list[bytes], timeout: float, review_sessions, review_url: str,
    *job_flags: str,
) -> int:
    models = model or f"{SHIPPED_TRIAGE_LORA.name} (triage) and {SHIPPED_APOLOGY_LORA.name} (apology)"
    _LOGGER.info("starting the streaming job (BundleBasedDirectRunner) with %s", models)
    # No warm-up at load: on a laptop's CPU, compiling every shape a stream could meet first takes minutes; the demo
    # compiles the few its 37 chats meet as they come.
    job = StreamingJob(stack, model, "--share_model_across_processes=false", "--warm_up=false", *job_flags)
    try:
        stack.publish(payloads)
        _LOGGER.info(
            "published %d messages to %s; the model loads with the first bundle",
            len(payloads), stack.resources.input_topic,
        )
        tally = Tally(stack, payloads)
        complete = tally.wait(job, timeout, progress=_Progress())
        time.sleep(2)  # anything written twice would show up now
        tally.poll()
        report(tally)
        drafts = {review["chat_id"] for review in tally.reviews}
        stored = _await_desk(review_sessions, drafts)
        _LOGGER.info(
            "review desk: %d of %d drafts stored in its database (%s). To decide them in a browser: `make review`, "
            "then open http://127.0.0.1:8000", len(stored), len(drafts), review_url,
        )
        if not complete:
            _LOGGER.error("not every message was accounted for within %.0f s", timeout)
        return 0 if complete and tally.accounted == tally.expected and stored == drafts else 1
    finally:
        _LOGGER.info("cancelling the job …")
        _LOGGER.info("job cancelled in %.1f s", job.cancel())


if __name__ == "__main__":
    sys.exit(main())
