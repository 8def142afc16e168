"""What every fault test checks afterwards, written once: read a prefix's topics back with
``read_committed`` and hold them against what the gateway told its clients.

    ledger = Ledger()                   # the load generator records every call in it
    ...inject faults...
    verdict = verify(kafka, ledger)     # waits (bounded) for the accepted commands' results
    verdict.assert_ok()

Invariants (DESIGN.md, "Consistency and delivery"):

- every command the gateway reported ACCEPTED or SUCCEEDED (or DEADLINE_EXCEEDED with reason
  RESULT_NOT_IN_TIME, which says "accepted, result late") has exactly one terminal result that
  is not flagged ``duplicate``; a ``duplicate=True`` answer exists only for a command id that
  was sent more than once (an idempotent retry);
- no command id, accepted or not, has two non-duplicate results;
- per pull request the events topic holds versions 1..n in offset order: no gap, no repeat,
  no event id twice;
- the events of a command are exactly the events in its SUCCEEDED result, and every event was
  caused by a command that SUCCEEDED;
- the compacted topic's last snapshot of each pull request equals the fold of its events
  (ignoring ``recent_commands``, the processor's bookkeeping), at version n.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from prgate.kafka_settings import KafkaSettings
from prgate.v1.events_pb2 import EventEnvelope
from prgate.v1.outcome_pb2 import COMMAND_STATE_SUCCEEDED, CommandState
from prgate.v1.pull_request_pb2 import PullRequest
from prgate.v1.results_pb2 import CommandResult
from processor.domain import fold

TERMINAL_STATES = frozenset({2, 3, 4})  # SUCCEEDED, REJECTED, FAILED


# -- what the clients were told ---------------------------------------------------------------


@dataclass
class CommandEntry:
    """One command id as the clients saw it, over every call that carried it."""

    command_id: str
    rpc: str
    pull_request_id: str = ""
    sends: int = 0
    # The gateway said the command is durable on Kafka (ACCEPTED / SUCCEEDED receipt, or
    # DEADLINE_EXCEEDED with RESULT_NOT_IN_TIME).
    accepted: bool = False
    outcomes: list[str] = field(default_factory=list)


class Ledger:
    """Thread-safe record of every command call a test made (by command id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: dict[str, CommandEntry] = {}
        self.calls = 0

    def record(
        self,
        command_id: str,
        rpc: str,
        outcome: str,
        *,
        accepted: bool,
        pull_request_id: str = "",
    ) -> None:
        with self._lock:
            entry = self.entries.setdefault(command_id, CommandEntry(command_id, rpc))
            entry.sends += 1
            entry.accepted = entry.accepted or accepted
            entry.outcomes.append(outcome)
            entry.pull_request_id = entry.pull_request_id or pull_request_id
            self.calls += 1

    def accepted_ids(self) -> set[str]:
        with self._lock:
            return {c for c, e in self.entries.items() if e.accepted}

    def outcome_counts(self) -> Counter[str]:
        with self._lock:
            return Counter(o for e in self.entries.values() for o in e.outcomes)

    def snapshot(self) -> dict[str, CommandEntry]:
        with self._lock:
            return dict(self.entries)


# -- reading topics ---------------------------------------------------------------------------


def _reader(kafka: KafkaSettings) -> Consumer:
    return Consumer(
        kafka.client_config(
            **{
                "group.id": f"faults-verify-{uuid.uuid4().hex}",  # assign only, never joins
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 50,
            }
        )
    )


def read_topic(
    kafka: KafkaSettings,
    topic: str,
    *,
    timeout: float = 30.0,
    until: Callable[[list[Message]], bool] | None = None,
) -> list[Message]:
    """Every committed record of ``topic``, in offset order per partition.

    Reads until every partition reported EOF (with read_committed: the last stable offset)
    and ``until(records)`` holds, then returns. Fails the test when that does not happen
    within ``timeout`` seconds, so a caller never asserts on a partial read.
    """
    consumer = _reader(kafka)
    try:
        metadata = consumer.list_topics(topic, timeout=min(timeout, 10.0))
        topic_md = metadata.topics.get(topic)
        if topic_md is None or topic_md.error is not None:
            raise AssertionError(f"topic {topic}: {topic_md.error if topic_md else 'missing'}")
        partitions = sorted(topic_md.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        records: list[Message] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                err = msg.error()
                if err is None:
                    records.append(msg)
                    at_end.discard(msg.partition() or 0)
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                else:
                    raise AssertionError(f"reading {topic}: {err}")
            if len(at_end) == len(partitions) and (until is None or until(records)):
                return records
        raise AssertionError(
            f"reading {topic}: not complete within {timeout:.0f}s "
            f"({len(records)} records, partitions at end {sorted(at_end)} of {partitions})"
        )
    finally:
        consumer.close()


def high_watermarks(kafka: KafkaSettings, topic: str, timeout: float = 10.0) -> int:
    """Sum of the high watermarks of ``topic``: grows by one for every record produced."""
    consumer = _reader(kafka)
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        total = 0
        for partition in metadata.topics[topic].partitions:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout, cached=False
            )
            total += high
        return total
    finally:
        consumer.close()


def results_of(messages: Iterable[Message]) -> list[CommandResult]:
    return [CommandResult.FromString(m.value()) for m in messages if m.value() is not None]


def wait_for_results(
    kafka: KafkaSettings, command_ids: set[str], timeout: float = 60.0
) -> list[CommandResult]:
    """All results on the results topic, once every id of ``command_ids`` has one.

    Fails (with the missing ids) when they are not all there within ``timeout`` seconds.
    """

    def complete(records: list[Message]) -> bool:
        seen = {r.command_id for r in results_of(records)}
        return command_ids <= seen

    try:
        return results_of(read_topic(kafka, kafka.topics.results, timeout=timeout, until=complete))
    except AssertionError:
        seen = {r.command_id for r in results_of(read_topic(kafka, kafka.topics.results))}
        missing = sorted(command_ids - seen)
        raise AssertionError(
            f"{len(missing)} accepted commands have no result after {timeout:.0f}s: {missing[:10]}"
        ) from None


# -- the invariants ---------------------------------------------------------------------------


def _public(entity: PullRequest) -> PullRequest:
    copy = PullRequest()
    copy.CopyFrom(entity)
    copy.ClearField("recent_commands")
    return copy


@dataclass
class Verdict:
    """The numbers of one verification and every broken invariant found."""

    commands: int = 0
    accepted: int = 0
    results: int = 0
    completed: int = 0  # accepted commands with their terminal result
    succeeded: int = 0
    flagged_duplicates: int = 0
    events: int = 0
    pull_requests: int = 0
    lost: list[str] = field(default_factory=list)
    double_results: list[str] = field(default_factory=list)
    unexpected_duplicates: list[str] = field(default_factory=list)
    duplicated_events: int = 0
    version_errors: list[str] = field(default_factory=list)
    event_result_errors: list[str] = field(default_factory=list)
    snapshot_errors: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out: list[str] = []
        for name in (
            "lost",
            "double_results",
            "unexpected_duplicates",
            "version_errors",
            "event_result_errors",
            "snapshot_errors",
        ):
            items: list[str] = getattr(self, name)
            if items:
                out.append(f"{name} ({len(items)}): {items[:5]}")
        if self.duplicated_events:
            out.append(f"duplicated_events: {self.duplicated_events}")
        return out

    def assert_ok(self) -> None:
        problems = self.problems()
        assert not problems, "invariants broken:\n  " + "\n  ".join(problems)

    def summary(self) -> str:
        return (
            f"commands={self.commands} accepted={self.accepted} completed={self.completed} "
            f"results={self.results} succeeded={self.succeeded} events={self.events} "
            f"pull_requests={self.pull_requests} flagged_duplicates={self.flagged_duplicates} "
            f"lost={len(self.lost)} duplicated_events={self.duplicated_events}"
        )


def verify(
    kafka: KafkaSettings,
    ledger: Ledger,
    *,
    result_timeout: float = 60.0,
    ignore_keys: frozenset[str] = frozenset(),
) -> Verdict:
    """Wait (bounded) for the accepted commands' results, then check every invariant."""
    entries = ledger.snapshot()
    accepted = {c for c, e in entries.items() if e.accepted}
    results = wait_for_results(kafka, accepted, timeout=result_timeout)
    # Commands the ledger could not count as accepted (e.g. ACCEPT_NOT_CONFIRMED) may still be
    # processed while we read; events and snapshots are compared only once two reads of the
    # events, around the read of the snapshots, agree (bounded).
    for _ in range(QUIET_TRIES):
        events = _read_events(kafka)
        snapshots = _read_snapshots(kafka, ignore_keys)
        if len(_read_events(kafka)) == len(events):
            break
        time.sleep(QUIET_PAUSE_S)
    return check(entries, results, events, snapshots)


QUIET_TRIES = 20
QUIET_PAUSE_S = 0.5


def _read_events(kafka: KafkaSettings) -> list[EventEnvelope]:
    return [
        EventEnvelope.FromString(m.value())
        for m in read_topic(kafka, kafka.topics.events)
        if m.value() is not None
    ]


def _read_snapshots(kafka: KafkaSettings, ignore_keys: frozenset[str]) -> dict[str, PullRequest]:
    snapshots: dict[str, PullRequest] = {}
    for m in read_topic(kafka, kafka.topics.pull_requests):
        key = (m.key() or b"").decode()
        if key in ignore_keys:
            continue
        value = m.value()
        if value is None:
            snapshots.pop(key, None)
        else:
            snapshots[key] = PullRequest.FromString(value)
    return snapshots


def check(
    entries: dict[str, CommandEntry],
    results: list[CommandResult],
    events: list[EventEnvelope],
    snapshots: dict[str, PullRequest],
) -> Verdict:
    """The invariants over what was read (pure, so it is easy to test on its own)."""
    verdict = Verdict(commands=len(entries), results=len(results), events=len(events))
    originals: dict[str, list[CommandResult]] = defaultdict(list)
    duplicates: Counter[str] = Counter()
    for result in results:
        if result.state not in TERMINAL_STATES:
            verdict.event_result_errors.append(
                f"{result.command_id}: result state {CommandState.Name(result.state)}"
            )
        if result.duplicate:
            duplicates[result.command_id] += 1
        else:
            originals[result.command_id].append(result)
    verdict.flagged_duplicates = sum(duplicates.values())
    verdict.succeeded = sum(
        1 for rs in originals.values() if rs[0].state == COMMAND_STATE_SUCCEEDED
    )

    for command_id, entry in entries.items():
        if entry.accepted:
            verdict.accepted += 1
            if originals.get(command_id):
                verdict.completed += 1
            else:
                verdict.lost.append(f"{command_id} ({entry.rpc}, told {entry.outcomes})")
    for command_id, found in originals.items():
        if len(found) > 1:
            verdict.double_results.append(f"{command_id}: {len(found)} non-duplicate results")
    for command_id, count in duplicates.items():
        entry = entries.get(command_id)
        if entry is None or entry.sends < 2:
            verdict.unexpected_duplicates.append(
                f"{command_id}: {count} duplicate=True results, sent "
                f"{entry.sends if entry else 0} time(s)"
            )

    _check_events(verdict, originals, events)
    _check_snapshots(verdict, events, snapshots)
    return verdict


def _check_events(
    verdict: Verdict, originals: dict[str, list[CommandResult]], events: list[EventEnvelope]
) -> None:
    by_pr: dict[str, list[EventEnvelope]] = defaultdict(list)
    by_command: dict[str, set[str]] = defaultdict(set)
    seen_ids: set[str] = set()
    for event in events:
        if event.event_id in seen_ids:
            verdict.duplicated_events += 1
        seen_ids.add(event.event_id)
        by_pr[event.pull_request_id].append(event)
        by_command[event.command_id].add(event.event_id)
    verdict.pull_requests = len(by_pr)
    for pr, history in by_pr.items():
        versions = [e.version for e in history]
        repeats = len(versions) - len(set(versions))
        verdict.duplicated_events += repeats
        if versions != list(range(1, len(versions) + 1)):
            verdict.version_errors.append(f"{pr}: versions {versions[:20]}")
    for command_id, event_ids in by_command.items():
        found = originals.get(command_id)
        if not found or found[0].state != COMMAND_STATE_SUCCEEDED:
            verdict.event_result_errors.append(f"{command_id}: events without a SUCCEEDED result")
            continue
        in_result = {e.event_id for e in found[0].events}
        if in_result != event_ids:
            verdict.event_result_errors.append(
                f"{command_id}: result names {len(in_result)} events, topic has {len(event_ids)}"
            )
    for command_id, found in originals.items():
        result = found[0]
        if (
            result.state == COMMAND_STATE_SUCCEEDED
            and result.events
            and command_id not in by_command
        ):
            verdict.event_result_errors.append(
                f"{command_id}: SUCCEEDED with {len(result.events)} events, none on the topic"
            )


def _check_snapshots(
    verdict: Verdict, events: list[EventEnvelope], snapshots: dict[str, PullRequest]
) -> None:
    by_pr: dict[str, list[EventEnvelope]] = defaultdict(list)
    for event in events:
        by_pr[event.pull_request_id].append(event)
    for pr in sorted(set(by_pr) | set(snapshots)):
        history = by_pr.get(pr, [])
        snapshot = snapshots.get(pr)
        if snapshot is None:
            verdict.snapshot_errors.append(f"{pr}: {len(history)} events but no snapshot")
            continue
        if not history:
            verdict.snapshot_errors.append(f"{pr}: snapshot v{snapshot.version} without events")
            continue
        folded = fold(history)
        assert folded is not None
        if _public(folded) != _public(snapshot):
            verdict.snapshot_errors.append(
                f"{pr}: snapshot v{snapshot.version} != fold of {len(history)} events "
                f"(v{folded.version})"
            )


class OffsetProbe:
    """Counts the records of one topic (sum of high watermarks), reusing one consumer.

    ``count()`` before and after a call tells whether the call put anything on the topic.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, timeout: float = 10.0) -> None:
        self._topic = topic
        self._timeout = timeout
        self._consumer = _reader(kafka)
        metadata = self._consumer.list_topics(topic, timeout=timeout)
        self._partitions = sorted(metadata.topics[topic].partitions)

    def count(self) -> int:
        total = 0
        for partition in self._partitions:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, partition), timeout=self._timeout, cached=False
            )
            total += high
        return total

    def close(self) -> None:
        self._consumer.close()
