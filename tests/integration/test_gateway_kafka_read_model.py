"""ReadModel against the real broker: catch-up, get/list, fan-out, garbage, tombstones, folding."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from rocksdict import Options, Rdict

from gateway.read_model import ReadModel, ReadModelState
from gateway.read_model_hub import Subscription
from prgate.domain import fold
from prgate.kafka.contract import HEADER_MESSAGE_TYPE, TYPE_PULL_REQUEST
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics
from prgate.state import SnapshotStore, StoreIdentity, StoreMemory, StoreResources
from prgate.v1.events_pb2 import EventEnvelope, PullRequestOpened, PullRequestTitleChanged
from prgate.v1.outcome_pb2 import COMMAND_STATE_SUCCEEDED
from prgate.v1.pull_request_pb2 import (
    PULL_REQUEST_STATUS_CLOSED,
    PULL_REQUEST_STATUS_OPEN,
    PullRequest,
)
from prgate.v1.results_pb2 import CommandResult

# Scheduling slack for a busy machine (seconds): a bound with it says "ends by its timeout,
# never hangs", not how fast; speed is measured in bench/.
SLACK_S = 5.0

Value = PullRequest | bytes | None | tuple[str, bytes]


@pytest.fixture(scope="module")
def txn_producer(kafka_bootstrap: str) -> Iterator[Producer]:
    """A transactional producer, as the processor writes snapshots."""
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "transactional.id": f"t-gwrm-{uuid.uuid4()}"}
    )
    producer.init_transactions(20)
    yield producer
    producer.close()


def write(producer: Producer, topic: str, *records: tuple[str, Value]) -> None:
    """One committed transaction of (key, value) records; value None is a tombstone, bytes are
    garbage, (message-type, bytes) is a record of the wrong type."""
    producer.begin_transaction()
    for key, value in records:
        message_type = TYPE_PULL_REQUEST
        raw: bytes | None
        if isinstance(value, PullRequest):
            raw = value.SerializeToString()
        elif isinstance(value, tuple):
            message_type, raw = value
        else:
            raw = value
        producer.produce(topic, key=key, value=raw, headers=[(HEADER_MESSAGE_TYPE, message_type)])
    producer.commit_transaction(10)


def pr(
    pid: str, version: int, *, repo: str = "octo/a", status: int = 1, title: str = "T"
) -> PullRequest:
    return PullRequest(
        pull_request_id=pid,
        version=version,
        repository=repo,
        status=status,  # type: ignore[arg-type]
        title=title,
    )


@pytest.mark.usefixtures("ensured_topics")
def test_catches_up_then_serves_get_and_list_and_survives_bad_records(
    kafka_settings: KafkaSettings, txn_producer: Producer
) -> None:
    topic = kafka_settings.topics.pull_requests
    records: list[tuple[str, Value]] = []
    for i in range(12):
        repo = "octo/a" if i % 2 == 0 else "octo/b"
        status = PULL_REQUEST_STATUS_CLOSED if i % 4 == 0 else PULL_REQUEST_STATUS_OPEN
        records.append((f"pr-{i:02d}", pr(f"pr-{i:02d}", 1, repo=repo, status=status)))
    records += [
        ("pr-00", pr("pr-00", 3, title="third")),
        ("pr-00", pr("pr-00", 2, title="second, late")),  # stale: ignored
        ("pr-03", b"\xff\xff\xff not a protobuf"),
        ("pr-05", ("prgate.v1.CommandResult", b"")),
        ("pr-11", None),
        ("pr-99", None),
    ]
    write(txn_producer, topic, *records)

    async def main() -> None:
        model = ReadModel(kafka_settings)
        await model.start()
        try:
            assert await model.wait_caught_up(15)
            first = model.get("pr-00")
            assert first is not None
            assert (first.version, first.title) == (3, "third")
            assert model.get("pr-11") is None
            assert model.get("pr-03") is not None  # garbage did not hurt the good record

            listed: list[str] = []
            after, pages = "", 0
            while page := model.list(after=after, limit=4):
                listed += [p.pull_request_id for p in page]
                pages += 1
                after = page[-1].pull_request_id
            assert listed == [f"pr-{i:02d}" for i in range(11)]
            assert pages == 3
            repo_b = model.list(repository="octo/b")
            assert [p.pull_request_id for p in repo_b] == [
                "pr-01",
                "pr-03",
                "pr-05",
                "pr-07",
                "pr-09",
            ]
            closed = model.list(status=PULL_REQUEST_STATUS_CLOSED, repository="OCTO/A")
            # pr-00 was closed at version 1 but its version 3 is open again.
            assert [p.pull_request_id for p in closed] == ["pr-04", "pr-08"]
            with pytest.raises(ValueError):
                model.list(limit=-1)

            stats = model.stats()
            assert stats["entities"] == 11
            assert stats["garbage"] == 2
            assert stats["tombstones"] == 2
            assert stats["stale"] == 1

            # The consumer thread survived the bad records and keeps applying new ones.
            await asyncio.to_thread(
                write, txn_producer, topic, ("pr-20", b"\x00garbage"), ("pr-20", pr("pr-20", 1))
            )
            assert await model.wait_for_version("pr-20", 1, timeout=10)
            assert model.stats()["garbage"] == 3
        finally:
            await model.close()
        assert model._tail._thread is not None
        assert not model._tail._thread.is_alive()

    asyncio.run(main())


@pytest.mark.usefixtures("ensured_topics")
def test_many_watchers_share_one_source_and_read_your_writes(
    kafka_settings: KafkaSettings, txn_producer: Producer
) -> None:
    topic = kafka_settings.topics.pull_requests
    opened = EventEnvelope(
        event_id="e1",
        pull_request_id="pr-w",
        version=1,
        command_id="c1",
        pull_request_opened=PullRequestOpened(repository="octo/a", title="v1", author="alice"),
    )
    v1 = fold([opened])
    assert v1 is not None

    async def main() -> None:
        model = ReadModel(kafka_settings)
        await model.start()
        try:
            assert await model.wait_caught_up(15)  # empty topic: caught up at once
            assert model.get("pr-w") is None
            early = model.subscribe("pr-w")  # before the entity exists: no snapshot first
            await asyncio.to_thread(write, txn_producer, topic, ("pr-w", v1))
            assert await model.wait_for_version("pr-w", 1, timeout=10)
            watchers = [model.subscribe("pr-w") for _ in range(5)]
            assert model.stats()["watchers"] == 6

            # Read-your-writes: the result's events are folded before any snapshot arrives.
            retitle = EventEnvelope(
                event_id="e2",
                pull_request_id="pr-w",
                version=2,
                command_id="c2",
                pull_request_title_changed=PullRequestTitleChanged(
                    old_title="v1", new_title="v2", changed_by="bob"
                ),
            )
            model.apply_result(
                CommandResult(
                    command_id="c2",
                    pull_request_id="pr-w",
                    state=COMMAND_STATE_SUCCEEDED,
                    version=2,
                    events=[retitle],
                )
            )
            folded = model.get("pr-w")
            assert folded is not None
            assert (folded.version, folded.title) == (2, "v2")

            # The processor's snapshots: v2 (replaces the folded copy silently), then v3.
            v2 = PullRequest()
            v2.CopyFrom(folded)
            v2.description = "from processor"
            v3 = PullRequest()
            v3.CopyFrom(v2)
            v3.version, v3.title = 3, "v3"
            await asyncio.to_thread(write, txn_producer, topic, ("pr-w", v2))
            await asyncio.to_thread(write, txn_producer, topic, ("pr-w", v3))
            assert await model.wait_for_version("pr-w", 3, timeout=10)
            assert model.get("pr-w") == v3

            async def versions(sub: Subscription, n: int) -> list[tuple[int, str]]:
                got = [await asyncio.wait_for(anext(sub), 5) for _ in range(n)]
                return [(p.version, p.title) for p in got]

            assert await versions(early, 3) == [(1, "v1"), (2, "v2"), (3, "v3")]
            for sub in watchers:
                assert await versions(sub, 3) == [(1, "v1"), (2, "v2"), (3, "v3")]
            watchers[0].close()
            assert model.stats()["watchers"] == 5
        finally:
            await model.close()
        assert model.stats()["watchers"] == 0
        with pytest.raises(StopAsyncIteration):
            await anext(watchers[1])

    asyncio.run(main())


def test_started_before_its_topic_exists_it_retries_and_then_catches_up(
    kafka_settings: KafkaSettings, txn_producer: Producer
) -> None:
    async def main() -> None:
        model = ReadModel(kafka_settings)
        await model.start()
        try:
            assert await model.wait_caught_up(0.5) is False
            assert not model.caught_up()
            await asyncio.to_thread(ensure_topics, kafka_settings)
            await asyncio.to_thread(
                write, txn_producer, kafka_settings.topics.pull_requests, ("pr-1", pr("pr-1", 1))
            )
            assert await model.wait_for_version("pr-1", 1, timeout=15)
            assert await model.wait_caught_up(5)
        finally:
            started = time.monotonic()
            await model.close()
            assert time.monotonic() - started < SLACK_S  # bounded, never a hang
        assert not model._tail._thread.is_alive()  # type: ignore[union-attr]

    asyncio.run(main())


@pytest.mark.usefixtures("ensured_topics")
def test_warm_store_replays_only_the_tail_and_a_store_ahead_of_the_log_is_rebuilt(
    kafka_settings: KafkaSettings, txn_producer: Producer, tmp_path: Path
) -> None:
    """With a state directory, a restarted read model reads only the records after its
    checkpoints; one whose checkpoints lie past the log end reads everything again."""
    topic = kafka_settings.topics.pull_requests
    state = ReadModelState(tmp_path / "state", StoreResources(StoreMemory(1 << 20, 1 << 20)), 4)
    write(txn_producer, topic, *[(f"pr-{i:02d}", pr(f"pr-{i:02d}", 1)) for i in range(20)])

    async def caught_up_model() -> ReadModel:
        model = ReadModel(kafka_settings, state=state)
        await model.start()
        assert await model.wait_caught_up(15)
        return model

    async def main() -> None:
        cold = await caught_up_model()
        assert cold.stats()["records"] == 20
        assert cold.stats()["entities"] == 20
        await cold.close()

        write(
            txn_producer, topic, ("pr-00", pr("pr-00", 2, title="tail")), ("pr-20", pr("pr-20", 1))
        )
        warm = await caught_up_model()
        try:
            assert warm.stats()["records"] == 2  # the tail only
            assert warm.stats()["entities"] == 21
            first = warm.get("pr-00")
            assert first is not None and (first.version, first.title) == (2, "tail")
            assert warm.get("pr-19") is not None  # from the store, not replayed
            page = warm.list(repository="OCTO/A", after="pr-17", limit=10)
            assert [p.pull_request_id for p in page] == ["pr-18", "pr-19", "pr-20"]
        finally:
            await warm.close()

        # Checkpoints past the log end: the store is not trusted and is rebuilt.
        path = state.state_dir / "gateway" / topic
        resources = StoreResources(StoreMemory(1 << 20, 1 << 20))
        db = Rdict(str(path), Options(raw_mode=True))
        identity = json.loads(bytes(db.get(b"midentity") or b"{}"))
        db.close()
        store, reason = SnapshotStore.open(
            path,
            StoreIdentity(identity["cluster_id"], identity["topic"], tuple(identity["partitions"])),
            resources,
            indexed=True,
        )
        assert reason == ""
        store.write({}, {p: 10_000_000 for p in identity["partitions"]})
        store.close()
        rebuilt = await caught_up_model()
        try:
            assert rebuilt.stats()["records"] == 22
            assert rebuilt.stats()["entities"] == 21
            again = rebuilt.get("pr-00")
            assert again is not None and again.version == 2
        finally:
            await rebuilt.close()

    asyncio.run(main())
