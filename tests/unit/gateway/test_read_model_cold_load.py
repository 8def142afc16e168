"""The gateway store's cold load (an empty store filled from the beginning of the topic)
answers exactly as the in-memory read model and as the store's ordinary path: repeated ids in
one batch and across writes, stale snapshots, tombstones and garbage, on real RocksDB (a
library, not a service)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.read_model import ReadModel, _Record
from gateway.read_model_store import COLD_LOAD_BATCH, StoredPullRequests
from prgate.kafka.settings import KafkaSettings
from prgate.state import SnapshotStore, StoreIdentity, StoreMemory, StoreResources
from prgate.state.bulk import SeenKeys
from prgate.v1.pull_request_pb2 import PullRequest

IDENTITY = StoreIdentity("cluster-a", "prgate.pull-requests", (0, 1, 2))
REPOSITORIES = ("octo/a", "Octo/B", "octo/c")


def resources() -> StoreResources:
    return StoreResources(StoreMemory(block_cache_bytes=4 << 20, write_buffer_bytes=4 << 20))


def snapshot(pid: str, version: int, offset: int, rng: random.Random) -> _Record:
    entity = PullRequest(
        pull_request_id=pid,
        version=version,
        repository=rng.choice(REPOSITORIES),
        status=rng.randint(1, 4),  # type: ignore[arg-type]
        title=f"{pid} v{version}",
    )
    raw = entity.SerializeToString()
    return _Record(pid, offset, entity, "", hash(pid) % 3, raw)


def batches(seed: int) -> list[list[_Record]]:
    """Batches of a topic that was not compacted: ids repeat within a batch and across
    writes (changing repository and status), some versions are stale, some ids are deleted
    (tombstones, also of ids never seen) and some records are garbage."""
    rng = random.Random(seed)
    versions: dict[str, int] = {}
    out: list[list[_Record]] = []
    offset = 0
    for index, size in enumerate((700, 120, 1, 499, 500, 501, 333, 40, 900)):
        # Every third batch has tombstones and garbage (the ordinary path applies those); the
        # others are snapshots only (the cold path's).
        special = index % 3 == 2
        batch: list[_Record] = []
        for _ in range(size):
            offset += 1
            roll = rng.random() if special else 0.04 + rng.random() * 0.96
            pid = f"pr-{rng.randrange(600):04d}"
            if roll < 0.03:
                batch.append(_Record(pid, offset, None, "", hash(pid) % 3))  # tombstone
                versions.pop(pid, None)
            elif roll < 0.04:
                batch.append(_Record(pid, offset, None, "not a protobuf", hash(pid) % 3))
            elif roll < 0.08 and pid in versions:
                # An older version arriving late: stale.
                batch.append(snapshot(pid, max(1, versions[pid] - 1), offset, rng))
            else:
                versions[pid] = versions.get(pid, 0) + rng.randint(1, 2)
                batch.append(snapshot(pid, versions[pid], offset, rng))
        out.append(batch)
    # Several versions of one id in one batch, out of order, in a batch of snapshots only.
    out.append([snapshot("pr-dup", v, offset + i, rng) for i, v in enumerate((1, 3, 2, 5, 4))])
    return out


def model() -> ReadModel:
    # Never started: no consumer thread, no broker needed.
    return ReadModel(KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="unit."))


def stored_model(path: Path, *, cold: bool) -> tuple[ReadModel, StoredPullRequests]:
    rm = model()
    store, reason = SnapshotStore.open(path, IDENTITY, resources(), indexed=True)
    assert reason == "new"
    stored = StoredPullRequests(store, cache_entries=50)
    rm._stored = stored
    rm._store = stored
    if cold:
        stored.begin_cold_load(expected=3000)
    return rm, stored


def answers(rm: ReadModel) -> Iterator[object]:
    """Everything the read model answers: every id's entity, every listing walked in pages."""
    for i in range(600):
        entity = rm.get(f"pr-{i:04d}")
        yield None if entity is None else entity.SerializeToString(deterministic=True)
    yield rm.get("pr-dup")
    for repository in ("", *REPOSITORIES, "OCTO/A", "nobody/x"):
        for status in range(5):
            after = ""
            while True:
                page = rm.list(repository=repository, status=status, after=after, limit=7)
                yield (repository, status, after, [p.pull_request_id for p in page])
                if not page:
                    break
                after = page[-1].pull_request_id


def stats(rm: ReadModel) -> dict[str, int]:
    return {k: v for k, v in rm.stats().items() if k != "errors"}


@pytest.mark.parametrize("seed", [1, 2])
def test_a_cold_load_answers_as_the_in_memory_model_and_the_ordinary_store_path(
    tmp_path: Path, seed: int
) -> None:
    async def main() -> None:
        memory = model()
        cold, cold_store = stored_model(tmp_path / "cold", cold=True)
        warm, warm_store = stored_model(tmp_path / "warm", cold=False)
        loads = 0
        original = cold_store.load

        def counted(*args: object) -> tuple[int, int]:
            nonlocal loads
            loads += 1
            return original(*args)  # type: ignore[arg-type]

        cold_store.load = counted  # type: ignore[method-assign,assignment]
        for batch in batches(seed):
            for rm in (memory, cold, warm):
                rm._apply_records(batch)
        assert loads >= 7  # the batches of snapshots only took the cold path
        assert cold_store.cold_loading
        cold._on_caught_up()  # writes what the cold load buffered, compactions back on
        assert not cold_store.cold_loading
        warm._on_caught_up()
        expected = list(answers(memory))
        assert list(answers(cold)) == expected
        assert list(answers(warm)) == expected
        assert stats(cold) == stats(memory) == stats(warm)
        assert memory.get("pr-dup").version == 5
        # The counts kept with the writes are exact, and so are the checkpoints.
        assert cold_store.store.count() == warm_store.store.count() == len(memory._store)
        assert cold_store.store.checkpoints() == warm_store.store.checkpoints()
        # After the load the ordinary path goes on, on what the cold load wrote.
        for rm in (memory, cold, warm):
            rm._apply_records(batches(seed + 10)[0])
        assert list(answers(cold)) == list(answers(memory))
        cold_store.close()
        warm_store.close()
        # Reopened (a restart): the same answers from disk alone.
        again, _ = SnapshotStore.open(tmp_path / "cold", IDENTITY, resources(), indexed=True)
        reopened = model()
        reopened._stored = reopened._store = StoredPullRequests(again, cache_entries=50)
        assert [a for a in answers(reopened)] == list(answers(memory))
        again.close()

    asyncio.run(main())


def test_the_cold_path_buffers_and_reads_see_what_it_buffered(tmp_path: Path) -> None:
    async def main() -> None:
        rm, stored = stored_model(tmp_path / "s", cold=True)
        rng = random.Random(3)
        rm._apply_records([snapshot("pr-1", 1, 1, rng), snapshot("pr-1", 2, 2, rng)])
        assert stored.store.count() == 0  # buffered, not written yet
        assert rm.get("pr-1").version == 2  # type: ignore[union-attr]
        assert [p.pull_request_id for p in rm.list()] == ["pr-1"]  # a listing writes first
        assert stored.store.count() == 1
        assert stored.store.checkpoints() == {hash("pr-1") % 3: 3}
        many = [snapshot(f"pr-{i:04d}", 1, 10 + i, rng) for i in range(COLD_LOAD_BATCH)]
        rm._apply_records(many)
        assert stored.store.count() == 1 + COLD_LOAD_BATCH  # a full buffer is written
        stored.close()

    asyncio.run(main())


def test_a_cold_load_needs_an_empty_store(tmp_path: Path) -> None:
    store, _ = SnapshotStore.open(tmp_path / "s", IDENTITY, resources(), indexed=True)
    stored = StoredPullRequests(store, cache_entries=5)
    stored.flush({0: 4})  # a checkpoint only: the store reflects the topic up to offset 4
    with pytest.raises(ValueError):
        stored.begin_cold_load(expected=10)
    store.close()


def test_compactions_run_again_after_a_bulk_load(tmp_path: Path) -> None:
    async def main() -> None:
        rm, stored = stored_model(tmp_path / "s", cold=True)
        rng = random.Random(4)
        for start in range(0, 3000, 500):
            rm._apply_records(
                [snapshot(f"pr-{i:05d}", 1, i, rng) for i in range(start, start + 500)]
            )
            stored.store._rdict.flush(True)  # a level-0 file per write
        rm._on_caught_up()
        deadline = asyncio.get_running_loop().time() + 30
        while rm.compacting():
            assert asyncio.get_running_loop().time() < deadline, "compaction never finished"
            await asyncio.sleep(0.05)
        level0 = stored.store._rdict.property_int_value("rocksdb.num-files-at-level0")
        assert level0 is not None and level0 < 4
        assert stored.store.count() == 3000
        stored.close()

    asyncio.run(main())


def test_seen_keys_never_forget_a_key_and_rarely_claim_one() -> None:
    seen = SeenKeys(expected=10_000)
    keys = [f"pr-{i}" for i in range(10_000)]
    first = seen.add(keys[:5000])
    assert len(first) > 5000 * 0.97 and set(first) <= set(keys[:5000])  # ~1 % false positives
    assert seen.unseen(keys[:5000]) == []  # never forgets one
    assert seen.add(["x", "x"]) == ["x"]  # earlier in the same call counts
    fresh: set[str] = set()
    count = seen.add_unseen(keys[5000:], fresh)
    assert count == len(fresh) and fresh <= set(keys[5000:])
    assert len(fresh) > 5000 * 0.95  # false positives: about 1 %
    assert seen.unseen(keys) == []


def _l0_stop_trigger(path: Path) -> int:
    """level0_stop_writes_trigger as RocksDB last persisted it (SetOptions writes a new
    OPTIONS file)."""
    latest = max(path.glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1]))
    for line in latest.read_text().splitlines():
        if line.strip().startswith("level0_stop_writes_trigger="):
            return int(line.split("=")[1])
    raise AssertionError(f"no level0_stop_writes_trigger in {latest}")


def test_a_store_left_mid_cold_load_does_not_stall_writes_until_compacted(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        rm, stored = stored_model(tmp_path / "s", cold=True)
        rng = random.Random(5)
        for start in range(0, 25 * 40, 40):  # 25 level-0 files, more than the default limits
            rm._apply_records(
                [snapshot(f"pr-{i:05d}", 1, i, rng) for i in range(start, start + 40)]
            )
            stored.flush({})
            stored.store._rdict.flush(True)
        assert _l0_stop_trigger(tmp_path / "s") > 36
        stored.close()  # as a process stopped before it caught up
        again, reason = SnapshotStore.open(tmp_path / "s", IDENTITY, resources(), indexed=True)
        assert reason == ""
        # Raised again at once: writes go on while the background compaction catches up ...
        assert _l0_stop_trigger(tmp_path / "s") > 36
        deadline = asyncio.get_running_loop().time() + 30
        while again.compacting():
            assert asyncio.get_running_loop().time() < deadline, "compaction never finished"
            await asyncio.sleep(0.05)
        # ... and back to RocksDB's defaults at the first write after it did.
        reopened = StoredPullRequests(again, cache_entries=5)
        reopened.put(PullRequest(pull_request_id="pr-new", version=1, repository="octo/a"))
        reopened.flush({0: 5000})
        assert _l0_stop_trigger(tmp_path / "s") == 36
        assert again.count() == 1001
        again.close()

    asyncio.run(main())
