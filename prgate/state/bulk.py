"""What a cold load of an empty store needs to skip reading RocksDB for every record.

A store that starts empty and is filled from the beginning of the compacted topic (a gateway's
first start, or after its store was wiped) holds exactly the keys written since. Reading each
key's record before writing it (to keep the count and to delete the index entries of the
version it replaces) then finds nothing for almost every key, and costs most: the bloom filters
of every level-0 file and the memtables are probed per key. :class:`SeenKeys` remembers, in a
few bits per key, which keys this load has written; only those it may have seen (the repeated
keys of a topic not compacted yet, plus about 1 % false positives) are read.
"""

from __future__ import annotations

from collections.abc import Iterable

from rbloom import Bloom
from rocksdict import Rdict

# RocksDB's defaults of level0_slowdown_writes_trigger and level0_stop_writes_trigger, and the
# limit both are raised to during a bulk load (1M pull requests leave ~140 level-0 files).
_L0_SLOWDOWN = 20
_L0_STOP = 36
_BULK_L0_LIMIT = 1 << 20
# 1 % false positives: each is one more read of the store, never a wrong answer.
_FALSE_POSITIVE_RATE = 0.01
# Sized for at most 16M keys (about 19 MiB); beyond, the false positives rise.
_MAX_EXPECTED = 16_000_000


class SeenKeys:
    """A bloom filter (rbloom's, in Rust) of the keys written to a store during its cold load.

    ``expected`` is the number of records to load (from the end offsets), used only to size
    the filter for 1 % false positives (about 10 bits per key, for at most 16M keys). Answers
    are "certainly not written" or "maybe written"; Python's ``hash`` of the key is the hash
    (stable within the process, which is all a filter that lives as long as the load needs).
    """

    def __init__(self, expected: int) -> None:
        self._bloom = Bloom(max(1000, min(expected, _MAX_EXPECTED)), _FALSE_POSITIVE_RATE)

    @property
    def size_bytes(self) -> int:
        return int(self._bloom.size_in_bits) // 8

    def unseen(self, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` certainly not added yet (the others may have been)."""
        bloom = self._bloom
        return [key for key in keys if key not in bloom]

    def add_unseen(self, keys: Iterable[str], into: set[str]) -> int:
        """Add ``keys``; puts those certainly not added before (by an earlier call, or earlier
        in ``keys``) into ``into`` and returns how many those were."""
        found = self.add(keys)
        into.update(found)
        return len(found)

    def add(self, keys: Iterable[str]) -> list[str]:
        """Add ``keys``; returns those certainly not added before (by an earlier call, or
        earlier in ``keys``)."""
        bloom = self._bloom
        found: list[str] = []
        for key in keys:
            if key not in bloom:
                found.append(key)
                bloom.add(key)
        return found


def begin_bulk_load(db: Rdict) -> None:
    """Before loading an empty store from the topic: no automatic compactions (each would
    rewrite what the previous ones wrote: 2-3 times the CPU of one compaction at the end) and
    no write stalls for the level-0 files that pile up meanwhile. Reads stay correct, slower
    the more files level 0 holds. Options of the open handle only: a reopened store has the
    defaults."""
    db.set_options(
        {
            "disable_auto_compactions": "true",
            "level0_slowdown_writes_trigger": str(_BULK_L0_LIMIT),
            "level0_stop_writes_trigger": str(_BULK_L0_LIMIT),
        }
    )


def end_bulk_load(db: Rdict) -> None:
    """Compactions on again: RocksDB merges the level-0 files in the background (their count
    falls to a few). The level-0 limits stay raised (writes would stall on that many files)
    until :func:`restore_l0_limits` finds level 0 under RocksDB's defaults."""
    db.set_options({"disable_auto_compactions": "false"})


def after_open(db: Rdict) -> bool:
    """On opening a store: automatic compactions on, whatever the store's persisted options
    say (rocksdict reopens a store with the options RocksDB saved last, so those of a bulk
    load that did not end would stay); and if level 0 holds as many files as RocksDB's default
    limits allow (that load's), the limits raised until :func:`restore_l0_limits` finds it
    compacted. True if raised."""
    files = db.property_int_value("rocksdb.num-files-at-level0") or 0
    limit = _BULK_L0_LIMIT if files >= _L0_SLOWDOWN else None
    db.set_options(
        {
            "disable_auto_compactions": "false",
            "level0_slowdown_writes_trigger": str(limit or _L0_SLOWDOWN),
            "level0_stop_writes_trigger": str(limit or _L0_STOP),
        }
    )
    return limit is not None


def restore_l0_limits(db: Rdict) -> bool:
    """RocksDB's default level-0 limits again, if level 0 is under them; True if restored."""
    files = db.property_int_value("rocksdb.num-files-at-level0") or 0
    if files >= _L0_SLOWDOWN:
        return False
    db.set_options(
        {
            "level0_slowdown_writes_trigger": str(_L0_SLOWDOWN),
            "level0_stop_writes_trigger": str(_L0_STOP),
        }
    )
    return True


def compacting(db: Rdict) -> bool:
    """True while RocksDB has compactions running or pending."""
    pending = db.property_int_value("rocksdb.compaction-pending") or 0
    running = db.property_int_value("rocksdb.num-running-compactions") or 0
    return bool(pending or running)
