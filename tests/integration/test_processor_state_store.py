"""The processor's RocksDB state stores against the real broker: a warm store replays only the
records after its checkpoint; a store ahead of the log, a corrupt one and a foreign one are
wiped and rebuilt from the pull-requests topic, and the state after all of them is right (the
next command of each pull request gets the next version)."""

from __future__ import annotations

import json
from pathlib import Path

from integration.processor_commands import check, open_pr, send_all
from integration.processor_helpers import processor_settings, wait_results
from integration.processor_runners import ThreadedProcessor
from rocksdict import Options, Rdict

from prgate.kafka.settings import KafkaSettings
from prgate.state import SnapshotStore, StoreIdentity, StoreMemory, StoreResources
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.outcome_pb2 import COMMAND_STATE_SUCCEEDED
from processor.restore import RestoreStats
from processor.settings import ProcessorSettings


def run(
    settings: ProcessorSettings, kafka: KafkaSettings, commands: list[CommandEnvelope]
) -> list[RestoreStats]:
    """One processor run until every command has its result; what its restores did. Each
    result must be SUCCEEDED at the version the log says (``VERSIONS``): a command on a pull
    request the state lost would be REJECTED, one on a stale state would get a wrong version."""
    with ThreadedProcessor(settings) as running:
        send_all(kafka, commands)
        results = wait_results(kafka, {c.command_id for c in commands}, 60)
        restores = list(running.processor.member.restores)
    by_id = {r.command_id: r for r in results}
    for command in commands:
        result = by_id[command.command_id]
        assert result.state == COMMAND_STATE_SUCCEEDED, result
        VERSIONS[command.pull_request_id] = VERSIONS.get(command.pull_request_id, 0) + 1
        assert result.version == VERSIONS[command.pull_request_id], result
    return restores


VERSIONS: dict[str, int] = {}  # pull request id -> the version its last command made


def store_dirs(state: Path, kafka: KafkaSettings) -> dict[int, Path]:
    group = f"{kafka.topic_prefix}processor"
    return {
        p: state / "processor" / group / f"{kafka.topics.pull_requests}-{p}"
        for p in range(kafka.partitions)
    }


def pull_requests(count: int, tag: str) -> list[str]:
    return [f"pr-{tag}-{i}" for i in range(count)]


def test_warm_store_replays_only_what_another_processor_committed_meanwhile(
    kafka_settings: KafkaSettings, ensured_topics: object, tmp_path: Path
) -> None:
    stored = processor_settings(kafka_settings, state_dir=str(tmp_path / "state"))
    in_memory = processor_settings(kafka_settings, instance_id="p2")
    ids = pull_requests(12, "warm")

    first = run(stored, kafka_settings, [open_pr(pr) for pr in ids])
    assert sorted(p for r in first for p in r.cold) == list(range(kafka_settings.partitions))

    # Another member (state in memory) takes the partitions and commits 4 more snapshots.
    run(in_memory, kafka_settings, [check(pr, "ci") for pr in ids[:4]])

    # Back with the store: only those 4 snapshots are replayed, no partition starts cold,
    # and every pull request is at the version the log says (checked in run()).
    again = run(stored, kafka_settings, [check(pr, "lint") for pr in ids])
    assert [p for r in again for p in r.cold] == []
    assert sum(r.records for r in again) == 4

    # A restart with nothing committed meanwhile replays nothing at all.
    last = run(stored, kafka_settings, [check(ids[0], "docs")])
    assert sum(r.records for r in last) == 0


def test_store_ahead_of_the_log_is_detected_and_rebuilt(
    kafka_settings: KafkaSettings, ensured_topics: object, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    stored = processor_settings(kafka_settings, state_dir=str(state))
    ids = pull_requests(9, "ahead")
    run(stored, kafka_settings, [open_pr(pr) for pr in ids])

    # What an unclean stop or a recreated topic leaves: checkpoints past the log end.
    resources = StoreResources(StoreMemory(1 << 20, 1 << 20))
    for partition, path in store_dirs(state, kafka_settings).items():
        identity = stored_identity(path)
        store, reason = SnapshotStore.open(path, identity, resources)
        assert reason == ""
        store.write({}, {partition: 1_000_000})
        store.close()

    restores = run(stored, kafka_settings, [check(pr, "ci") for pr in ids])
    rebuilt = {p: why for r in restores for p, why in r.rebuilt.items()}
    assert rebuilt == {p: "ahead_of_log" for p in range(kafka_settings.partitions)}
    # Rebuilt from the beginning: the 9 snapshots (at least; nothing was compacted yet).
    assert sum(r.records for r in restores) >= 9


def test_corrupt_and_foreign_stores_are_rebuilt(
    kafka_settings: KafkaSettings, ensured_topics: object, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    stored = processor_settings(kafka_settings, state_dir=str(state))
    ids = pull_requests(9, "bad")
    run(stored, kafka_settings, [open_pr(pr) for pr in ids])

    dirs = store_dirs(state, kafka_settings)
    (dirs[0] / "CURRENT").write_bytes(b"\x00not a manifest name")
    db = Rdict(str(dirs[1]), Options(raw_mode=True))
    db.put(b"midentity", StoreIdentity("another-cluster", "t", (1,)).encode())
    db.close()

    restores = run(stored, kafka_settings, [check(pr, "ci") for pr in ids])
    cold = sorted(p for r in restores for p in r.cold)
    assert cold == [0, 1]
    again = run(stored, kafka_settings, [check(pr, "lint") for pr in ids])
    assert [p for r in again for p in r.cold] == []


def stored_identity(path: Path) -> StoreIdentity:
    db = Rdict(str(path), Options(raw_mode=True))
    try:
        raw = db.get(b"midentity")
    finally:
        db.close()
    assert raw is not None, f"{path} has no identity record"
    data = json.loads(bytes(raw))
    return StoreIdentity(data["cluster_id"], data["topic"], tuple(data["partitions"]))
