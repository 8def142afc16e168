"""The processor's in-memory state: the pull requests of each assigned partition.

The store only ever holds committed state. A batch works on a :class:`StagedChanges` overlay;
:meth:`StagedChanges.apply` copies it into the store after ``commit_transaction`` succeeded, and
an aborted batch simply drops the overlay. That keeps "rebuild the state after an abort" free:
what is in the store is exactly what the pull-requests topic holds for our partitions.
"""

from __future__ import annotations

from collections.abc import Iterable

from prgate.v1.pull_request_pb2 import PullRequest


class PartitionStates:
    """Pull requests by partition, then by pull request id."""

    def __init__(self) -> None:
        self._partitions: dict[int, dict[str, PullRequest]] = {}

    def owns(self, partition: int) -> bool:
        """Whether ``partition`` is assigned to us and restored."""
        return partition in self._partitions

    def partitions(self) -> list[int]:
        return sorted(self._partitions)

    def put_partition(self, partition: int, states: dict[str, PullRequest]) -> None:
        """Install the restored state of a newly assigned partition."""
        self._partitions[partition] = states

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget revoked or lost partitions: their next owner restores them from Kafka."""
        for partition in partitions:
            self._partitions.pop(partition, None)

    def get(self, partition: int, pull_request_id: str) -> PullRequest | None:
        return self._partitions.get(partition, {}).get(pull_request_id)

    def put(self, partition: int, pull_request_id: str, state: PullRequest) -> None:
        """Set one committed state; ignored for a partition we no longer hold."""
        states = self._partitions.get(partition)
        if states is not None:
            states[pull_request_id] = state

    def count(self) -> int:
        """How many pull requests are held, over all partitions."""
        return sum(len(states) for states in self._partitions.values())

    def begin(self) -> StagedChanges:
        """A fresh overlay for one transaction."""
        return StagedChanges(self)


class StagedChanges:
    """The new states of one open transaction, read through before the committed store."""

    def __init__(self, store: PartitionStates) -> None:
        self._store = store
        self._changes: dict[tuple[int, str], PullRequest] = {}

    def get(self, partition: int, pull_request_id: str) -> PullRequest | None:
        staged = self._changes.get((partition, pull_request_id))
        return staged if staged is not None else self._store.get(partition, pull_request_id)

    def put(self, partition: int, pull_request_id: str, state: PullRequest) -> None:
        self._changes[(partition, pull_request_id)] = state

    def __len__(self) -> int:
        return len(self._changes)

    def apply(self) -> None:
        """Make the staged states the committed ones (call after the commit succeeded)."""
        for (partition, pull_request_id), state in self._changes.items():
            self._store.put(partition, pull_request_id, state)
        self._changes.clear()
