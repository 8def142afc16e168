"""The gateway's store cold load, SIGKILLed in the middle, against the real broker: a process
loads a topic of hostile snapshot records (garbage bytes, a key that differs from the id,
tombstones, an id repeated with an older or the same version later in the
log) into an empty store and is killed while it loads; a read model started again on that
store answers every Get and every List page exactly as an in-memory read model of the topic.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from gateway.read_model import ReadModel, ReadModelState
from prgate.kafka.contract import HEADER_MESSAGE_TYPE, TYPE_PULL_REQUEST
from prgate.kafka.settings import KafkaSettings
from prgate.state import StoreMemory, StoreResources
from prgate.v1.pull_request_pb2 import PullRequest

IDS = 6000
RECORDS = 30_000
REPOSITORIES = ("octo/a", "Octo/B", "octo/c", "octo/d")
ROOT = Path(__file__).resolve().parents[2]


def hostile_topic(seed: int) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) records: mostly new versions of ids, with every kind of hostile record."""
    rng = random.Random(seed)
    versions: dict[str, int] = {}
    records: list[tuple[bytes | None, bytes | None]] = []
    for _ in range(RECORDS):
        pid = f"pr-{rng.randrange(IDS):05d}"
        roll = rng.random()
        if roll < 0.02:
            records.append((pid.encode(), None))  # tombstone (also of ids never written)
            versions.pop(pid, None)
        elif roll < 0.03:
            records.append((pid.encode(), b"\xff\x00 not a protobuf"))
        elif roll < 0.04:
            other = f"pr-{rng.randrange(IDS):05d}x"
            records.append((pid.encode(), _snapshot(other, 99, rng)))  # key differs from id
        elif roll < 0.09 and pid in versions:
            older = rng.randint(1, versions[pid])  # older or the same version, other content
            records.append((pid.encode(), _snapshot(pid, older, rng)))
        else:
            versions[pid] = versions.get(pid, 0) + rng.randint(1, 3)
            records.append((pid.encode(), _snapshot(pid, versions[pid], rng)))
    return records


def _snapshot(pid: str, version: int, rng: random.Random) -> bytes:
    return PullRequest(
        pull_request_id=pid,
        version=version,
        repository=rng.choice(REPOSITORIES),
        status=rng.randint(1, 4),  # type: ignore[arg-type]
        title=f"{pid} v{version} {rng.random()}",
    ).SerializeToString()


@pytest.fixture
def txn_producer(kafka_bootstrap: str) -> Iterator[Producer]:
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"t-coldkill-{uuid.uuid4()}"}
    )
    producer.init_transactions(20)
    yield producer
    producer.close()


def fill(producer: Producer, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    for start in range(0, len(records), 5000):
        producer.begin_transaction()
        for key, value in records[start : start + 5000]:
            producer.produce(
                topic, key=key, value=value, headers=[(HEADER_MESSAGE_TYPE, TYPE_PULL_REQUEST)]
            )
            producer.poll(0)
        producer.commit_transaction(30)


def answers(model: ReadModel) -> Iterator[object]:
    for i in range(IDS):
        for pid in (f"pr-{i:05d}", f"pr-{i:05d}x"):
            entity = model.get(pid)
            yield pid, None if entity is None else entity.SerializeToString(deterministic=True)
    for repository in ("", *REPOSITORIES, "OCTO/A", "nobody/x"):
        for status in range(5):
            after = ""
            while True:
                page = model.list(repository=repository, status=status, after=after, limit=500)
                yield repository, status, after, [p.SerializeToString() for p in page]
                if not page:
                    break
                after = page[-1].pull_request_id


def kill_in_the_middle(kafka: KafkaSettings, state_dir: Path, after: int) -> str:
    """Run the cold-loading child until it pauses after ``after`` records; SIGKILL it there;
    its PAUSED line."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.cold_load_child",
            kafka.bootstrap_servers,
            kafka.topic_prefix,
            str(kafka.partitions),
            str(state_dir),
            str(after),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        line = ""
        # Log lines go to stdout too; the child prints its line within 120 s at most.
        while not line.startswith(("PAUSED", "CAUGHT_UP")):
            raw = child.stdout.readline()
            if not raw:
                break
            line = raw.decode(errors="replace").strip()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    return line


@pytest.mark.usefixtures("ensured_topics")
@pytest.mark.parametrize("after", [1, RECORDS * 3 // 5])
def test_a_cold_load_killed_in_the_middle_comes_back_with_the_in_memory_answers(
    kafka_settings: KafkaSettings, txn_producer: Producer, tmp_path: Path, after: int
) -> None:
    records = hostile_topic(seed=after)
    fill(txn_producer, kafka_settings.topics.pull_requests, records)
    paused = kill_in_the_middle(kafka_settings, tmp_path / "state", after)
    word, applied, files, cold_loading = paused.split()
    assert (word, cold_loading) == ("PAUSED", "1"), paused
    assert int(applied) < RECORDS, paused
    assert (int(files) > 0) == (after > 1), paused

    async def main() -> None:
        memory = ReadModel(kafka_settings)
        state = ReadModelState(
            tmp_path / "state", StoreResources(StoreMemory(4 << 20, 1 << 20)), cache_entries=16
        )
        restarted = ReadModel(kafka_settings, state=state)
        await memory.start()
        await restarted.start()
        try:
            assert await memory.wait_caught_up(120)
            assert await restarted.wait_caught_up(120)
            replayed = restarted.stats()["records"]
            if after > 1:
                # The store kept what RocksDB wrote before the kill: only the rest is replayed.
                assert replayed < RECORDS
            else:
                assert replayed == RECORDS  # nothing was kept: a cold load again
            assert memory.stats()["entities"] == restarted.stats()["entities"]
            expected = list(answers(memory))
            got = list(answers(restarted))
            assert len(got) == len(expected)
            wrong = [(e, g) for e, g in zip(expected, got, strict=True) if e != g]
            assert not wrong, wrong[:3]
        finally:
            await memory.close()
            await restarted.close()

    asyncio.run(main())
