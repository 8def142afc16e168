"""Where and how large the local state stores are: settings shared by the processes that keep
one (:mod:`prgate.state.store`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prgate.settings import setting
from prgate.state.resources import StoreMemory

MIB = 1 << 20


@dataclass(frozen=True)
class StateSettings:
    """The state directory, RocksDB's memory bounds and the decoded-entry cache."""

    state_dir: str = setting(
        "",
        "PRGATE_STATE_DIR",
        "directory of the local RocksDB state stores, one per partition (empty: state in memory "
        "only, rebuilt from the pull-requests topic on every start and assignment)",
    )
    state_block_cache_mb: int = setting(
        64,
        "PRGATE_STATE_BLOCK_CACHE_MB",
        "RocksDB block cache shared by the process's stores, MiB (memtables are charged to it)",
    )
    state_write_buffer_mb: int = setting(
        32,
        "PRGATE_STATE_WRITE_BUFFER_MB",
        "RocksDB memtables of all the process's stores together, MiB",
    )
    state_cache_entries: int = setting(
        10_000,
        "PRGATE_STATE_CACHE_ENTRIES",
        "decoded pull requests kept in memory in front of each store (LRU)",
    )

    def __post_init__(self) -> None:
        if self.state_cache_entries < 1:
            raise ValueError("state_cache_entries must be >= 1")
        self.state_memory()  # validates the RocksDB bounds

    def state_memory(self) -> StoreMemory:
        """RocksDB's bounds in bytes (ValueError below 1 MiB)."""
        return StoreMemory(
            block_cache_bytes=self.state_block_cache_mb * MIB,
            write_buffer_bytes=self.state_write_buffer_mb * MIB,
        )

    @property
    def state_path(self) -> Path | None:
        """The state directory, or None when state is kept in memory only."""
        return Path(self.state_dir).expanduser() if self.state_dir else None
