"""The archive against a real broker: SIGKILL under load, two members, bad and newer records.

Every check counts against the topics: what a read_committed reader sees of each topic must be
in its table exactly once, (partition, offset) for (partition, offset), with the same bytes.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from deltalake import DeltaTable
from helpers.ids import bound_id
from helpers.kafka import consume_all, produce, reliable_producer
from helpers.logs import log_events

from prgate.kafka import codec
from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings
from prgate.v1 import commands_pb2, events_pb2, results_pb2
from tests.integration.archive_helpers import (
    committed_offsets,
    duplicates,
    start_archive,
    wait_archived,
)

pytestmark = pytest.mark.kafka


def command(n: int, prefix: str = "c") -> codec.Record:
    pr = f"pr-{n % 17}"
    envelope = commands_pb2.CommandEnvelope(
        command_id=bound_id(f"{prefix}-{n}", pr), pull_request_id=pr, caller="load",
        approve_pull_request=commands_pb2.ApprovePullRequest(pull_request_id=pr, reviewer="bob"),
    )  # fmt: skip
    return codec.command_record(Topics().commands, envelope, reply_to="r")


class Load(threading.Thread):
    """Commands from a plain idempotent producer (as the gateway writes them), events and
    results in committed transactions (as the processor writes them), and now and then an
    aborted transaction from a producer of its own (offset gaps a read_committed reader
    skips)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        super().__init__(name="archive-load", daemon=True)
        self.kafka = kafka
        self.stop = threading.Event()
        self.produced = 0
        self.error: BaseException | None = None

    def _transactional(self, name: str) -> Producer:
        producer = Producer(
            self.kafka.client_config(
                **{"transactional.id": f"{self.kafka.topic_prefix}{name}", "linger.ms": 5}
            )
        )
        producer.init_transactions(30)
        return producer

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _run(self) -> None:
        topics = self.kafka.topics
        plain = reliable_producer(self.kafka)
        txn = self._transactional("load")
        n = 0
        while not self.stop.is_set():
            for _ in range(20):
                r = command(n)
                plain.produce(topics.commands, key=r.key, value=r.value, headers=r.headers)
                n += 1
            plain.poll(0)
            txn.begin_transaction()
            for i in range(10):
                event = events_pb2.EventEnvelope(event_id=f"e-{n}-{i}", pull_request_id="pr-1",
                                                 version=i + 1, command_id=f"c-{n}")  # fmt: skip
                e = codec.event_record(topics.events, event)
                txn.produce(e.topic, key=e.key, value=e.value, headers=e.headers)
                result = results_pb2.CommandResult(command_id=f"c-{n}-{i}", pull_request_id="pr-1")
                r = codec.result_record(topics.results, result, f"c-{n}-{i}")
                txn.produce(r.topic, key=r.key, value=r.value, headers=r.headers)
            txn.commit_transaction(30)
            self.produced += 40
            if n % 400 == 0:  # an aborted transaction, on a producer of its own
                aborter = self._transactional(f"abort-{n}")
                aborter.begin_transaction()
                for i in range(5):
                    aborter.produce(topics.events, key=b"pr-1", value=b"aborted %d" % i)
                aborter.abort_transaction(30)
            time.sleep(0.01)
        assert plain.flush(30) == 0


def wait_produced(load: Load, count: int, timeout: float = 120.0) -> None:
    """Until ``load`` has produced ``count`` records; fails on its error or the timeout."""
    deadline = time.monotonic() + timeout
    while load.produced < count:
        assert load.error is None, load.error
        assert load.is_alive(), "the load stopped"
        assert time.monotonic() < deadline, f"load produced {load.produced} of {count} records"
        time.sleep(0.05)


def assert_exactly_once(kafka: KafkaSettings, root: Path) -> dict[str, int]:
    """Every committed record of each topic in its table once, with its bytes; rows per table."""
    expected = committed_offsets(kafka)
    archived = wait_archived(root, expected, timeout=90)
    for table, offsets in expected.items():
        assert duplicates(archived[table]) == [], table
        assert archived[table] == offsets, table
    sent = {
        (m.partition(), m.offset()): m.value() for m in consume_all(kafka, kafka.topics.commands)
    }
    stored = DeltaTable(str(root / "commands")).to_pyarrow_table(
        columns=["kafka_partition", "kafka_offset", "raw"]
    ).to_pylist()  # fmt: skip
    assert {(r["kafka_partition"], r["kafka_offset"]): r["raw"] for r in stored} == sent
    return {table: len(offsets) for table, offsets in expected.items()}


def test_sigkill_under_load_then_restart_archives_every_offset_once(
    kafka_settings: KafkaSettings, ensured_topics: Topics, tmp_path: Path
) -> None:
    rng = random.Random()
    root = tmp_path / "archive"
    small = {"PRGATE_ARCHIVE_FLUSH_MAX_RECORDS": "150", "PRGATE_ARCHIVE_FLUSH_INTERVAL_MS": "200"}
    member = start_archive(kafka_settings, root, tmp_path, "a1", **small)
    load = Load(kafka_settings)
    load.start()
    kills = 0
    try:
        for _ in range(4):
            # Kill after a random amount of new load (inside a flush or between flushes), not
            # after a time: on a loaded machine the load may not have started yet.
            wait_produced(load, load.produced + rng.randint(200, 600))
            assert member.alive(), member.log_tail()
            member.kill()
            kills += 1
            member = start_archive(kafka_settings, root, tmp_path, "a1", **small)
        time.sleep(1.0)
    finally:
        load.stop.set()
        load.join(60)
    assert load.error is None, load.error
    try:
        rows = assert_exactly_once(kafka_settings, root)
    finally:
        member.stop()
    assert kills == 4
    assert rows["commands"] > 500 and rows["events"] > 200 and rows["results"] > 200, rows


def test_two_archive_processes_split_the_partitions_and_hand_them_over(
    kafka_settings: KafkaSettings, ensured_topics: Topics, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    first = start_archive(kafka_settings, root, tmp_path, "a1")
    second = start_archive(kafka_settings, root, tmp_path, "a2")
    try:
        # 4 topics x 3 partitions, split between the two with no partition held twice.
        deadline = time.monotonic() + 60
        while True:
            owners = archived_owners(first, second)
            split = owners["a1"] and owners["a2"] and not owners["a1"] & owners["a2"]
            if split and len(owners["a1"] | owners["a2"]) == 12:
                break
            assert time.monotonic() < deadline, (owners, first.log_tail(), second.log_tail())
            time.sleep(0.2)
        records = [command(n) for n in range(300)]
        produce(kafka_settings, kafka_settings.topics.commands,
                [(r.key, r.value or b"", r.headers) for r in records])  # fmt: skip
        assert_exactly_once(kafka_settings, root)
        assert archived_owners(first, second) == owners  # nothing moved while archiving

        assert first.stop() == 0  # the other one takes over its partitions
        more = [command(n, "later") for n in range(300)]
        produce(kafka_settings, kafka_settings.topics.commands,
                [(r.key, r.value or b"", r.headers) for r in more])  # fmt: skip
        assert assert_exactly_once(kafka_settings, root)["commands"] == 600
    finally:
        first.stop()
        second.stop()


def archived_owners(*members: object) -> dict[str, set[str]]:
    """Partitions each member holds now, from its last assignment and revocations in its log."""
    owners: dict[str, set[str]] = {}
    for member in members:
        held: set[str] = set()
        text = member.log_path.read_text()  # type: ignore[attr-defined]
        for entry in log_events(text):
            if entry["event"] in ("archive_assigned", "archive_revoked"):
                parts = {p.split("@", 1)[0] for p in entry["partitions"]}
                held = held | parts if entry["event"] == "archive_assigned" else held - parts
        owners[member.name.removeprefix("archive-")] = held  # type: ignore[attr-defined]
    return owners


def test_undecodable_and_newer_records_are_archived_not_dropped(
    kafka_settings: KafkaSettings, ensured_topics: Topics, tmp_path: Path
) -> None:
    topics = kafka_settings.topics
    newer = command(1)
    assert newer.value is not None
    newer_value = newer.value + b"\xa2\x06\x05label"  # field 100: a field of a later version
    produce(kafka_settings, topics.commands, [
        (b"pr-1", b"\xff\xfe not protobuf", []),
        (newer.key, newer_value, newer.headers),
        (b"pr-2", b"", [("message-type", b"prgate.v1.CommandEnvelope")]),
    ])  # fmt: skip
    produce(kafka_settings, topics.events, [(b"pr-1", b"\x0a\xff", [])])
    produce(kafka_settings, topics.results, [(b"c-1", b"junk", [("traceparent", b"x")])])
    produce(kafka_settings, topics.refusals, [(None, b"\x08", [])])
    root = tmp_path / "archive"
    member = start_archive(kafka_settings, root, tmp_path, "a1")
    try:
        assert_exactly_once(kafka_settings, root)
        assert member.alive()
    finally:
        member.stop()

    def errors(table: str) -> list[tuple[bytes | None, str | None]]:
        data = DeltaTable(str(root / table)).to_pyarrow_table(columns=["raw", "decode_error"])
        return sorted(zip(data["raw"].to_pylist(), data["decode_error"].to_pylist(), strict=True),
                      key=lambda r: r[0] or b"")  # fmt: skip

    commands = errors("commands")
    assert commands[0] == (b"", "empty value")
    assert (newer_value, None) in commands
    assert any(raw == b"\xff\xfe not protobuf" and "not a protobuf" in str(err)
               for raw, err in commands)  # fmt: skip
    for table in ("events", "results", "refusals"):
        ((raw, error),) = errors(table)
        assert raw and error, table
