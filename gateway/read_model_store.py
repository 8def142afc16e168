"""The read model's table of pull requests, kept in id order for paging: in memory
(:class:`PullRequestStore`) or in a RocksDB store with a bounded cache
(:class:`StoredPullRequests`).

No Kafka, no asyncio: owned by :class:`gateway.read_model.ReadModel` and used from the event
loop only.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence

from prgate.domain import canonical_repository
from prgate.state import SnapshotStore
from prgate.state.bulk import SeenKeys
from prgate.state.cache import DecodedCache
from prgate.state.layout import Row
from prgate.v1.pull_request_pb2 import PullRequest

# Up to this many new ids are inserted one by one when a listing needs the order; more are
# appended and the whole list re-sorted (timsort merges the two sorted runs in linear time).
_INSERT_ONE_BY_ONE = 64
# Snapshots a cold load buffers for one RocksDB write (the tail hands over batches of up to
# 500). Larger ones cost more than they save: 5,000 entities freed at once and 5 MB write
# batches made glibc's malloc trim and refill its heap on every write (prgate bench, restore
# at 200k: 500 -> 110k, 2,000 -> 93k, 5,000 -> 82k pull requests per CPU-second).
COLD_LOAD_BATCH = 500


class PullRequestStore:
    """Pull requests by id, plus the sorted ids for ordered, resumable listing."""

    def __init__(self) -> None:
        self._by_id: dict[str, PullRequest] = {}
        # Sorted ids, plus new ids not merged in yet. Inserting each new id in order is a
        # memmove of the whole list, quadratic over a catch-up: 1M random ids took minutes
        # (prgate bench, restore). New ids wait here until a listing needs the order.
        self._ids: list[str] = []
        self._unsorted: list[str] = []

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, pull_request_id: str) -> PullRequest | None:
        return self._by_id.get(pull_request_id)

    def version_of(self, pull_request_id: str) -> int | None:
        """The current entity's version, or None."""
        entity = self._by_id.get(pull_request_id)
        return None if entity is None else entity.version

    def prefetch(self, pull_request_ids: Iterable[str]) -> None:
        """Nothing to fetch: everything is in memory."""

    def put(self, entity: PullRequest, raw: bytes | None = None) -> None:
        """Insert or replace (the caller decides whether the version is newer); ``raw``, the
        serialized entity if at hand, is not needed in memory."""
        key = entity.pull_request_id
        if key not in self._by_id:
            self._unsorted.append(key)
        self._by_id[key] = entity

    def _sorted_ids(self) -> list[str]:
        if self._unsorted:
            if len(self._unsorted) <= _INSERT_ONE_BY_ONE:
                for key in self._unsorted:
                    bisect.insort(self._ids, key)
            else:
                self._ids.extend(self._unsorted)
                self._ids.sort()  # timsort: sorts the new run, then merges two runs
            self._unsorted.clear()
        return self._ids

    def remove(self, pull_request_id: str) -> bool:
        """Drop an entity; True if it was there."""
        if self._by_id.pop(pull_request_id, None) is None:
            return False
        ids = self._sorted_ids()
        index = bisect.bisect_left(ids, pull_request_id)
        del ids[index]
        return True

    def list(
        self, *, repository: str = "", status: int = 0, after: str = "", limit: int = 100
    ) -> list[PullRequest]:
        """Up to ``limit`` pull requests whose id sorts after ``after`` ("" = from the start),
        in id order, of ``repository`` (compared case-insensitively, as
        :func:`prgate.domain.canonical_repository`; "" = any) and ``status`` (0 = any).

        Pages and their tokens are the query service's; this is the cursor under them. A
        negative ``limit`` is a ValueError.
        """
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        wanted = canonical_repository(repository)
        ids = self._sorted_ids()
        found: list[PullRequest] = []
        for index in range(bisect.bisect_right(ids, after) if after else 0, len(ids)):
            if len(found) == limit:
                break
            entity = self._by_id[ids[index]]
            if wanted and canonical_repository(entity.repository) != wanted:
                continue
            if status and entity.status != status:
                continue
            found.append(entity)
        return found

    def put_folded(self, entity: PullRequest) -> None:
        """An entity folded from a result (read-your-writes): in memory, the same as put."""
        self.put(entity)

    def flush(self, checkpoints: Mapping[int, int]) -> None:
        """Nothing to write: this table lives in memory only."""


class StoredPullRequests:
    """The read model's table in a RocksDB store (:mod:`prgate.state.store`), with an LRU of
    at most ``cache_entries`` decoded entities in front of it.

    Snapshots applied from the topic are buffered by :meth:`put`/:meth:`remove` and written by
    :meth:`flush` in one WriteBatch with the offsets they came from, at the end of each batch
    the tail hands over (no read runs between). Entities folded from results
    (:meth:`put_folded`) stay in memory only, until the snapshot of their version replaces
    them: the store holds nothing the pull-requests topic does not.
    """

    def __init__(self, store: SnapshotStore, cache_entries: int) -> None:
        self.store = store
        self._cache = DecodedCache(store, cache_entries)
        # Snapshots to write at the next flush, with their bytes when they came from Kafka.
        self._pending: dict[str, tuple[PullRequest, bytes | None] | None] = {}
        self._folded: dict[str, PullRequest] = {}
        # Versions of stored entities looked up for the batch being applied (prefetch).
        self._versions: dict[str, int | None] = {}
        # During a cold load (begin_cold_load): the keys written so far, and the checkpoints of
        # the snapshots load() buffered.
        self._seen: SeenKeys | None = None
        self._checkpoints: dict[int, int] = {}
        # Ids load() buffered that the load had not written before (SeenKeys.add_unseen).
        self._fresh: set[str] = set()
        self._unmarked = False  # put() buffered ids during a cold load, not in SeenKeys yet

    def begin_cold_load(self, expected: int) -> None:
        """The store is empty and about to be filled from the beginning of the topic
        (``expected`` records, for sizing): from here to :meth:`end_cold_load`, ids this load
        has not written are not looked up (:class:`prgate.state.bulk.SeenKeys`), and
        compactions wait for the end (:meth:`SnapshotStore.begin_bulk_load`). ValueError when
        the store is not empty."""
        if self.store.count() or self.store.checkpoints():
            raise ValueError(f"state store {self.store.path} is not empty: no cold load")
        self._seen = SeenKeys(expected)
        self.store.begin_bulk_load()

    @property
    def cold_loading(self) -> bool:
        return self._seen is not None

    def end_cold_load(self) -> None:
        """Caught up: look ids up again and let RocksDB compact (in the background)."""
        if self._seen is not None:
            self.flush({})
            self._seen = None
            self.store.end_bulk_load()

    def __len__(self) -> int:
        return self.store.count() + sum(1 for k in self._folded if self._stored(k) is None)

    def _stored(self, pull_request_id: str) -> PullRequest | None:
        if pull_request_id in self._pending:
            pending = self._pending[pull_request_id]
            return None if pending is None else pending[0]
        return self._cache.get(pull_request_id)

    def version_of(self, pull_request_id: str) -> int | None:
        """The current entity's version, or None; from memory when it is there, else from the
        store's small key record (no snapshot read or decoded)."""
        folded = self._folded.get(pull_request_id)
        if folded is not None:
            return folded.version
        if pull_request_id in self._pending:
            pending = self._pending[pull_request_id]
            return None if pending is None else pending[0].version
        cached = self._cache.peek(pull_request_id)
        if cached is not None:
            return cached.version
        if pull_request_id in self._versions:
            return self._versions[pull_request_id]
        return self.store.versions([pull_request_id]).get(pull_request_id)

    def prefetch(self, pull_request_ids: Iterable[str]) -> None:
        """Look up the stored versions of a batch's ids in one multi-get (the ones not in
        memory), for :meth:`version_of` until the next :meth:`flush`."""
        wanted = [
            key
            for key in pull_request_ids
            if key not in self._pending and key not in self._folded and not self._cache.has(key)
        ]
        if wanted and self._seen is not None:
            # A cold load: only ids it wrote before can be in the store.
            absent = self._seen.unseen(wanted)
            if absent:
                self._versions.update(dict.fromkeys(absent, None))
                wanted = [key for key in wanted if key not in self._versions]
        if wanted:
            found = self.store.versions(wanted)
            for key in wanted:
                self._versions[key] = found.get(key)

    def get(self, pull_request_id: str) -> PullRequest | None:
        folded = self._folded.get(pull_request_id)
        return folded if folded is not None else self._stored(pull_request_id)

    def put(self, entity: PullRequest, raw: bytes | None = None) -> None:
        """A snapshot from the topic, written at the next :meth:`flush`: ``raw``, its bytes as
        Kafka carried them, as they are (else the entity is encoded)."""
        key = entity.pull_request_id
        self._folded.pop(key, None)
        self._pending[key] = (entity, raw)
        if self._seen is not None:
            self._unmarked = True

    def put_folded(self, entity: PullRequest) -> None:
        """An entity folded from a result: served from memory until its snapshot arrives."""
        self._folded[entity.pull_request_id] = entity

    def remove(self, pull_request_id: str) -> bool:
        """Drop an entity (a tombstone); True if it was there."""
        existed = self.get(pull_request_id) is not None
        self._folded.pop(pull_request_id, None)
        self._cache.forget(pull_request_id)
        self._pending[pull_request_id] = None
        return existed

    def load(
        self, snapshots: Sequence[tuple[PullRequest, bytes]], checkpoints: Mapping[int, int]
    ) -> tuple[int, int]:
        """During a cold load, with nothing folded: apply ``snapshots`` (entity, its bytes as
        the topic carries them) as :meth:`put` after the read model's version check would (a
        snapshot replaces the current entity if its version is higher), buffering up to
        :data:`COLD_LOAD_BATCH` of them for one write with ``checkpoints`` (partition -> next
        offset). Returns (snapshots applied, stale ones skipped). Reads see the buffered
        ones; :meth:`end_cold_load` writes the rest."""
        seen = self._seen
        if seen is None or self._folded:
            raise RuntimeError("load() is for a cold load with nothing folded")
        pending = self._pending
        ids = [snapshot[0].pull_request_id for snapshot in snapshots]
        # Ids new to this load are not in the store: the next write reads nothing for them.
        # The others may be (written by an earlier write, or buffered): one multi-get for the
        # stored versions of those not buffered.
        fresh = seen.add_unseen(ids, self._fresh)
        if fresh < len(ids):
            maybe = [key for key in set(ids).difference(self._fresh) if key not in pending]
            stored = self.store.versions(maybe) if maybe else {}
        else:
            stored = {}
        applied = stale = 0
        for snapshot in snapshots:
            entity = snapshot[0]
            key = entity.pull_request_id
            current = pending.get(key)
            version = current[0].version if current is not None else stored.get(key)
            if version is None or entity.version > version:
                pending[key] = snapshot
                applied += 1
            else:
                stale += 1
        cached = self._checkpoints
        for partition, offset in checkpoints.items():
            if offset > cached.get(partition, -1):
                cached[partition] = offset
        if len(pending) >= COLD_LOAD_BATCH:
            self.flush({})
        return applied, stale

    def flush(self, checkpoints: Mapping[int, int]) -> None:
        """Write the buffered snapshots with ``checkpoints`` (partition -> next offset)."""
        if self._checkpoints:
            merged = self._checkpoints
            self._checkpoints = {}
            for partition, offset in checkpoints.items():
                merged[partition] = max(offset, merged.get(partition, -1))
            checkpoints = merged
        rows: list[Row] = []
        # Cached entities are replaced by the new ones (none are cached during a cold load).
        refresh = self._cache.refresh if len(self._cache) else None
        for key, pending in self._pending.items():
            if pending is None:
                rows.append((key.encode(), None, b"", 0, 0))
                continue
            entity, raw = pending
            rows.append(
                (
                    key.encode(),
                    raw if raw is not None else entity.SerializeToString(deterministic=True),
                    canonical_repository(entity.repository).encode(),
                    entity.status,
                    entity.version,
                )
            )
            if refresh is not None:
                refresh(key, entity)
        if self._seen is not None and rows:
            # A cold load: ids it has not written before are not read by the write.
            if self._fresh:
                self.store.known_absent(self._fresh)
                self._fresh = set()
            if self._unmarked:  # put() buffered some: mark them
                self.store.known_absent(self._seen.add(self._pending))
                self._unmarked = False
        self._pending.clear()
        self._versions.clear()
        if rows or checkpoints:
            # Unlogged: a gateway that crashes replays from its last flushed checkpoint (at
            # most the memtables' worth, PRGATE_STATE_WRITE_BUFFER_MB) instead of paying for
            # the write-ahead log on every batch; close() flushes.
            self.store.write_rows(rows, checkpoints, logged=False)

    def list(
        self, *, repository: str = "", status: int = 0, after: str = "", limit: int = 100
    ) -> list[PullRequest]:
        """As :meth:`PullRequestStore.list`, from the store's indexes (a folded entity replaces
        its stored version; one not stored yet shows once its snapshot is)."""
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        found: list[PullRequest] = []
        if limit == 0:
            return found
        if self._pending:
            self.flush({})  # snapshots a cold load buffered (load())
        scan = self.store.scan(
            repository=canonical_repository(repository), status=status, after=after
        )
        for raw in scan:
            entity = PullRequest.FromString(raw)
            folded = self._folded.get(entity.pull_request_id)
            if folded is not None:
                if status and folded.status != status:
                    continue
                entity = folded
            found.append(entity)
            if len(found) == limit:
                break
        return found

    def close(self) -> None:
        self.store.close()
