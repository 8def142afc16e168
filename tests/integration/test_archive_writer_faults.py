"""The archive's writer thread at the worst moments, against a real broker: SIGKILL while a
batch is out (before and after its Delta commit lands), SIGTERM while its commit is slow, and a
second member joining while a batch is out. After each, every committed offset is in its table
exactly once, with its bytes (tests/integration/test_archive.py's counting).

A gate (tests/integration/gated_archive.py) holds each Delta commit until the test opens it, so
"a batch is out" is a fact the test waits for, not a timing.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from helpers.kafka import produce
from helpers.logs import log_events

from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings
from tests.e2e.stack import ServiceProcess, base_env
from tests.integration.archive_helpers import SESSION_TIMEOUT_MS, start_archive
from tests.integration.test_archive import archived_owners, assert_exactly_once, command

pytestmark = pytest.mark.kafka


def start_gated(
    kafka: KafkaSettings,
    root: Path,
    log_dir: Path,
    gate: Path,
    *,
    when: str = "before",
    writer_threads: int = 1,
    flush_max_records: int = 100,
) -> ServiceProcess:
    """Member ``a1`` of this test's archive group, its commits held at ``gate``."""
    gate.mkdir(exist_ok=True)
    env = base_env(kafka)
    env.update(
        {
            "PRGATE_ARCHIVE_ROOT": str(root),
            "PRGATE_ARCHIVE_GROUP_ID": f"{kafka.topic_prefix}archive",
            "PRGATE_ARCHIVE_INSTANCE_ID": "a1",
            "PRGATE_ARCHIVE_SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS,
            "PRGATE_ARCHIVE_FLUSH_INTERVAL_MS": "200",
            "PRGATE_ARCHIVE_FLUSH_MAX_RECORDS": str(flush_max_records),
            "ARCHIVE_TEST_GATE": str(gate),
            "PRGATE_ARCHIVE_WRITER_THREADS": str(writer_threads),
            "ARCHIVE_TEST_GATE_WHEN": when,
        }
    )
    member = ServiceProcess(
        "archive-a1", "tests.integration.gated_archive", env, log_dir / "a1-gated.log"
    )
    member.start()
    return member


def wait_for(condition: str, check: object, member: ServiceProcess, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert member.alive(), member.log_tail()
        assert time.monotonic() < deadline, f"{condition}: {member.log_tail()}"
        time.sleep(0.05)


def some_commands(
    kafka: KafkaSettings, prefix: str, count: int = 300, topics: tuple[str, ...] = ()
) -> None:
    """``count`` commands to the commands topic (and as they are to ``topics``: rows of
    those tables too, undecodable ones)."""
    records = [command(n, prefix) for n in range(count)]
    for topic in (kafka.topics.commands, *topics):
        produce(kafka, topic, [(r.key, r.value or b"", r.headers) for r in records])


def assignments(gate: Path) -> int:
    """Assignments of at least one partition begun so far."""
    return sum(p.read_text() not in ("", "0") for p in gate.glob("assigning-*"))


def revoked(gate: Path) -> bool:
    """A revocation of at least one partition has begun."""
    return any(p.read_text() not in ("", "0") for p in gate.glob("revoking-*"))


def entered(gate: Path) -> list[str]:
    """Thread names of the commits that reached the gate, in order."""
    found = sorted(gate.glob("entered-*"), key=lambda p: int(p.name.split("-")[1]))
    return [p.read_text() for p in found]


@pytest.mark.parametrize("when", ["before", "after"])
def test_sigkill_while_a_batch_is_out_then_restart_archives_every_offset_once(
    kafka_settings: KafkaSettings, ensured_topics: Topics, tmp_path: Path, when: str
) -> None:
    root, gate = tmp_path / "archive", tmp_path / "gate"
    member = start_gated(kafka_settings, root, tmp_path, gate, when=when)
    try:
        some_commands(kafka_settings, "first")
        wait_for("a commit at the gate", lambda: entered(gate), member)
        assert entered(gate)[0].startswith("archive-writer"), entered(gate)
        member.kill()
    finally:
        member.kill()
    again = start_archive(kafka_settings, root, tmp_path, "a1")
    try:
        some_commands(kafka_settings, "second")
        assert assert_exactly_once(kafka_settings, root)["commands"] == 600
    finally:
        again.stop()


@pytest.mark.parametrize("writer_threads", [1, 2])
def test_sigterm_during_a_slow_commit_waits_for_it_and_exits_cleanly(
    kafka_settings: KafkaSettings, ensured_topics: Topics, tmp_path: Path, writer_threads: int
) -> None:
    root, gate = tmp_path / "archive", tmp_path / "gate"
    member = start_gated(kafka_settings, root, tmp_path, gate, writer_threads=writer_threads)
    try:
        some_commands(kafka_settings, "first")
        wait_for("a commit at the gate", lambda: entered(gate), member)
        assert member.process is not None
        member.process.send_signal(signal.SIGTERM)

        def stop_requested() -> bool:
            events = log_events(member.log_path.read_text())
            return any(e["event"] == "stop_requested" for e in events)

        wait_for("stop_requested logged", stop_requested, member)
        (gate / "open").touch()  # the slow commit ends now, after the stop was asked for
        assert member.process.wait(60) == 0, member.log_tail()
    finally:
        member.kill()
    # Everything it had consumed was committed at the stop; a new member finds no gap.
    again = start_archive(kafka_settings, root, tmp_path, "a1")
    try:
        some_commands(kafka_settings, "second")
        assert assert_exactly_once(kafka_settings, root)["commands"] == 600
    finally:
        again.stop()


@pytest.mark.parametrize("writer_threads", [1, 2])
def test_a_member_joining_while_a_batch_is_out_loses_and_duplicates_nothing(
    kafka_settings: KafkaSettings, ensured_topics: Topics, tmp_path: Path, writer_threads: int
) -> None:
    root, gate = tmp_path / "archive", tmp_path / "gate"
    first = start_gated(kafka_settings, root, tmp_path, gate, writer_threads=writer_threads)
    second: ServiceProcess | None = None
    try:
        some_commands(kafka_settings, "first")
        wait_for("a commit at the gate", lambda: entered(gate), first)
        second = start_archive(kafka_settings, root, tmp_path, "a2")
        # The first member is asked to give partitions up while its batch is out.
        wait_for("a revocation", lambda: revoked(gate), first)
        (gate / "open").touch()
        some_commands(kafka_settings, "second")
        assert assert_exactly_once(kafka_settings, root)["commands"] == 600
        assert first.stop() == 0, first.log_tail()
        some_commands(kafka_settings, "third")
        assert assert_exactly_once(kafka_settings, root)["commands"] == 900
    finally:
        first.kill()
        if second is not None:
            second.stop()


@pytest.mark.parametrize("writer_threads", [1, 2])
def test_a_member_leaving_while_a_batch_is_out_loses_and_duplicates_nothing(
    kafka_settings: KafkaSettings, ensured_topics: Topics, tmp_path: Path, writer_threads: int
) -> None:
    """The other member stops while this one's batch is out: this one is assigned the
    partitions it leaves while its commit is held. (Flushes by age only, and records of one
    of its topics only, so its loop goes on consuming, and answers the rebalance, while the
    batch is out: a batch due by size waits for the writer on the loop, as a commit on the
    loop thread did before the writer thread.)"""
    root, gate = tmp_path / "archive", tmp_path / "gate"
    topics = kafka_settings.topics
    second = start_archive(kafka_settings, root, tmp_path, "a2")
    first = start_gated(
        kafka_settings,
        root,
        tmp_path,
        gate,
        writer_threads=writer_threads,
        flush_max_records=100_000,
    )
    try:
        owners: dict[str, set[str]] = {}

        def split() -> bool:
            owners.update(archived_owners(first, second))
            both = bool(owners["a1"] and owners["a2"] and not owners["a1"] & owners["a2"])
            return both and len(owners["a1"] | owners["a2"]) == 12

        wait_for("the partitions split between the two", split, first)
        mine = sorted({held.rsplit("/", 1)[0] for held in owners["a1"]})[0]
        records = [command(n, "first") for n in range(300)]
        produce(kafka_settings, mine, [(r.key, r.value or b"", r.headers) for r in records])
        wait_for("a commit at the gate", lambda: entered(gate), first)
        assert entered(gate)[0].startswith("archive-writer"), entered(gate)
        before = assignments(gate)
        assert second.stop() == 0, second.log_tail()
        # Static members: the leaver's partitions move after its session timeout.
        wait_for("the leaver's partitions assigned", lambda: assignments(gate) > before, first)
        (gate / "open").touch()
        every = tuple(t for t in (topics.results, topics.events, topics.refusals) if t != mine)
        some_commands(kafka_settings, "second", topics=every)
        assert_exactly_once(kafka_settings, root)
        assert first.stop() == 0, first.log_tail()
    finally:
        first.kill()
        second.stop()
