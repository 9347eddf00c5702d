"""The streaming job on the local stack: started in this process, its outputs accounted for, cancelled in seconds."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable

from apache_beam.runners.runner import PipelineResult

from local.stack import LocalStack
from pipeline import run
from pipeline.contracts import MAX_KEPT_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES, DeadLetter

WAKE_UP = b"local-stack: wake up"


class StreamingJob:
    """`python -m pipeline.run` in this process (so the local BigQuery override applies), on BundleBasedDirectRunner."""

    def __init__(self, stack: LocalStack, model: str | None, *flags: str):
        """`model` None runs the job's default models."""
        chosen = [f"--model={model}"] if model else []
        argv = [*stack.resources.pipeline_flags(), *chosen, "--runner=BundleBasedDirectRunner", *flags]
        self._stack = stack
        self.result: PipelineResult = run.run(argv, **stack.bigquery_write_kwargs())
        self.error: BaseException | None = None
        # The DirectRunner reports a failed bundle only through wait_until_finish(), which blocks while it runs.
        threading.Thread(target=self._watch, name="watch-streaming-job", daemon=True).start()

    def _watch(self) -> None:
        try:
            self.result.wait_until_finish()
        except BaseException as error:
            self.error = error

    def cancel(self, timeout: float = 120.0) -> float:
        """Cancels the job; returns how long that took, in seconds.

        The runner's Pub/Sub read blocks in a pull for up to 30 s and `cancel()` waits for it, so while it waits
        this publishes a wake-up message each second: the pull returns and the runner stops. A wake-up the runner
        read is never processed (it takes no new work once shutdown is requested); the ones it did not read (a
        bundle still busy keeps `cancel()` waiting) are taken off the subscription here, so that a job started
        on it later does not dead-letter them.
        """
        started = time.monotonic()
        stopper = threading.Thread(target=self.result.cancel, name="cancel-streaming-job", daemon=True)
        stopper.start()
        stopper.join(0.5)
        while stopper.is_alive() and time.monotonic() - started < timeout:
            self._stack.publish([WAKE_UP])
            stopper.join(1.0)
        if stopper.is_alive():
            raise TimeoutError(f"the job did not stop within {timeout:.0f} s")
        self._stack.discard(self._stack.resources.input_subscription, WAKE_UP)
        return time.monotonic() - started


def message_key(payload: bytes) -> str:
    """How a published message is recognised in the outputs: its chat id, or its payload when it has no id.

    A payload over `MAX_PAYLOAD_BYTES` is never parsed, so its dead letter has no chat id: it is known by what that
    dead letter keeps of it, its first `MAX_KEPT_PAYLOAD_BYTES`.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        return payload[:MAX_KEPT_PAYLOAD_BYTES].decode("utf-8", errors="replace")
    try:
        fields = json.loads(payload)
    except ValueError:
        fields = None
    if isinstance(fields, dict) and fields.get("id") is not None and str(fields["id"]):
        return str(fields["id"])
    return payload.decode("utf-8", errors="replace")


def dead_letter_key(letter: DeadLetter) -> str:
    """The `message_key` of the message a dead letter stands for."""
    return letter.chat_id or letter.payload_bytes().decode("utf-8", errors="replace")


class Tally:
    """What the job has written so far, per output, checked against what was published."""

    def __init__(self, stack: LocalStack, payloads: list[bytes]):
        self._stack = stack
        self.expected = Counter(message_key(payload) for payload in payloads)
        self.rows: list[dict] = []
        self.reviews: list[dict] = []
        # Sentiment checks share the review topic; their chats are rows too, so they do not count as outputs.
        self.checks: list[dict] = []
        self.dead_letters: list[DeadLetter] = []
        self._review_keys: list[str] = []
        self._dead_letter_keys: list[str] = []

    def expect(self, payloads: list[bytes]) -> None:
        """Adds messages published since, for a job that keeps running (or one restarted on the same subscription)."""
        self.expected.update(message_key(payload) for payload in payloads)

    def poll(self) -> None:
        """Reads new review messages and dead letters from their subscriptions, and the table anew."""
        names = self._stack.resources
        for message in self._stack.pull(names.review_subscription):
            record = json.loads(message.data)
            if record.get("kind") == "check":
                self.checks.append(record)
                continue
            self.reviews.append(record)
            self._review_keys.append(message.attributes.get("chat_id", ""))
        for message in self._stack.pull(names.dead_letter_subscription):
            letter = DeadLetter.model_validate_json(message.data)
            self.dead_letters.append(letter)
            self._dead_letter_keys.append(dead_letter_key(letter))
        self.rows = self._stack.rows()

    @property
    def accounted(self) -> Counter:
        """How often each message key appears across the three outputs."""
        return Counter([row["chat_id"] for row in self.rows] + self._review_keys + self._dead_letter_keys)

    @property
    def missing(self) -> Counter:
        return self.expected - self.accounted

    @property
    def complete(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        done = sum((self.expected & self.accounted).values())
        return (
            f"accounted {done}/{sum(self.expected.values())}: {len(self.rows)} BigQuery rows, "
            f"{len(self.reviews)} drafts for review, {len(self.dead_letters)} dead letters"
        )

    def wait(
        self, job: StreamingJob, timeout: float, progress: Callable[[Tally], None] | None = None,
        interval: float = 2.0,
    ) -> bool:
        """Polls until every published message is accounted for (True) or `timeout` passes (False).

        Raises the job's error if it fails meanwhile.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if progress:
                progress(self)
            if job.error is not None:
                raise RuntimeError(f"the streaming job failed: {job.error}") from job.error
            if self.complete or time.monotonic() > deadline:
                return self.complete
            time.sleep(interval)
