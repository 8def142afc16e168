"""Watchers: K WatchPullRequest streams on one pull request, fan-out time of each new version.

The load generator's workers open the K streams (spread over many HTTP/2 connections) and wait
for each stream's first message (the current snapshot). Then this module changes the pull
request's title U times through the gateway, one command at a time. A reference consumer with
``isolation.level=read_committed`` tails the pull-requests topic and notes when each version
becomes visible, which is when its transaction committed (plus one fetch). The fan-out time of
a version is the time from that moment to its arrival at a watcher; "all watchers" is the last
arrival.

"That moment" is the first time anybody observed the commit: the reference consumer, the
command's COMPLETED response, or the earliest watcher (the gateway folds a result's events into
its read model before the snapshot arrives, so a watcher can beat a separate consumer by a few
milliseconds). ``spread`` is last minus first arrival among the watchers: the fan-out alone.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import grpc
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from bench import payloads
from bench.loadgen import LoadPool
from bench.stats import summarize
from bench.steps import Step
from prgate.kafka import codec
from prgate.kafka.settings import KafkaSettings
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc as svc_grpc
from prgate.v1 import commands_pb2


class VisibleVersions:
    """A read_committed tail of the pull-requests topic: when each version of one id appears."""

    def __init__(self, kafka: KafkaSettings, pull_request_id: str) -> None:
        self.seen: dict[int, float] = {}
        self._key = pull_request_id.encode()
        self._topic = kafka.topics.pull_requests
        self._consumer = Consumer(
            kafka.client_config(
                **{
                    "group.id": f"bench-visible-{uuid.uuid4().hex}",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "fetch.wait.max.ms": 5,
                }
            )
        )
        metadata = self._consumer.list_topics(self._topic, 10.0)
        partitions = metadata.topics[self._topic].partitions
        self._consumer.assign([TopicPartition(self._topic, p, OFFSET_END) for p in partitions])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-visible", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # consume(n, timeout) waits out the timeout unless n records come: take one, then
            # whatever else is already fetched, so each version is noted when it arrives.
            messages = self._consumer.consume(1, 0.05)
            if messages:
                messages += self._consumer.consume(100, 0)
            for msg in messages:
                if msg.error() is None and msg.key() == self._key:
                    snapshot = codec.decode_snapshot(msg.key(), msg.value(), msg.headers())
                    if snapshot is not None:
                        self.seen.setdefault(snapshot.version, time.time())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._consumer.close()


def measure(
    pool: LoadPool,
    gateway: str,
    kafka: KafkaSettings,
    watchers: int,
    updates: int,
    *,
    interval_s: float = 0.2,
) -> dict[str, Any]:
    """Open ``watchers`` streams, make ``updates`` versions, and time each version's fan-out."""
    with grpc.insecure_channel(gateway) as channel:
        stub = svc_grpc.PullRequestCommandServiceStub(channel)
        opened = stub.OpenPullRequest(payloads.open_request(999, 0), timeout=10.0)
        pull_request_id = opened.receipt.pull_request_id
        first_version = opened.receipt.result.version
        visible = VisibleVersions(kafka, pull_request_id)
        time.sleep(0.5)  # the reference consumer is positioned at the end

        completed: dict[int, float] = {}

        def make_versions() -> None:
            for n in range(updates):
                response = stub.ChangePullRequestTitle(
                    svc.ChangePullRequestTitleRequest(
                        command=commands_pb2.ChangePullRequestTitle(
                            pull_request_id=pull_request_id,
                            title=f"Watched change, revision {n}",
                            changed_by="author-999",
                        ),
                        options=svc.CommandOptions(response_mode=payloads.COMPLETED),
                    ),
                    timeout=10.0,
                )
                completed[response.receipt.result.version] = time.time()
                time.sleep(interval_s)

        step = Step(
            name=f"watchers-{watchers}",
            system="prgate",
            kind="watch",
            duration_s=updates * interval_s + 30.0,
            watch_id=pull_request_id,
            watchers=watchers,
            watch_last_version=first_version + updates,
        )
        try:
            outcome = pool.run(step, on_ready=make_versions)
            time.sleep(0.2)
        finally:
            visible.close()
    all_arrived: list[float] = []
    each: list[float] = []
    spread: list[float] = []
    complete = 0
    for version in range(first_version + 1, first_version + updates + 1):
        arrivals = outcome.arrivals.get(version, [])
        observed = [t for t in (visible.seen.get(version), completed.get(version)) if t]
        if not arrivals or not observed:
            continue
        committed = min(*observed, *arrivals)
        delays = [(t - committed) * 1000 for t in arrivals]
        each += delays
        if len(arrivals) >= watchers:
            complete += 1
            all_arrived.append(max(delays))
            spread.append((max(arrivals) - min(arrivals)) * 1000)
    return {
        "watchers": watchers,
        "subscribed": outcome.subscribed,
        "updates": updates,
        "versions_reaching_all": complete,
        "all_watchers_ms": summarize(all_arrived),
        "each_watcher_ms": summarize(each),
        "spread_ms": summarize(spread),
        "errors": dict(outcome.errors),
        "loadgen_cpu_s": round(outcome.cpu_s, 3),
    }
