"""The key layout of a state store (:mod:`prgate.state.store`), and how rows become a
RocksDB WriteBatch and index scans become snapshots.

Key layout (one RocksDB key space, raw bytes, sorted):

    d<pull request id>                  serialized PullRequest (the value Kafka carries);
                                        in indexed stores after a header: <repository>\\0
                                        <status, 4 bytes><version, 8 bytes>
    s<status, 4 bytes><pull request id>  b""   ListPullRequests by status
    x<repository>\\0<status><id>         b""   by both, and by repository (one run per
                                        status, merged by id)
    c<partition, 4 bytes>               checkpoint, 8 bytes big-endian
    o<partition, 4 bytes>               source offset (processor: the commands offset the
                                        state's last transaction committed), 8 bytes
    midentity                           JSON of :class:`StoreIdentity`

Repositories in keys are the canonical (case-folded) form; ids and repositories never contain
NUL (the field rules refuse control characters).
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterator, Mapping
from operator import itemgetter
from typing import cast

from rocksdict import Rdict, WriteBatch

DATA = b"d"
BY_STATUS = b"s"
BY_BOTH = b"x"
CHECKPOINT = b"c"
SOURCE = b"o"
IDENTITY = b"midentity"
COUNT = b"mcount"
SEP = b"\x00"
FORMAT = 3  # of the keys and values below; stored in the identity record


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


# The status numbers of today's PullRequestStatus, packed once.
_STATUS = {number: u32(number) for number in range(8)}
_first = itemgetter(0)
# One snapshot to write (see SnapshotStore.write_rows).
Row = tuple[bytes, bytes | None, bytes, int, int]


u64 = struct.Struct(">Q").pack  # 8 bytes, big-endian


def build_batch(
    rows: list[Row], known: Mapping[bytes, bytes | None], *, indexed: bool
) -> tuple[WriteBatch, int]:
    """The WriteBatch of ``rows`` (see :meth:`SnapshotStore.write_rows`) given the stored
    record of each id (``known``: its data record or None), and the change of the count."""
    deletes: list[bytes] = []
    data_keys: list[bytes] = []
    data_values: list[bytes] = []
    # Index entries by what precedes the id in their keys, to write each group in order.
    by_status: dict[bytes, list[bytes]] = {}
    by_both: dict[bytes, list[bytes]] = {}
    delta = 0
    rows.sort(key=_first)
    for key, value, repository, status_number, version in rows:
        old = known[key]
        delta += (value is not None) - (old is not None)
        if indexed and old is not None:
            old_repository, _, rest = bytes(old).partition(SEP)
            deletes += _index_keys(key, old_repository, rest[:4])
        if value is None:
            deletes.append(DATA + key)
            continue
        data_keys.append(key)
        if indexed:
            status = _STATUS.get(status_number) or u32(status_number)
            data_values.append(repository + SEP + status + u64(version) + value)
            # Inline (no call per entry): per snapshot on every cold load.
            group = by_status.get(status)
            if group is None:
                by_status[status] = [key]
            else:
                group.append(key)
            head = repository + SEP + status
            group = by_both.get(head)
            if group is None:
                by_both[head] = [key]
            else:
                group.append(key)
        else:
            data_values.append(value)
    # Deletes first (an index entry deleted and put again in one batch stays), then every
    # group in key order: RocksDB's memtable inserts a key that follows the previous one
    # for a fraction of the cost of a scattered one (sorting the ids is cheap, sorting all
    # five keys per snapshot in Python was not).
    batch = WriteBatch(raw_mode=True)
    put = batch.put
    for key in deletes:
        batch.delete(key)
    for key, value in zip(data_keys, data_values, strict=True):
        put(DATA + key, value)
    if indexed:
        for group_prefix, groups in (
            (BY_STATUS, by_status),
            (BY_BOTH, by_both),
        ):
            for head in sorted(groups):
                start = group_prefix + head
                for key in groups[head]:
                    put(start + key, b"")
    return batch, delta


def scan_snapshots(
    db: Rdict, *, indexed: bool, repository: str, status: int, after: str
) -> Iterator[bytes]:
    """See :meth:`SnapshotStore.scan`."""
    start = after.encode() + (SEP if after else b"")
    if repository and not status:
        # By repository: the by-both index, one run per status the repository has, merged
        # by id (an id has one status, so each comes once).
        head = BY_BOTH + repository.encode() + SEP
        runs = [_ids(db, head + status_key, start) for status_key in _statuses(db, head)]
        for pull_request_id in heapq.merge(*runs):
            value = db.get(DATA + pull_request_id)
            if value is not None:
                yield snapshot(value)
        return
    if repository and status:
        prefix = BY_BOTH + repository.encode() + SEP + u32(status)
    elif status:
        prefix = BY_STATUS + u32(status)
    else:
        prefix = DATA
    iterator = db.iter()
    iterator.seek(prefix + start)
    while iterator.valid():
        key: bytes = iterator.key()
        if not key.startswith(prefix):
            return
        if prefix == DATA:
            yield snapshot(iterator.value()) if indexed else iterator.value()
        else:
            value = db.get(DATA + key[len(prefix) :])
            if value is not None:
                yield snapshot(value)
        iterator.next()


def _index_keys(key: bytes, repository: bytes, status: bytes) -> tuple[bytes, bytes]:
    """The two index entries of ``key``."""
    return (
        BY_STATUS + status + key,
        BY_BOTH + repository + SEP + status + key,
    )


def snapshot(value: bytes) -> bytes:
    """The snapshot bytes of an indexed store's data record (after its header)."""
    return value[value.index(SEP) + 13 :]


def _ids(db: Rdict, prefix: bytes, start: bytes) -> Iterator[bytes]:
    """The ids of the index entries under ``prefix`` from ``start`` on, in order."""
    iterator = db.iter()
    iterator.seek(prefix + start)
    while iterator.valid():
        key: bytes = iterator.key()
        if not key.startswith(prefix):
            return
        yield key[len(prefix) :]
        iterator.next()


def _statuses(db: Rdict, head: bytes) -> list[bytes]:
    """The status keys (4 bytes each) under ``head`` in the by-both index: one seek each."""
    found: list[bytes] = []
    iterator = db.iter()
    iterator.seek(head)
    while iterator.valid():
        key: bytes = iterator.key()
        if not key.startswith(head):
            break
        status = key[len(head) : len(head) + 4]
        found.append(status)
        following = int.from_bytes(status, "big") + 1
        if following > 0xFFFFFFFF:
            break
        iterator.seek(head + u32(following))
    return found


def multi_get(db: Rdict, keys: list[bytes]) -> list[bytes | None]:
    """One RocksDB multi-get: each key's value or None, in order."""
    return cast(list[bytes | None], db.get(cast(list[str | int | float | bytes | bool], keys)))
