"""The RocksDB state store, on real RocksDB (a library, not a service): atomic checkpoints,
the ListPullRequests indexes, and the wipe of a corrupt or foreign store."""

from __future__ import annotations

from pathlib import Path

import pytest

from prgate.state import (
    Entry,
    SnapshotStore,
    StoreIdentity,
    StoreLocked,
    StoreMemory,
    StoreResources,
)

IDENTITY = StoreIdentity("cluster-a", "prgate.pull-requests", (0, 1))


@pytest.fixture
def resources() -> StoreResources:
    return StoreResources(StoreMemory(block_cache_bytes=4 << 20, write_buffer_bytes=4 << 20))


def opened(
    path: Path, resources: StoreResources, identity: StoreIdentity = IDENTITY
) -> tuple[SnapshotStore, str]:
    return SnapshotStore.open(path, identity, resources, indexed=True)


def test_snapshots_and_checkpoints_survive_a_reopen(
    tmp_path: Path, resources: StoreResources
) -> None:
    store, reason = opened(tmp_path / "s", resources)
    assert reason == "new"
    assert store.checkpoints() == {}
    store.write({"pr-1": Entry(b"one", "acme/x", 1), "pr-2": Entry(b"two", "acme/x", 1)}, {0: 10})
    store.write({"pr-2": None}, {1: 4})
    store.close()
    again, reason = opened(tmp_path / "s", resources)
    assert reason == ""
    assert again.get("pr-1") == b"one"
    assert again.get("pr-2") is None
    assert again.checkpoints() == {0: 10, 1: 4}
    again.close()


def test_a_checkpoint_never_moves_back(tmp_path: Path, resources: StoreResources) -> None:
    store, _ = opened(tmp_path / "s", resources)
    store.write({}, {0: 10})
    store.write({"pr-1": Entry(b"v")}, {0: 7})
    assert store.checkpoints() == {0: 10}
    assert store.get("pr-1") == b"v"
    store.close()


def test_scan_follows_the_indexes_in_id_order(tmp_path: Path, resources: StoreResources) -> None:
    store, _ = opened(tmp_path / "s", resources)
    store.write(
        {
            "c": Entry(b"C", "acme/x", 1),
            "a": Entry(b"A", "acme/x", 1),
            "b": Entry(b"B", "acme/y", 2),
            "ab": Entry(b"AB", "acme/x", 2),
        },
        {},
    )
    assert list(store.scan()) == [b"A", b"AB", b"B", b"C"]
    assert list(store.scan(after="a")) == [b"AB", b"B", b"C"]
    assert list(store.scan(repository="acme/x")) == [b"A", b"AB", b"C"]
    assert list(store.scan(status=2)) == [b"AB", b"B"]
    assert list(store.scan(repository="acme/x", status=1, after="a")) == [b"C"]
    # A status change moves the pull request between the status indexes.
    store.write({"a": Entry(b"A2", "acme/x", 2), "c": None}, {})
    assert list(store.scan(status=1)) == []
    assert list(store.scan(repository="acme/x", status=2)) == [b"A2", b"AB"]
    assert list(store.scan(repository="acme/x")) == [b"A2", b"AB"]
    assert store.count() == 3
    store.close()


def test_filters_need_an_indexed_store(tmp_path: Path, resources: StoreResources) -> None:
    store, _ = SnapshotStore.open(tmp_path / "s", IDENTITY, resources)
    store.write({"a": Entry(b"A", "acme/x", 1)}, {})
    store.write({"a": Entry(b"A2"), "b": Entry(b"B")}, {})
    assert store.count() == 2
    assert list(store.scan()) == [b"A2", b"B"]
    with pytest.raises(ValueError, match="indexed"):
        list(store.scan(status=1))
    store.close()


@pytest.mark.parametrize(
    "other",
    [
        StoreIdentity("cluster-b", IDENTITY.topic, IDENTITY.partitions),
        StoreIdentity(IDENTITY.cluster_id, "other.pull-requests", IDENTITY.partitions),
        StoreIdentity(IDENTITY.cluster_id, IDENTITY.topic, (0,)),
    ],
)
def test_a_foreign_store_is_wiped(
    tmp_path: Path, resources: StoreResources, other: StoreIdentity
) -> None:
    store, _ = opened(tmp_path / "s", resources)
    store.write({"pr-1": Entry(b"one")}, {0: 10})
    store.close()
    foreign, reason = opened(tmp_path / "s", resources, other)
    assert reason == "foreign"
    assert foreign.get("pr-1") is None
    assert foreign.checkpoints() == {}
    foreign.close()
    # The new identity is recorded: opening it again is warm.
    _, reason = opened(tmp_path / "s", resources, other)
    assert reason == ""


def test_a_corrupt_store_is_wiped(tmp_path: Path, resources: StoreResources) -> None:
    store, _ = opened(tmp_path / "s", resources)
    store.write({"pr-1": Entry(b"one")}, {0: 10})
    store.close()
    (tmp_path / "s" / "CURRENT").write_bytes(b"\x00garbage")
    rebuilt, reason = opened(tmp_path / "s", resources)
    assert reason == "corrupt"
    assert rebuilt.get("pr-1") is None
    assert rebuilt.checkpoints() == {}
    rebuilt.close()


def test_a_store_in_use_is_not_wiped(tmp_path: Path, resources: StoreResources) -> None:
    store, _ = opened(tmp_path / "s", resources)
    store.write({"pr-1": Entry(b"one")}, {0: 10})
    with pytest.raises(StoreLocked):
        opened(tmp_path / "s", resources)
    assert store.get("pr-1") == b"one"
    store.close()


def test_reset_empties_and_keeps_the_identity(tmp_path: Path, resources: StoreResources) -> None:
    store, _ = opened(tmp_path / "s", resources)
    store.write({"pr-1": Entry(b"one")}, {0: 10})
    store.reset("ahead")
    assert store.get("pr-1") is None
    assert store.checkpoints() == {}
    store.close()
    _, reason = opened(tmp_path / "s", resources)
    assert reason == ""


def test_memory_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="block_cache_bytes"):
        StoreMemory(block_cache_bytes=1024)
    with pytest.raises(ValueError, match="write_buffer_bytes"):
        StoreMemory(write_buffer_bytes=0)


def test_raw_restore_writes_keep_the_count_and_reach_disk_before_a_logged_write(
    tmp_path: Path, resources: StoreResources
) -> None:
    identity = StoreIdentity("cluster-a", "prgate.pull-requests", (0,))
    store, _ = SnapshotStore.open(tmp_path / "s", identity, resources)
    store.write_raw({b"pr-1": b"one", b"pr-2": b"two"}, {0: 2})
    store.write_raw({b"pr-2": b"two again", b"pr-3": b"three", b"pr-9": None}, {0: 5})
    assert store.count() == 3
    store.write_raw({b"pr-1": None}, {0: 6})
    assert store.count() == 2
    # A logged write after unlogged ones flushes them first; so does close().
    store.write({"pr-4": Entry(b"four")}, {0: 7}, source_offsets={0: 41})
    store.close()
    again, reason = SnapshotStore.open(tmp_path / "s", identity, resources)
    assert reason == ""
    assert [again.get(k) for k in ("pr-1", "pr-2", "pr-3", "pr-4")] == [
        None,
        b"two again",
        b"three",
        b"four",
    ]
    assert again.count() == 3
    assert again.checkpoints() == {0: 7}
    assert again.source_offsets() == {0: 41}
    with pytest.raises(ValueError):
        again.versions(["pr-4"])  # no key records without indexes
    again.close()


def test_versions_come_from_the_key_records_and_index_moves_are_kept(
    tmp_path: Path, resources: StoreResources
) -> None:
    store, _ = opened(tmp_path / "s", resources)
    store.write({"pr-1": Entry(b"v1", "acme/x", 1, version=1)}, {0: 1}, logged=False)
    assert store.versions(["pr-1", "pr-2"]) == {"pr-1": 1}
    # The write after versions() reuses the key records it read: the old index entries go.
    store.write({"pr-1": Entry(b"v2", "acme/y", 2, version=2)}, {0: 2}, logged=False)
    assert store.versions(["pr-1"]) == {"pr-1": 2}
    assert list(store.scan(repository="acme/x")) == []
    assert list(store.scan(repository="acme/y", status=2)) == [b"v2"]
    assert store.count() == 1
    store.close()
    again, _ = opened(tmp_path / "s", resources)
    assert again.versions(["pr-1"]) == {"pr-1": 2}
    assert again.checkpoints() == {0: 2}
    again.close()


def test_a_store_of_the_former_key_layout_is_foreign(
    tmp_path: Path, resources: StoreResources
) -> None:
    from rocksdict import Options, Rdict

    db = Rdict(str(tmp_path / "s"), Options(raw_mode=True))
    db.put(
        b"midentity",
        b'{"cluster_id": "cluster-a", "partitions": [0, 1], "topic": "prgate.pull-requests"}',
    )
    db.close()
    store, reason = opened(tmp_path / "s", resources)
    assert reason == "foreign"
    store.close()
