"""Helpers of the processor's integration tests: commands, producing them as the gateway does,
tailing topics, and the exactly-once check over everything the processors wrote.
(Running processors: ``processor_runners``.)

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

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from prgate.kafka_settings import KafkaSettings
from prgate.v1 import commands_pb2
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.events_pb2 import EventEnvelope
from prgate.v1.pull_request_pb2 import CHECK_CONCLUSION_SUCCESS, PullRequest
from prgate.v1.results_pb2 import CommandResult
from processor.contract import (
    HEADER_CORRELATION_ID,
    HEADER_MESSAGE_TYPE,
    HEADER_REPLY_TO,
    TYPE_COMMAND_ENVELOPE,
)
from processor.domain import fold
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


# -- commands -------------------------------------------------------------------------------


def envelope(
    pull_request_id: str, command_id: str | None = None, **command: Any
) -> CommandEnvelope:
    """A CommandEnvelope; ``command`` is one keyword, the oneof field name, e.g.
    ``open_pull_request=OpenPullRequest(...)``."""
    env = CommandEnvelope(
        command_id=command_id or str(uuid.uuid4()), pull_request_id=pull_request_id
    )
    ((field, message),) = command.items()
    getattr(env, field).CopyFrom(message)
    env.issued_at.GetCurrentTime()
    return env


def open_pr(pr: str, author: str = "alice", title: str = "Add feature") -> CommandEnvelope:
    return envelope(
        pr,
        open_pull_request=commands_pb2.OpenPullRequest(
            repository="acme/widgets",
            title=title,
            description="d",
            author=author,
            source_branch=f"feature/{pr}",
            target_branch="main",
        ),
    )


def retitle(pr: str, title: str) -> CommandEnvelope:
    return envelope(
        pr,
        change_pull_request_title=commands_pb2.ChangePullRequestTitle(
            pull_request_id=pr, title=title, changed_by="alice"
        ),
    )


def approve(pr: str, reviewer: str) -> CommandEnvelope:
    return envelope(
        pr,
        approve_pull_request=commands_pb2.ApprovePullRequest(pull_request_id=pr, reviewer=reviewer),
    )


def check(pr: str, name: str, conclusion: int = CHECK_CONCLUSION_SUCCESS) -> CommandEnvelope:
    return envelope(
        pr,
        record_check_result=commands_pb2.RecordCheckResult(
            pull_request_id=pr, check_name=name, conclusion=conclusion
        ),
    )


def merge(pr: str, user: str = "bob") -> CommandEnvelope:
    return envelope(
        pr,
        merge_pull_request=commands_pb2.MergePullRequest(pull_request_id=pr, merged_by_user=user),
    )


def close(pr: str) -> CommandEnvelope:
    return envelope(
        pr, close_pull_request=commands_pb2.ClosePullRequest(pull_request_id=pr, actor="a")
    )


def reopen(pr: str) -> CommandEnvelope:
    return envelope(
        pr, reopen_pull_request=commands_pb2.ReopenPullRequest(pull_request_id=pr, actor="a")
    )


def stream_for(pr: str, length: int) -> list[CommandEnvelope]:
    """``length`` commands on one pull request that mostly succeed and sometimes are rejected:
    open, then check results, retitles, approvals (some by the author: rejected),
    close/reopen, and a merge at the end."""
    commands = [open_pr(pr, author="alice")]
    step = 0
    while len(commands) < length - 1:
        kind = step % 7
        if kind in (0, 1):
            commands.append(check(pr, f"ci-{step % 3}"))
        elif kind == 2:
            commands.append(retitle(pr, f"title {step}"))
        elif kind == 3:
            commands.append(approve(pr, f"reviewer-{step % 4}"))
        elif kind == 4:
            commands.append(close(pr))
        elif kind == 5:
            commands.append(reopen(pr))
        else:
            commands.append(approve(pr, "alice"))
        step += 1
    commands.append(merge(pr))
    return commands


def interleave(streams: Iterable[list[CommandEnvelope]]) -> list[CommandEnvelope]:
    """Round-robin over per-PR streams, keeping each stream's order."""
    lists = [list(s) for s in streams]
    out: list[CommandEnvelope] = []
    for i in range(max(len(s) for s in lists)):
        out.extend(s[i] for s in lists if i < len(s))
    return out


# -- producing ------------------------------------------------------------------------------


def command_headers(command_id: str, reply_to: str) -> list[tuple[str, str | bytes | None]]:
    return [
        (HEADER_CORRELATION_ID, command_id.encode()),
        (HEADER_REPLY_TO, reply_to.encode()),
        (HEADER_MESSAGE_TYPE, TYPE_COMMAND_ENVELOPE.encode()),
    ]


class CommandProducer:
    """Produces commands as the gateway does: key = pull request id, the fixed headers."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._producer = Producer(
            kafka.client_config(**{"enable.idempotence": True, "acks": "all", "linger.ms": 2})
        )
        self.errors: list[str] = []

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def send(self, env: CommandEnvelope) -> None:
        self.raw(
            env.pull_request_id.encode(),
            env.SerializeToString(),
            command_headers(env.command_id, self._kafka.topics.results),
        )

    def raw(
        self, key: bytes | None, value: bytes | None, headers: list[tuple[str, str | bytes | None]]
    ) -> None:
        self._producer.produce(
            self._kafka.topics.commands,
            value=value,
            key=key,
            headers=headers,
            on_delivery=self._delivered,
        )
        self._producer.poll(0)

    def flush(self, timeout: float = 15.0) -> None:
        remaining = self._producer.flush(timeout)
        assert remaining == 0 and not self.errors, (remaining, self.errors)

    def close(self) -> None:
        self.flush()
        self._producer.close()


def send_all(kafka: KafkaSettings, commands: Iterable[CommandEnvelope]) -> None:
    producer = CommandProducer(kafka)
    for env in commands:
        producer.send(env)
    producer.close()


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]


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
                    {
                        k: v if not isinstance(v, str) else v.encode()
                        for k, v in msg.headers() or []
                    },
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
    out = []
    for rec in records:
        result = CommandResult()
        result.ParseFromString(rec.value or b"")
        out.append(result)
    return out


def events_of(records: Iterable[Rec]) -> list[EventEnvelope]:
    out = []
    for rec in records:
        event = EventEnvelope()
        event.ParseFromString(rec.value or b"")
        out.append(event)
    return out


def snapshots_of(records: Iterable[Rec]) -> list[PullRequest]:
    out = []
    for rec in records:
        state = PullRequest()
        state.ParseFromString(rec.value or b"")
        out.append(state)
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
    """The guarantees of DESIGN.md over everything the processors wrote for ``commands``:
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
