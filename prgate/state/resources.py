"""The memory a process's state stores share (block cache, memtable budget) and the RocksDB
options every store opens with: see :mod:`prgate.state.store`."""

from __future__ import annotations

from dataclasses import dataclass

from rocksdict import (
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    Options,
    WriteBufferManager,
)


@dataclass(frozen=True)
class StoreMemory:
    """RocksDB's memory bounds, shared by every store of a process (bytes).

    ``block_cache_bytes``: the LRU cache of uncompressed data and index blocks (reads);
    ``write_buffer_bytes``: the total of all memtables (writes), enforced by one
    WriteBufferManager that charges them to the block cache. RocksDB's resident memory is about
    their sum, plus table readers' indexes.
    """

    block_cache_bytes: int = 64 << 20
    write_buffer_bytes: int = 32 << 20

    def __post_init__(self) -> None:
        if self.block_cache_bytes < 1 << 20:
            raise ValueError("block_cache_bytes must be >= 1 MiB")
        if self.write_buffer_bytes < 1 << 20:
            raise ValueError("write_buffer_bytes must be >= 1 MiB")


class StoreResources:
    """The block cache and write-buffer budget of a process, and the options every store of it
    opens with."""

    def __init__(self, memory: StoreMemory) -> None:
        self.memory = memory
        self._cache = Cache(memory.block_cache_bytes)
        self._buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
            memory.write_buffer_bytes, False, self._cache
        )

    def options(self) -> Options:
        """Options for one store: raw bytes, the shared cache and write-buffer budget."""
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        table = BlockBasedOptions()
        table.set_block_cache(self._cache)
        table.set_cache_index_and_filter_blocks(True)
        # Index and filter blocks of the newest files stay in the cache: a point read that
        # misses the entry cache then costs one data block, not three (prgate bench, restore).
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        # Partitioned index and filters: a file's index and filter are split into blocks of
        # about 4 KiB under a small pinned top level. Whole, a 30 MB file's index and filter
        # are megabytes, larger than one shard of the block cache (1/64 of it), so they were
        # never kept and every point read loaded and parsed them again: 250 us of CPU per read
        # that missed the entry cache, 10 ms at p99 (prgate bench, restore, 200k).
        table.set_index_type(BlockBasedIndexType.two_level_index_search())
        table.set_partition_filters(True)
        table.set_metadata_block_size(4096)
        table.set_pin_top_level_index_and_filter(True)
        # A bloom filter per file: a get of an id the store does not hold (every id of a cold
        # restore, checked to keep the count) reads no data block.
        table.set_bloom_filter(10, False)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_manager(self._buffers)
        # One memtable of at most a quarter of the budget, so several stores fit in it.
        options.set_write_buffer_size(max(1 << 20, self.memory.write_buffer_bytes // 4))
        options.set_max_write_buffer_number(2)
        return options

    def stats(self, cache_entries: int) -> dict[str, float]:
        """The memory bounds and use, for /metrics: ``block_cache_capacity_bytes``,
        ``block_cache_usage_bytes``, ``write_buffer_capacity_bytes``,
        ``write_buffer_usage_bytes`` and ``entry_cache_capacity`` (``cache_entries``)."""
        return {
            "block_cache_capacity_bytes": float(self.memory.block_cache_bytes),
            "block_cache_usage_bytes": float(self.cache_usage_bytes()),
            "write_buffer_capacity_bytes": float(self.memory.write_buffer_bytes),
            "write_buffer_usage_bytes": float(self._buffers.get_usage()),
            "entry_cache_capacity": float(cache_entries),
        }

    def cache_usage_bytes(self) -> int:
        """Bytes in the block cache now (memtables included: they are charged to it)."""
        usage: int = self._cache.get_usage()
        return usage
