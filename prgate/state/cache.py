"""A bounded LRU of decoded pull requests in front of a :class:`~prgate.state.store.SnapshotStore`.

The gateway's read model (``gateway/read_model_store.py``) and the processor's partition stores
(``processor/state_store.py``) both read through one: a hit costs a dict lookup, a miss one
RocksDB get and a protobuf parse, after which the entity is kept (the least recently used one
beyond ``entries`` is dropped).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from prgate.state.store import SnapshotStore
from prgate.v1.pull_request_pb2 import PullRequest


class DecodedCache:
    """At most ``entries`` decoded PullRequests of ``store``, least recently used dropped first."""

    def __init__(self, store: SnapshotStore, entries: int) -> None:
        self._store = store
        self._entries = entries
        self._cache: OrderedDict[str, PullRequest] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, pull_request_id: str) -> PullRequest | None:
        """The entity from the cache, else decoded from the store (and kept); None if absent."""
        cached = self._cache.get(pull_request_id)
        if cached is not None:
            self._cache.move_to_end(pull_request_id)
            return cached
        raw = self._store.get(pull_request_id)
        if raw is None:
            return None
        entity = PullRequest.FromString(raw)
        self.remember(pull_request_id, entity)
        return entity

    def peek(self, pull_request_id: str) -> PullRequest | None:
        """The cached entity, or None; neither reads the store nor counts as a use."""
        return self._cache.get(pull_request_id)

    def has(self, pull_request_id: str) -> bool:
        return pull_request_id in self._cache

    def remember(self, pull_request_id: str, entity: PullRequest) -> None:
        """Keep ``entity`` as the most recently used (it is, or is about to be, in the store)."""
        self._cache[pull_request_id] = entity
        self._cache.move_to_end(pull_request_id)
        while len(self._cache) > self._entries:
            self._cache.popitem(last=False)

    def refresh(self, pull_request_id: str, entity: PullRequest) -> None:
        """Replace a cached entity by ``entity``; one not cached stays out (a catch-up writes
        far more entities than are read, and would only push the read ones out)."""
        if pull_request_id in self._cache:
            self._cache[pull_request_id] = entity

    def forget(self, pull_request_id: str) -> None:
        self._cache.pop(pull_request_id, None)

    def forget_many(self, pull_request_ids: Iterable[str]) -> None:
        """Forget each of ``pull_request_ids`` (nothing to do while the cache is empty)."""
        if self._cache:
            for pull_request_id in pull_request_ids:
                self._cache.pop(pull_request_id, None)

    def clear(self) -> None:
        self._cache.clear()
