"""The local stack: the Pub/Sub emulator and bqemulator on free ports, and the topics, subscriptions and dataset.

    with LocalStack.start() as stack:      # both services up and ready, PUBSUB_EMULATOR_HOST set
        stack.create_resources()
        stack.publish([b'{"id": 1, ...}'])
    # both stopped by process id, even on error or Ctrl-C

Shared by `python -m local.demo` and the end-to-end tests; nothing here is shipped to Dataflow.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from local.bigquery import EmulatorBigQueryClient, emulator_client

_LOGGER = logging.getLogger(__name__)

PUBSUB_EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")
INSTALL_HINT = (
    "The Pub/Sub emulator (Java 17) is missing. On Debian/Ubuntu with Google Cloud's apt repository: "
    "`sudo apt-get install google-cloud-cli-pubsub-emulator openjdk-17-jre-headless`; with the gcloud CLI: "
    "`gcloud components install pubsub-emulator`; or point CHAT_TRIAGE_PUBSUB_EMULATOR at its "
    "`cloud-pubsub-emulator` script."
)
READY_TIMEOUT_SECS = 60.0


class StackError(RuntimeError):
    """A local service is missing, or did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pubsub_emulator_command() -> list[str]:
    """The emulator's start script: CHAT_TRIAGE_PUBSUB_EMULATOR, the Debian package's, or one on PATH."""
    candidates = [
        os.environ.get("CHAT_TRIAGE_PUBSUB_EMULATOR"), str(PUBSUB_EMULATOR), shutil.which("cloud-pubsub-emulator")
    ]
    script = next((path for path in candidates if path and Path(path).is_file()), None)
    if script is None:
        raise StackError(INSTALL_HINT)
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise StackError("Java is missing (the Pub/Sub emulator needs Java 17). " + INSTALL_HINT)
    return [script]


@dataclass
class Service:
    """A local service started in its own process group, with its log file."""

    name: str
    process: subprocess.Popen
    log: Path
    # PostgreSQL takes SIGTERM as "wait for every client to leave"; it stops at once on SIGINT.
    stop_signal: int = signal.SIGTERM

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        """Sends `sig` to the process group it leads."""
        os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """Its stop signal to the process group it leads, then SIGKILL if it has not gone after `timeout`."""
        if self.process.poll() is not None:
            return
        for sig, wait in ((self.stop_signal, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def start_service(
    name: str, command: list[str], log: Path, ready: Callable[[], bool], env: dict[str, str] | None = None,
    timeout: float = READY_TIMEOUT_SECS, stop_signal: int = signal.SIGTERM,
) -> Service:
    """Starts `command` in a new process group and waits until `ready()` is true; stops it again on failure."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
    service = Service(name, process, log, stop_signal)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                raise StackError(f"{name} exited with code {process.returncode}:\n{service.log_tail()}")
            if time.monotonic() > deadline:
                raise StackError(f"{name} was not ready after {timeout:.0f} s:\n{service.log_tail()}")
            time.sleep(0.2)
    except BaseException:
        service.stop()
        raise
    _LOGGER.info("%s ready (pid %d)", name, process.pid)
    return service


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def start_pubsub(workdir: Path) -> tuple[Service, str]:
    """The Pub/Sub emulator on a free port; returns it and its `host:port` for PUBSUB_EMULATOR_HOST."""
    command, port = pubsub_emulator_command(), free_port()
    service = start_service(
        "Pub/Sub emulator", [*command, "--host=127.0.0.1", f"--port={port}"], workdir / "pubsub.log",
        ready=lambda: _port_open(port), env={"JAVA_OPTS": os.environ.get("JAVA_OPTS", "-Xmx512m")},
    )
    return service, f"127.0.0.1:{port}"


def install_duckdb_spatial() -> None:
    """Installs DuckDB's spatial extension from its PyPI package, so bqemulator never downloads it."""
    import duckdb
    import duckdb_extensions

    with duckdb.connect() as connection:
        duckdb_extensions.import_extension("spatial", con=connection)


def start_bigquery(workdir: Path, project: str, port: int | None = None) -> tuple[Service, str]:
    """bqemulator on a free port (or `port`); returns it and its REST endpoint.

    Its tables live in a DuckDB file under `workdir`, so that it can be stopped and started again with its data.
    """
    install_duckdb_spatial()
    port = port or free_port()
    command = [
        sys.executable, "-m", "bqemulator", "start", "--rest-host=127.0.0.1", f"--rest-port={port}",
        "--grpc-port=0", "--persistent", f"--data-dir={workdir / 'bigquery'}", f"--project={project}",
        "--log-level=warning",
    ]
    # The avro extension would be downloaded at start; nothing here loads Avro.
    service = start_service(
        "BigQuery emulator", command, workdir / "bigquery.log",
        ready=lambda: _http_ok(f"http://127.0.0.1:{port}/readyz"), env={"BQEMU_ENABLE_FORMAT_EXTENSIONS": "false"},
    )
    return service, f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class Resources:
    """The names of everything the streaming job reads and writes on the local stack."""

    project: str = "chat-triage-local"
    dataset: str = "support"
    table: str = "triage"
    reviews_table: str = "reviews"

    def topic(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"

    def subscription(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    @property
    def input_topic(self) -> str:
        return self.topic("chats")

    @property
    def input_subscription(self) -> str:
        return self.subscription("chats-triage")

    @property
    def review_topic(self) -> str:
        return self.topic("review")

    @property
    def review_subscription(self) -> str:
        return self.subscription("review-agents")

    @property
    def review_desk_subscription(self) -> str:
        """The review desk's own subscription on the review topic (the demo's tally reads review-agents)."""
        return self.subscription("review-desk")

    @property
    def replies_topic(self) -> str:
        return self.topic("replies")

    @property
    def replies_subscription(self) -> str:
        """Stands in for whatever sends approved replies to customers (Pub/Sub keeps no message without one)."""
        return self.subscription("replies-sender")

    @property
    def reviews_table_name(self) -> str:
        return f"{self.project}:{self.dataset}.{self.reviews_table}"

    @property
    def dead_letter_topic(self) -> str:
        return self.topic("dead-letter")

    @property
    def dead_letter_subscription(self) -> str:
        return self.subscription("dead-letter-replay")

    @property
    def parked_topic(self) -> str:
        return self.topic("parked")

    @property
    def parked_subscription(self) -> str:
        return self.subscription("parked-review")

    @property
    def bigquery_table(self) -> str:
        return f"{self.project}:{self.dataset}.{self.table}"

    def pipeline_flags(self) -> list[str]:
        """The flags of `python -m pipeline.run` that name these resources."""
        return [
            f"--input_subscription={self.input_subscription}", f"--bigquery_table={self.bigquery_table}",
            f"--review_topic={self.review_topic}", f"--dead_letter_topic={self.dead_letter_topic}",
        ]


class LocalStack:
    """Both emulators, running; clients for them; the job's resources. Make one with `LocalStack.start()`."""

    def __init__(
        self, pubsub_host: str, bigquery_endpoint: str, resources: Resources, services: dict[str, Service],
        workdir: Path,
    ):
        self.pubsub_host = pubsub_host
        self.bigquery_endpoint = bigquery_endpoint
        self.resources = resources
        self._services = services
        self._workdir = workdir

    @classmethod
    @contextlib.contextmanager
    def start(cls, resources: Resources = Resources(), workdir: Path | None = None) -> Iterator[LocalStack]:
        """Starts both emulators and points this process's Pub/Sub clients at one; stops both on exit."""
        # Shared with the stack, so that a service it restarts is the one stopped on exit.
        services: dict[str, Service] = {}
        previous_host = os.environ.get("PUBSUB_EMULATOR_HOST")
        with contextlib.ExitStack() as cleanup:
            if workdir is None:
                workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="chat-triage-stack-")))
            cleanup.callback(_stop_all, services)
            services["pubsub"], pubsub_host = start_pubsub(workdir)
            services["bigquery"], bigquery_endpoint = start_bigquery(workdir, resources.project)
            os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_host
            cleanup.callback(_restore_env, "PUBSUB_EMULATOR_HOST", previous_host)
            yield cls(pubsub_host, bigquery_endpoint, resources, services, workdir)

    def for_resources(self, resources: Resources) -> LocalStack:
        """The same running services, with other resource names (a job of its own beside this one's)."""
        return LocalStack(self.pubsub_host, self.bigquery_endpoint, resources, self._services, self._workdir)

    def bigquery_outage(self, seconds: float) -> None:
        """Stops the BigQuery emulator, waits `seconds`, and starts it again on its port with its data."""
        self._services["bigquery"].stop()
        time.sleep(seconds)
        port = int(self.bigquery_endpoint.rsplit(":", 1)[1])
        self._services["bigquery"], _ = start_bigquery(self._workdir, self.resources.project, port)

    def pubsub_freeze(self, seconds: float) -> None:
        """Freezes the Pub/Sub emulator (SIGSTOP) for `seconds`: it answers nothing, then goes on as it was.

        Restarting it is no test: it keeps topics, subscriptions and messages in memory only.
        """
        self._services["pubsub"].signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            self._services["pubsub"].signal(signal.SIGCONT)

    @functools.cached_property
    def publisher(self):
        from google.cloud import pubsub

        return pubsub.PublisherClient()

    @functools.cached_property
    def subscriber(self):
        from google.cloud import pubsub

        return pubsub.SubscriberClient()

    @functools.cached_property
    def bigquery(self):
        """A google-cloud-bigquery client for the emulator (anonymous credentials)."""
        return emulator_client(self.bigquery_endpoint, self.resources.project)

    def bigquery_write_kwargs(self) -> dict:
        """What `WriteToBigQuery` needs to write to the emulator instead of bigquery.googleapis.com."""
        return {"test_client": EmulatorBigQueryClient(self.bigquery_endpoint, self.resources.project)}

    def create_resources(self) -> None:
        """The topics, the input subscription, a subscription on each output topic (the replay job's parked topic
        too; the review topic has a second one, the review desk's), the replies topic with one, and the dataset.

        The table is not created here: the job creates it from the contracts (CREATE_IF_NEEDED).
        """
        names = self.resources
        for topic, subscription in (
            (names.input_topic, names.input_subscription),
            (names.review_topic, names.review_subscription),
            (names.dead_letter_topic, names.dead_letter_subscription),
            (names.parked_topic, names.parked_subscription),
        ):
            self.publisher.create_topic(name=topic)
            self.subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=60)
        self.publisher.create_topic(name=names.replies_topic)
        for topic, subscription in (
            (names.review_topic, names.review_desk_subscription), (names.replies_topic, names.replies_subscription),
        ):
            self.subscriber.create_subscription(name=subscription, topic=topic, ack_deadline_seconds=60)
        self.bigquery.create_dataset(names.dataset, exists_ok=True)

    def publish(self, payloads: list[bytes], **attributes: str) -> list[str]:
        """Publishes each payload on the input topic; returns the message ids."""
        futures = [self.publisher.publish(self.resources.input_topic, payload, **attributes) for payload in payloads]
        return [future.result(timeout=30) for future in futures]

    def pull(self, subscription: str, max_messages: int = 100) -> list:
        """Pulls and acknowledges what is waiting on `subscription` (returns at once when nothing is)."""
        received = self._pull_unacknowledged(subscription, max_messages)
        if received:
            self.subscriber.acknowledge(subscription=subscription, ack_ids=[message.ack_id for message in received])
        return [message.message for message in received]

    def discard(self, subscription: str, payload: bytes) -> int:
        """Acknowledges the messages waiting on `subscription` whose data is `payload`, returns the others to it
        (redelivered at once); returns how many were discarded."""
        discarded = 0
        while messages := self._pull_unacknowledged(subscription):
            matching = [received.ack_id for received in messages if received.message.data == payload]
            others = [received.ack_id for received in messages if received.message.data != payload]
            if others:
                self.subscriber.modify_ack_deadline(subscription=subscription, ack_ids=others, ack_deadline_seconds=0)
            if not matching:
                return discarded
            self.subscriber.acknowledge(subscription=subscription, ack_ids=matching)
            discarded += len(matching)
        return discarded

    def _pull_unacknowledged(self, subscription: str, max_messages: int = 100) -> list:
        from google.api_core.exceptions import DeadlineExceeded

        try:
            response = self.subscriber.pull(
                subscription=subscription, max_messages=max_messages, return_immediately=True, timeout=10
            )
        except DeadlineExceeded:
            return []
        return list(response.received_messages)

    def rows(self, table: str | None = None) -> list[dict]:
        """Every row of the job's table (or of `table` in the dataset); none while it has not been created yet."""
        from google.api_core.exceptions import NotFound

        names = self.resources
        try:
            query = f"SELECT * FROM `{names.project}.{names.dataset}.{table or names.table}`"
            result = self.bigquery.query(query).result()
        except NotFound:
            return []
        return [dict(row) for row in result]


def _stop_all(services: dict[str, Service]) -> None:
    for service in reversed(list(services.values())):
        service.stop()


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
