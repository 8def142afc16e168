"""Local state stores: the compacted pull-requests topic kept in RocksDB on disk.

See :mod:`prgate.state.store`.
"""

from prgate.state.resources import StoreMemory, StoreResources
from prgate.state.store import Entry, SnapshotStore, StoreIdentity, StoreLocked

__all__ = [
    "Entry",
    "SnapshotStore",
    "StoreIdentity",
    "StoreLocked",
    "StoreMemory",
    "StoreResources",
]
