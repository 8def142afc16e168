"""A store written by an older layout (format 2: its identity record says so) is not trusted:
opening it wipes it, so the caller rebuilds it from the topic (the gateway's cold load)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from rocksdict import Options, Rdict

from prgate.state import Entry, SnapshotStore, StoreIdentity, StoreMemory, StoreResources
from prgate.state.layout import CHECKPOINT, COUNT, FORMAT, IDENTITY, u32

STORE_IDENTITY = StoreIdentity("cluster-a", "prgate.pull-requests", (0, 1))


def test_a_format_2_store_with_checkpoints_and_data_is_wiped_on_open(tmp_path: Path) -> None:
    assert FORMAT == 3
    path = tmp_path / "s"
    resources = StoreResources(StoreMemory(4 << 20, 4 << 20))
    store, reason = SnapshotStore.open(path, STORE_IDENTITY, resources, indexed=True)
    assert reason == "new"
    store.write({"pr-1": Entry(b"one", "acme/x", 1, 3)}, {0: 10, 1: 4})
    store.close()
    # The same store as format 2 had left it: identity format 2, with its own key records.
    db = Rdict(str(path), Options(raw_mode=True))
    identity = json.loads(bytes(db[IDENTITY]))
    db[IDENTITY] = json.dumps({**identity, "format": 2}, sort_keys=True).encode()
    db[b"kpr-1"] = b"acme/x\x00" + u32(1) + struct.pack(">q", 3)
    db[CHECKPOINT + u32(0)] = struct.pack(">q", 12)
    db.close()

    store, reason = SnapshotStore.open(path, STORE_IDENTITY, resources, indexed=True)
    try:
        assert reason == "foreign"
        assert store.checkpoints() == {}
        assert store.count() == 0
        assert store.get("pr-1") is None
        assert list(store.scan()) == []
    finally:
        store.close()
    db = Rdict(str(path), Options(raw_mode=True))
    try:
        assert db.get(COUNT) is None
        assert db.get(b"kpr-1") is None
        assert json.loads(bytes(db[IDENTITY]))["format"] == 3
    finally:
        db.close()
