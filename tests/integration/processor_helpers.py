"""Helpers of the processor's integration tests: their settings, tailing topics, and the
exactly-once check over everything the processors wrote. (Commands and producing them:
``processor_commands``; running processors: ``processor_runners``.)

Every wait is bounded and fails the test with what was seen so far.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from prgate.domain import fold
from prgate.kafka import codec
from prgate.kafka.settings import KafkaSettings
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.events_pb2 import EventEnvelope
from prgate.v1.pull_request_pb2 import PullRequest
from prgate.v1.results_pb2 import CommandResult
from processor.settings import ProcessorSettings

# Short timeouts so that failover fits the test budget (the broker's minimum session is 6 s).
FAST = {"session_timeout_ms": 6000, "transaction_timeout_ms": 10000, "log_level": "INFO"}


def processor_settings(kafka: KafkaSettings, **overrides: Any) -> ProcessorSettings:
    """ProcessorSettings on ``kafka``'s cluster and prefix, with a group of this test alone."""
    values: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "topic_prefix": kafka.topic_prefix,
        "partitions": kafka.partitions,
        "group_id": f"{kafka.topic_prefix}processor",
        "instance_id": "p1",
        **FAST,
    }
    values.update(overrides)
    return ProcessorSettings(**values)


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: codec.Headers  # as received

    def header(self, name: str) -> str | None:
        return codec.header(self.headers, name)


class TopicTail:
    """Reads one topic from the beginning (all partitions, no group) and keeps every record."""

    def __init__(self, kafka: KafkaSettings, topic: str, isolation: str = "read_committed") -> None:
        self.topic = topic
        self.records: list[Rec] = []
        self._consumer = Consumer(
            kafka.client_config(
                **{
                    "group.id": f"test-tail-{uuid.uuid4().hex}",
                    "enable.auto.commit": False,
                    "isolation.level": isolation,
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 20,
                }
            )
        )
        metadata = self._consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        self._eof: set[int] = set()
        self._partitions = set(partitions)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])

    def poll(self, timeout: float = 0.2) -> None:
        for msg in self._consumer.consume(500, timeout):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof.add(msg.partition() or 0)
                continue
            self._eof.discard(msg.partition() or 0)
            self.records.append(
                Rec(
                    self.topic,
                    msg.partition() or 0,
                    msg.offset() or 0,
                    msg.key(),
                    msg.value(),
                    list(msg.headers() or []),
                )
            )

    def drain(self, timeout: float = 10.0) -> list[Rec]:
        """Read until every partition reported its end (bounded)."""
        deadline = time.monotonic() + timeout
        while self._eof != self._partitions and time.monotonic() < deadline:
            self.poll()
        return self.records

    def wait_until(
        self, predicate: Callable[[list[Rec]], bool], timeout: float, what: str
    ) -> list[Rec]:
        deadline = time.monotonic() + timeout
        while not predicate(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; "
                    f"have {len(self.records)} records"
                )
            self.poll()
        return self.records

    def close(self) -> None:
        self._consumer.close()


@contextmanager
def tail(
    kafka: KafkaSettings, topic: str, isolation: str = "read_committed"
) -> Iterator[TopicTail]:
    t = TopicTail(kafka, topic, isolation)
    try:
        yield t
    finally:
        t.close()


def results_of(records: Iterable[Rec]) -> list[CommandResult]:
    return [codec.decode_result(rec.value, rec.headers) for rec in records]


def events_of(records: Iterable[Rec]) -> list[EventEnvelope]:
    return [codec.decode_event(rec.value, rec.headers) for rec in records]


def snapshots_of(records: Iterable[Rec]) -> list[PullRequest]:
    """The snapshots in ``records`` (a tombstone fails the test: the processor writes none)."""
    out = []
    for rec in records:
        snapshot = codec.decode_snapshot(rec.key, rec.value, rec.headers)
        assert snapshot is not None, f"tombstone at {rec.topic}/{rec.partition}@{rec.offset}"
        out.append(snapshot)
    return out


def wait_results(
    kafka: KafkaSettings, command_ids: set[str], timeout: float
) -> list[CommandResult]:
    """Every committed result on the results topic once all of ``command_ids`` have one."""
    with tail(kafka, kafka.topics.results) as t:
        t.wait_until(
            lambda recs: command_ids <= {r.key.decode() for r in recs if r.key},
            timeout,
            f"results of {len(command_ids)} commands",
        )
        return results_of(t.drain())


def assert_exactly_once(
    kafka: KafkaSettings, commands: list[CommandEnvelope], timeout: float
) -> dict[str, int]:
    """The guarantees of docs/contract.md over everything the processors wrote for ``commands``:
    one result per command, per pull request events with versions 1..n (no gap, no repeat),
    each event caused by a command that SUCCEEDED and listed it, and the last snapshot equal
    to the fold of the events (ignoring recent_commands). Returns counts for the report."""
    ids = {c.command_id for c in commands}
    results = wait_results(kafka, ids, timeout)
    per_command = Counter(r.command_id for r in results)
    repeated = {cid: n for cid, n in per_command.items() if n != 1}
    assert not repeated, f"commands with more than one result: {list(repeated.items())[:5]}"
    assert set(per_command) == ids

    with tail(kafka, kafka.topics.events) as t:
        events = events_of(t.drain())
    by_pr: dict[str, list[EventEnvelope]] = defaultdict(list)
    for event in events:
        by_pr[event.pull_request_id].append(event)
    for pr, pr_events in by_pr.items():
        versions = [e.version for e in pr_events]
        assert versions == list(range(1, len(versions) + 1)), f"{pr}: versions {versions}"
        assert len({e.event_id for e in pr_events}) == len(pr_events)

    result_events = {(e.pull_request_id, e.version): e for r in results for e in r.events}
    assert result_events == {(e.pull_request_id, e.version): e for e in events}

    with tail(kafka, kafka.topics.pull_requests) as t:
        snapshots = snapshots_of(t.drain())
    last: dict[str, PullRequest] = {}
    for snap in snapshots:
        last[snap.pull_request_id] = snap
    for pr, pr_events in by_pr.items():
        expected = fold(pr_events)
        assert expected is not None
        got = PullRequest()
        got.CopyFrom(last[pr])
        del got.recent_commands[:]
        assert got == expected, f"{pr}: snapshot differs from the fold of its events"
    states = Counter(r.state for r in results)
    return {
        "commands": len(ids),
        "results": len(results),
        "events": len(events),
        "snapshots": len(snapshots),
        "pull_requests": len(by_pr),
        "succeeded": states[2],
        "rejected": states[3],
    }


def count_records(kafka: KafkaSettings, topic: str, isolation: str) -> int:
    with tail(kafka, topic, isolation) as t:
        return len(t.drain())
