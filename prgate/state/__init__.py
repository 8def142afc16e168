"""Local state stores: the compacted pull-requests topic kept in RocksDB on disk.

See :mod:`prgate.state.store`.
"""

from prgate.state.store import (
    Entry,
    SnapshotStore,
    StoreIdentity,
    StoreLocked,
    StoreMemory,
    StoreResources,
)

__all__ = [
    "Entry",
    "SnapshotStore",
    "StoreIdentity",
    "StoreLocked",
    "StoreMemory",
    "StoreResources",
]
