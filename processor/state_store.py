"""The processor's state: the pull requests of each assigned partition.

Each partition's state is a :class:`PartitionState`: in memory (:class:`MemoryPartition`, with
no state directory) or a RocksDB store on disk (:class:`StoredPartition`, see
:mod:`prgate.state.store`) with a bounded cache of decoded entries in front of it.

The state only ever holds committed state. A batch works on a :class:`StagedChanges` overlay;
:meth:`StagedChanges.apply` writes it after ``commit_transaction`` succeeded, per partition in
one write together with the checkpoint (the offset after the batch's last snapshot on the
pull-requests topic, from the delivery reports), and an aborted batch simply drops the overlay.
So what a store holds is exactly what the pull-requests topic holds for its partition up to
its checkpoint, or newer committed states: a restart or re-assignment replays only the records
after the checkpoint (:mod:`processor.restore`), and a SIGKILL at any point leaves no
uncommitted state behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from prgate.state import Entry, SnapshotStore
from prgate.state.cache import DecodedCache
from prgate.v1.pull_request_pb2 import PullRequest


class PartitionState(Protocol):
    """One partition's committed pull requests and the changelog offset they reflect."""

    def checkpoint(self) -> int | None:
        """The next pull-requests offset not reflected yet; None: restore from the start."""
        ...

    def commands_offset(self) -> int | None:
        """The next commands offset the last transaction applied here committed; None when
        unknown (kept in memory, or nothing applied yet)."""
        ...

    def get(self, pull_request_id: str) -> PullRequest | None: ...

    def write(
        self,
        changes: Mapping[str, PullRequest | None],
        checkpoint: int | None,
        commands_offset: int | None = None,
    ) -> None:
        """Apply committed ``changes`` (None removes), move the checkpoint (None: keep) and
        note the commands offset their transaction committed (None: keep)."""
        ...

    def restore(self, snapshots: Mapping[bytes, bytes | None], checkpoint: int | None) -> None:
        """Apply checked records replayed from the pull-requests topic, serialized PullRequests
        by key (None: a tombstone), and move the checkpoint (None: keep). A store takes the
        bytes as they are."""
        ...

    def persist(self) -> None:
        """Make what :meth:`restore` wrote survive a crash (a store flushes its memtables)."""
        ...

    def reset(self, reason: str) -> None:
        """Forget everything (a checkpoint the log does not confirm)."""
        ...

    def count(self) -> int:
        """How many pull requests are held."""
        ...

    def close(self) -> None:
        """Release the state (a store stays on disk for the next assignment)."""
        ...


class MemoryPartition:
    """Pull requests in a dict; nothing survives the process, so restores start at 0."""

    def __init__(self, states: dict[str, PullRequest] | None = None) -> None:
        self._states: dict[str, PullRequest] = {} if states is None else states

    def checkpoint(self) -> int | None:
        return None

    def commands_offset(self) -> int | None:
        return None

    def get(self, pull_request_id: str) -> PullRequest | None:
        return self._states.get(pull_request_id)

    def write(
        self,
        changes: Mapping[str, PullRequest | None],
        checkpoint: int | None,
        commands_offset: int | None = None,
    ) -> None:
        for pull_request_id, state in changes.items():
            if state is None:
                self._states.pop(pull_request_id, None)
            else:
                self._states[pull_request_id] = state

    def restore(self, snapshots: Mapping[bytes, bytes | None], checkpoint: int | None) -> None:
        for key, value in snapshots.items():
            if value is None:
                self._states.pop(key.decode(errors="replace"), None)
            else:
                entity = PullRequest.FromString(value)
                self._states[entity.pull_request_id] = entity

    def persist(self) -> None:
        """Nothing survives a crash anyway."""

    def reset(self, reason: str) -> None:
        self._states.clear()

    def count(self) -> int:
        return len(self._states)

    def close(self) -> None:
        self._states.clear()


class StoredPartition:
    """A partition's RocksDB store with an LRU of at most ``cache_entries`` decoded entries."""

    def __init__(self, store: SnapshotStore, partition: int, cache_entries: int) -> None:
        self.store = store
        self._partition = partition
        self._cache = DecodedCache(store, cache_entries)

    def checkpoint(self) -> int | None:
        return self.store.checkpoints().get(self._partition)

    def commands_offset(self) -> int | None:
        return self.store.source_offsets().get(self._partition)

    def get(self, pull_request_id: str) -> PullRequest | None:
        return self._cache.get(pull_request_id)

    def write(
        self,
        changes: Mapping[str, PullRequest | None],
        checkpoint: int | None,
        commands_offset: int | None = None,
    ) -> None:
        entries: dict[str, Entry | None] = {}
        for pull_request_id, state in changes.items():
            if state is None:
                entries[pull_request_id] = None
                self._cache.forget(pull_request_id)
            else:
                entries[pull_request_id] = Entry(state.SerializeToString(deterministic=True))
                self._cache.remember(pull_request_id, state)
        checkpoints = {} if checkpoint is None else {self._partition: checkpoint}
        sources = {} if commands_offset is None else {self._partition: commands_offset}
        self.store.write(entries, checkpoints, source_offsets=sources)

    def restore(self, snapshots: Mapping[bytes, bytes | None], checkpoint: int | None) -> None:
        """The bytes go to the store as the topic carries them; the entry cache is not filled
        (a restore reads far more pull requests than it holds), only kept current."""
        self._cache.forget_many(key.decode(errors="replace") for key in snapshots)
        self.store.write_raw(snapshots, {} if checkpoint is None else {self._partition: checkpoint})

    def persist(self) -> None:
        self.store.flush()

    def reset(self, reason: str) -> None:
        self._cache.clear()
        self.store.reset(reason)

    def count(self) -> int:
        return self.store.count()

    def close(self) -> None:
        self._cache.clear()
        self.store.close()


class PartitionStates:
    """The state of each assigned partition."""

    def __init__(self) -> None:
        self._partitions: dict[int, PartitionState] = {}

    def owns(self, partition: int) -> bool:
        """Whether ``partition`` is assigned to us and restored."""
        return partition in self._partitions

    def partitions(self) -> list[int]:
        return sorted(self._partitions)

    def put_partition(self, partition: int, state: PartitionState) -> None:
        """Install the restored state of a newly assigned partition."""
        old = self._partitions.pop(partition, None)
        if old is not None and old is not state:
            old.close()
        self._partitions[partition] = state

    def drop(self, partitions: Iterable[int]) -> None:
        """Close revoked or lost partitions: a store stays on disk, so getting the partition
        back replays only what its next owner committed meanwhile."""
        for partition in partitions:
            state = self._partitions.pop(partition, None)
            if state is not None:
                state.close()

    def get(self, partition: int, pull_request_id: str) -> PullRequest | None:
        state = self._partitions.get(partition)
        return None if state is None else state.get(pull_request_id)

    def write(
        self,
        partition: int,
        changes: Mapping[str, PullRequest | None],
        checkpoint: int | None,
        commands_offset: int | None = None,
    ) -> None:
        """Set committed states; ignored for a partition we no longer hold."""
        state = self._partitions.get(partition)
        if state is not None:
            state.write(changes, checkpoint, commands_offset)

    def count(self) -> int:
        """How many pull requests are held, over all partitions."""
        return sum(state.count() for state in self._partitions.values())

    def close(self) -> None:
        """Close every partition (the process stops)."""
        self.drop(list(self._partitions))

    def begin(self) -> StagedChanges:
        """A fresh overlay for one transaction."""
        return StagedChanges(self)


class StagedChanges:
    """The new states of one open transaction, read through before the committed state."""

    def __init__(self, store: PartitionStates) -> None:
        self._store = store
        self._changes: dict[int, dict[str, PullRequest]] = {}

    def get(self, partition: int, pull_request_id: str) -> PullRequest | None:
        staged = self._changes.get(partition, {}).get(pull_request_id)
        return staged if staged is not None else self._store.get(partition, pull_request_id)

    def put(self, partition: int, pull_request_id: str, state: PullRequest) -> None:
        self._changes.setdefault(partition, {})[pull_request_id] = state

    def __len__(self) -> int:
        return sum(len(changes) for changes in self._changes.values())

    def apply(
        self,
        checkpoints: Mapping[int, int] | None = None,
        commands_offsets: Mapping[int, int] | None = None,
    ) -> None:
        """Make the staged states the committed ones (call after the commit succeeded), each
        partition's in one write with its checkpoint from ``checkpoints`` (pull-requests
        offset after the batch's last snapshot of that partition; missing: unchanged) and
        the next commands offset the transaction committed for it (``commands_offsets``)."""
        checkpoints = checkpoints or {}
        commands_offsets = commands_offsets or {}
        for partition, changes in self._changes.items():
            self._store.write(
                partition, changes, checkpoints.get(partition), commands_offsets.get(partition)
            )
        self._changes.clear()
