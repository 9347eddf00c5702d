"""Reading a Pub/Sub subscription in a batch job: pull what is there, acknowledge it, stop when it is empty."""

from __future__ import annotations

import apache_beam as beam

from pipeline import METRICS_NAMESPACE as NAMESPACE

# Messages per pull (Pub/Sub's maximum is 1,000).
PULL_MAX_MESSAGES = 500
# Seconds one pull waits for messages. Pub/Sub may answer a pull with nothing while messages are still there,
# so the subscription counts as drained only after this many empty pulls in a row.
PULL_TIMEOUT_SECS = 5.0
EMPTY_PULLS_TO_STOP = 2


class _DrainFn(beam.DoFn):
    """A subscription path in; the data of every message waiting on it out, each acknowledged once emitted."""

    def __init__(self):
        self._pulled = beam.metrics.Metrics.counter(NAMESPACE, "messages_drained")

    def setup(self):
        from google.cloud import pubsub

        self._client = pubsub.SubscriberClient()

    def process(self, subscription: str):
        from google.api_core.exceptions import DeadlineExceeded

        empty = 0
        while empty < EMPTY_PULLS_TO_STOP:
            try:
                response = self._client.pull(
                    subscription=subscription, max_messages=PULL_MAX_MESSAGES, timeout=PULL_TIMEOUT_SECS
                )
            except DeadlineExceeded:
                empty += 1
                continue
            received = list(response.received_messages)
            empty = 0 if received else empty + 1
            for message in received:
                yield message.message.data
            if received:
                self._pulled.inc(len(received))
                self._client.acknowledge(subscription=subscription, ack_ids=[message.ack_id for message in received])

    def teardown(self):
        self._client.close()


class ReadBacklog(beam.PTransform):
    """A batch source: the data of the messages on `subscription` when the job runs, each read once.

    Everything is pulled in one step and the Reshuffle after it is a barrier in a batch job: no later step runs
    before the drain ends, so what this job publishes (to a topic the subscription may listen to) is left for
    the next run. Messages are acknowledged as they are pulled: to be able to read them again should the job fail
    later, take a snapshot of the subscription first (README, "Replay errors").
    """

    def __init__(self, subscription: str):
        super().__init__()
        self._subscription = subscription

    def expand(self, begin):
        return (
            begin
            | "Subscription" >> beam.Create([self._subscription])
            | "Pull" >> beam.ParDo(_DrainFn())
            | "Barrier" >> beam.Reshuffle()
        )
