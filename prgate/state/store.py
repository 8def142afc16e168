"""A state store: the newest snapshot per pull request of some partitions of the compacted
pull-requests topic, in RocksDB (through ``rocksdict``), with the changelog offset it reflects.

This is the Kafka Streams state-store pattern. Every write is one RocksDB ``WriteBatch`` that
carries the changed snapshots *and* the checkpoint of each partition they came from: the next
offset of the pull-requests topic the store has not seen. A store is therefore always exactly
"the topic up to its checkpoints", and a process that opens it again replays only the records
from the checkpoints to the end (the tail) instead of the whole topic.

A store that cannot be trusted is wiped and rebuilt from the topic by its caller:

- it does not open (corrupt files, a wrong format): :meth:`SnapshotStore.open` wipes it;
- its identity record (cluster id, topic, partitions) differs from the expected one: wiped;
- its checkpoint lies outside the partition's offsets (ahead of the log end, or before the log
  start): the caller detects that and calls :meth:`SnapshotStore.reset`.

The key layout is :mod:`prgate.state.layout`'s. Everything here is synchronous and not
thread-safe: each store is used from one thread (the processor's loop, the gateway's event
loop).
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rocksdict import Rdict, WriteBatch, WriteOptions

from prgate.state import bulk
from prgate.state.layout import (
    CHECKPOINT,
    COUNT,
    DATA,
    FORMAT,
    IDENTITY,
    SEP,
    SOURCE,
    Row,
    build_batch,
    multi_get,
    scan_snapshots,
    snapshot,
    u32,
)
from prgate.state.resources import StoreResources

log = logging.getLogger(__name__)


def _unlogged_writes() -> WriteOptions:
    options = WriteOptions()
    # A property at run time; rocksdict's type stubs declare it a method.
    setattr(options, "disable_wal", True)  # noqa: B010
    return options


_UNLOGGED = _unlogged_writes()


class StoreLocked(Exception):
    """Another process (or another open handle) holds the store's RocksDB lock; try later."""


@dataclass(frozen=True)
class StoreIdentity:
    """Which log a store reflects: a store of another cluster, topic or partition set is
    foreign and is wiped. ``cluster_id`` is Kafka's cluster id from the metadata."""

    cluster_id: str
    topic: str
    partitions: tuple[int, ...]

    def encode(self) -> bytes:
        return json.dumps(
            {
                "cluster_id": self.cluster_id,
                "topic": self.topic,
                "partitions": self.partitions,
                # The key layout below: a store of another layout is foreign (rebuilt).
                "format": FORMAT,
            },
            sort_keys=True,
        ).encode()


@dataclass(frozen=True)
class Entry:
    """One snapshot to store: its bytes, plus (for indexed stores) the fields ListPullRequests
    filters on: the canonical repository and the PullRequestStatus number, and the version
    (:meth:`SnapshotStore.versions` answers from it without decoding the snapshot)."""

    value: bytes
    repository: str = ""
    status: int = 0
    version: int = 0


class SnapshotStore:
    """One RocksDB store at ``path``. Open with :meth:`open`."""

    def __init__(
        self,
        path: Path,
        db: Rdict,
        identity: StoreIdentity,
        resources: StoreResources,
        *,
        indexed: bool,
    ) -> None:
        self.path = path
        self.identity = identity
        self.indexed = indexed
        self._db: Rdict | None = db
        self._resources = resources
        # Writes since the last flush that skipped the write-ahead log (see write_raw).
        self._unlogged = False
        # Key records read by versions() since the last write, for that write.
        self._known: dict[bytes, bytes | None] = {}
        # After a bulk load: level-0 limits to restore once compactions shrank level 0.
        self._relax = False

    @classmethod
    def open(
        cls,
        path: Path,
        identity: StoreIdentity,
        resources: StoreResources,
        *,
        indexed: bool = False,
    ) -> tuple[SnapshotStore, str]:
        """Open (or create) the store at ``path`` and the reason its content may not be used.

        The reason is ``""`` for a store whose identity matches (its checkpoints are to be
        checked against the log by the caller), ``"new"`` for an empty one, ``"corrupt"`` when
        RocksDB could not open it and ``"foreign"`` when its identity differs; in the last two
        cases it was wiped first. Raises :class:`StoreLocked` when another handle holds it, and
        OSError when the directory cannot be created.
        """
        path.mkdir(parents=True, exist_ok=True)
        options = resources.options()
        reason = ""
        try:
            db = Rdict(str(path), options)
        except Exception as exc:  # rocksdict raises plain Exception with RocksDB's status
            if "lock" in str(exc).lower():
                raise StoreLocked(f"state store {path} is in use: {exc}") from exc
            log.warning("state_store_corrupt", extra={"path": path, "error": str(exc)})
            _wipe(path)
            db = Rdict(str(path), options)
            reason = "corrupt"
        stored = db.get(IDENTITY)
        if stored is None:
            reason = reason or "new"
        elif stored != identity.encode():
            log.warning(
                "state_store_foreign",
                extra={
                    "path": path,
                    "stored": bytes(stored).decode(errors="replace"),
                    "expected": identity.encode().decode(),
                },
            )
            db.close()
            _wipe(path)
            db = Rdict(str(path), options)
            reason = "foreign"
        if reason:
            db.put(IDENTITY, identity.encode())
        store = cls(path, db, identity, resources, indexed=indexed)
        # A process stopped during a bulk load left compactions off in the options RocksDB
        # saved, and level-0 files past the limits at which every write would stall until
        # they are compacted (on the caller's thread).
        store._relax = bulk.after_open(db)
        return store, reason

    @property
    def _rdict(self) -> Rdict:
        if self._db is None:
            raise RuntimeError(f"state store {self.path} is closed")
        return self._db

    def source_offsets(self) -> dict[int, int]:
        """Per partition that has one, the input offset its last :meth:`write` said the state
        reflects (``source_offsets``): for the processor, the next commands offset its last
        applied transaction committed. A store that claims more than the consumer group
        committed applied a transaction that never committed."""
        found: dict[int, int] = {}
        for partition in self.identity.partitions:
            raw = self._rdict.get(SOURCE + u32(partition))
            if raw is not None:
                found[partition] = struct.unpack(">q", raw)[0]
        return found

    def checkpoints(self) -> dict[int, int]:
        """The next changelog offset not yet reflected, per partition that has one."""
        found: dict[int, int] = {}
        for partition in self.identity.partitions:
            raw = self._rdict.get(CHECKPOINT + u32(partition))
            if raw is not None:
                found[partition] = struct.unpack(">q", raw)[0]
        return found

    def get(self, pull_request_id: str) -> bytes | None:
        """The stored snapshot bytes, or None."""
        value: bytes | None = self._rdict.get(DATA + pull_request_id.encode())
        if value is None or not self.indexed:
            return value
        return snapshot(value)

    def write(
        self,
        changes: Mapping[str, Entry | None],
        checkpoints: Mapping[int, int],
        *,
        logged: bool = True,
        source_offsets: Mapping[int, int] | None = None,
    ) -> None:
        """Apply ``changes`` (None deletes) and set ``checkpoints``, in one atomic WriteBatch.

        A checkpoint never moves back: one lower than the stored one is ignored (a replay of
        records the store already reflects). ``source_offsets`` (partition -> offset) are
        stored with them, see :meth:`source_offsets`. ``logged=False`` skips the write-ahead
        log, as
        :meth:`write_raw` does (a crash then loses the writes not flushed yet, never part of
        one).
        """
        rows: list[Row] = []
        for pull_request_id, entry in changes.items():
            key = pull_request_id.encode()
            if entry is None:
                rows.append((key, None, b"", 0, 0))
            else:
                rows.append(
                    (key, entry.value, entry.repository.encode(), entry.status, entry.version)
                )
        self.write_rows(rows, checkpoints, logged=logged, source_offsets=source_offsets)

    def write_rows(
        self,
        rows: list[Row],
        checkpoints: Mapping[int, int],
        *,
        logged: bool = True,
        source_offsets: Mapping[int, int] | None = None,
    ) -> None:
        """As :meth:`write`, from rows ``(id as UTF-8, snapshot bytes or None to delete,
        canonical repository as UTF-8, status, version)``, each id once; the last three are
        used by indexed stores only. Written in key order: RocksDB's memtable inserts keys that
        follow the previous one for a fraction of the cost of scattered ones."""
        db = self._rdict
        # One multi-get for the whole batch (bloom filters answer most of a cold restore's),
        # of the records versions() did not just read (or known_absent() said are absent).
        known, self._known = self._known, {}
        unknown = [row[0] for row in rows if row[0] not in known]
        if unknown:
            olds = multi_get(db, [DATA + key for key in unknown])
            known.update(zip(unknown, olds, strict=True))
        batch, delta = build_batch(rows, known, indexed=self.indexed)
        for partition, offset in (source_offsets or {}).items():
            batch.put(SOURCE + u32(partition), struct.pack(">q", offset))
        if not logged:
            self._unlogged = True
        self._commit(db, batch, delta, checkpoints, None if logged else _UNLOGGED)

    def write_raw(
        self, changes: Mapping[bytes, bytes | None], checkpoints: Mapping[int, int]
    ) -> None:
        """As :meth:`write` for a store without indexes, from keys and snapshot bytes as the
        topic carries them (a restore: nothing is decoded or encoded again). ValueError on an
        indexed store.

        These writes skip RocksDB's write-ahead log: a crash loses the ones not flushed yet,
        and since every batch carries its checkpoint the store then reopens at an older
        checkpoint, consistent, and replays from there. The memtables are flushed before the
        next logged :meth:`write` and on :meth:`close`, so a logged write never outlives
        unlogged ones before it.
        """
        if self.indexed:
            raise ValueError("an indexed store needs the indexed fields: use write()")
        self._known = {}
        db = self._rdict
        batch = WriteBatch(raw_mode=True)
        keys = [DATA + key for key in changes]
        olds = multi_get(db, keys)
        delta = 0
        for key, value, old in zip(keys, changes.values(), olds, strict=True):
            if value is None:
                delta -= old is not None
                batch.delete(key)
            else:
                delta += old is None
                batch.put(key, value)
        self._unlogged = True
        self._commit(db, batch, delta, checkpoints, _UNLOGGED)

    def flush(self) -> None:
        """Write the memtables to disk (and wait), so unlogged writes survive a crash."""
        if self._unlogged and self._db is not None:
            self._db.flush(True)
            self._unlogged = False

    def _commit(
        self,
        db: Rdict,
        batch: WriteBatch,
        delta: int,
        checkpoints: Mapping[int, int],
        options: WriteOptions | None = None,
    ) -> None:
        if options is None:
            self.flush()  # unlogged writes before a logged one must not be lost without it
        if delta:
            batch.put(COUNT, struct.pack(">q", self.count() + delta))
        current = self.checkpoints()
        for partition, offset in checkpoints.items():
            if offset >= current.get(partition, -1):
                batch.put(CHECKPOINT + u32(partition), struct.pack(">q", offset))
        if options is None:
            db.write(batch)
        else:
            db.write(batch, options)
        if self._relax:
            self._relax = not bulk.restore_l0_limits(db)

    def known_absent(self, pull_request_ids: Iterable[str]) -> None:
        """Tell the next :meth:`write` that the store holds none of ``pull_request_ids`` (a
        cold load knows it from :class:`prgate.state.bulk.SeenKeys`): it reads nothing for
        them. Wrong information corrupts the count and leaves stale index entries."""
        self._known.update(dict.fromkeys((key.encode() for key in pull_request_ids), None))

    def begin_bulk_load(self) -> None:
        """Before loading an empty store from the topic: see :func:`bulk.begin_bulk_load`.
        End with :meth:`end_bulk_load`."""
        bulk.begin_bulk_load(self._rdict)

    def end_bulk_load(self) -> None:
        """Compactions on again, in the background; the level-0 limits return to RocksDB's
        defaults at the first write after level 0 shrank under them."""
        bulk.end_bulk_load(self._rdict)
        self._relax = True

    def compacting(self) -> bool:
        """True while RocksDB has compactions running or pending (after a bulk load)."""
        return bulk.compacting(self._rdict)

    def versions(self, pull_request_ids: list[str]) -> dict[str, int]:
        """The stored version of each of ``pull_request_ids`` the store holds (one multi-get of
        the records' headers, nothing decoded). ValueError on a store without indexes."""
        if not self.indexed:
            raise ValueError("versions need an indexed store")
        ids = [pull_request_id.encode() for pull_request_id in pull_request_ids]
        olds = multi_get(self._rdict, [DATA + key for key in ids])
        # The next write() needs the same records (the index entries to replace).
        self._known.update(zip(ids, olds, strict=True))
        found: dict[str, int] = {}
        for pull_request_id, old in zip(pull_request_ids, olds, strict=True):
            if old is not None:
                start = old.index(SEP) + 5
                found[pull_request_id] = int.from_bytes(old[start : start + 8], "big")
        return found

    def scan(self, *, repository: str = "", status: int = 0, after: str = "") -> Iterator[bytes]:
        """Snapshot bytes in id order, of ``repository`` (canonical form, "" = any) and
        ``status`` (0 = any), with ids sorting after ``after``. Filters need an indexed store
        (ValueError otherwise). Do not write while iterating."""
        if (repository or status) and not self.indexed:
            raise ValueError("filtering needs an indexed store")
        return scan_snapshots(
            self._rdict, indexed=self.indexed, repository=repository, status=status, after=after
        )

    def count(self) -> int:
        """How many snapshots the store holds (kept with every write)."""
        raw = self._rdict.get(COUNT)
        return 0 if raw is None else int(struct.unpack(">q", raw)[0])

    def estimated_count(self) -> int:
        """RocksDB's estimate of the number of keys (snapshots, plus index keys if indexed)."""
        count: int | None = self._rdict.property_int_value("rocksdb.estimate-num-keys")
        return count or 0

    def reset(self, reason: str) -> None:
        """Wipe the content (an untrusted checkpoint) and keep the store open, empty."""
        log.warning("state_store_wiped", extra={"path": self.path, "reason": reason})
        self.close()
        self._known = {}
        self._relax = False
        _wipe(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        db = Rdict(str(self.path), self._resources.options())
        db.put(IDENTITY, self.identity.encode())
        self._db = db

    def close(self) -> None:
        """Flush unlogged writes (see :meth:`write_raw`) and release the lock; idempotent."""
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None


def _wipe(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
