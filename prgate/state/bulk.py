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

# Bits per expected key. Two bits are set per key, so with 16 bits per key about 1.4 % of the
# keys never written are reported as maybe seen (and read from the store: still correct).
_BITS_PER_KEY = 16
_MIN_BITS = 1 << 16
_MAX_BITS = 1 << 31  # 256 MiB; beyond about 130M keys the false positives rise gracefully


class SeenKeys:
    """A bloom filter of the keys written to a store during its cold load.

    ``expected`` is the number of records to load (from the end offsets), used only to size
    the filter: 2 bytes per key. Answers are "certainly not written" or "maybe written";
    Python's ``hash`` of the key is the hash (stable within the process, which is all a filter
    that lives as long as the load needs).
    """

    def __init__(self, expected: int) -> None:
        bits = _MIN_BITS
        while bits < expected * _BITS_PER_KEY and bits < _MAX_BITS:
            bits <<= 1
        self._mask = bits - 1
        self._bits = bytearray(bits >> 3)

    @property
    def size_bytes(self) -> int:
        return len(self._bits)

    def seen(self, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` that may have been added (the others certainly were not)."""
        bits, mask = self._bits, self._mask
        found: list[str] = []
        for key in keys:
            h = hash(key)
            a = h & mask
            b = (h >> 32) & mask
            if bits[a >> 3] & (1 << (a & 7)) and bits[b >> 3] & (1 << (b & 7)):
                found.append(key)
        return found

    def unseen(self, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` certainly not added yet (the others may have been)."""
        bits, mask = self._bits, self._mask
        found: list[str] = []
        for key in keys:
            h = hash(key)
            a = h & mask
            b = (h >> 32) & mask
            if not (bits[a >> 3] & (1 << (a & 7)) and bits[b >> 3] & (1 << (b & 7))):
                found.append(key)
        return found

    def add_unseen(self, keys: Iterable[str], into: set[str]) -> int:
        """Add ``keys``; puts those certainly not added before (by an earlier call, or earlier
        in ``keys``) into ``into`` and returns how many those were."""
        bits, mask = self._bits, self._mask
        count = 0
        for key in keys:
            h = hash(key)
            a = h & mask
            b = (h >> 32) & mask
            byte_a, bit_a = a >> 3, 1 << (a & 7)
            byte_b, bit_b = b >> 3, 1 << (b & 7)
            if not (bits[byte_a] & bit_a and bits[byte_b] & bit_b):
                into.add(key)
                count += 1
                bits[byte_a] |= bit_a
                bits[byte_b] |= bit_b
        return count

    def add(self, keys: Iterable[str]) -> list[str]:
        """Add ``keys``; returns those certainly not added before (by an earlier call, or
        earlier in ``keys``)."""
        bits, mask = self._bits, self._mask
        found: list[str] = []
        for key in keys:
            h = hash(key)
            a = h & mask
            b = (h >> 32) & mask
            byte_a, bit_a = a >> 3, 1 << (a & 7)
            byte_b, bit_b = b >> 3, 1 << (b & 7)
            if not (bits[byte_a] & bit_a and bits[byte_b] & bit_b):
                found.append(key)
                bits[byte_a] |= bit_a
                bits[byte_b] |= bit_b
        return found
