"""One Delta table written exactly once: rows and Kafka offsets in the same commit.

The offsets live in the table as Delta *application transactions* (``txn`` actions): one app id
per topic partition, ``prgate-archive:<topic>:<partition>``, whose version is the next offset to
archive (last archived offset + 1). ``write_deltalake`` puts them into the same commit JSON as
the data files, so a commit has both or neither; a SIGKILL at any moment leaves at most an
unreferenced parquet file (vacuum removes it), never a half commit.

Each flush is a compare-and-set. :meth:`DeltaSink.flush` refreshes the snapshot and checks that
every partition's version is still the one this process read at assignment or wrote last; a
partition where it is not (another member archived it: a rebalance this member missed, an
ambiguous commit that did land) is dropped from the batch and reported in
:attr:`FlushResult.lost`, so the caller seeks there. The commit is made against the refreshed
snapshot; delta-rs rebases it over concurrent commits of other partitions, and refuses it
(``CommitFailedError``) when a commit that won in between set one of its app ids: then the
check runs again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from archive.schema import PARTITION_COLUMN, TableSpec

log = logging.getLogger(__name__)

APP_ID_PREFIX = "prgate-archive"
# Table properties at creation. delta.setTransactionRetentionDuration is deliberately not set:
# with it, a checkpoint could drop the offsets of an idle partition and it would be archived
# again from its start.
TABLE_CONFIGURATION = {
    "delta.checkpointInterval": "100",
    "delta.logRetentionDuration": "interval 30 days",
    "delta.deletedFileRetentionDuration": "interval 1 days",
}
MAX_CAS_ATTEMPTS = 8


def app_id(topic: str, partition: int) -> str:
    """The Delta app id holding the next offset to archive of ``topic``/``partition``."""
    return f"{APP_ID_PREFIX}:{topic}:{partition}"


@dataclass
class FlushResult:
    """What a flush did: the table ``version`` written (None: nothing), ``rows`` in it, and the
    partitions ``lost`` to another writer, each with the table's next offset (seek there)."""

    version: int | None
    rows: int
    lost: dict[int, int] = field(default_factory=dict)
    attempts: int = 1


def open_table(path: Path, spec: TableSpec, topic: str) -> DeltaTable:
    """The table at ``path``, created (partitioned by day) when missing; creation races with
    another archive process are fine: the loser opens the winner's table."""
    for _ in range(20):
        try:
            return DeltaTable(str(path))
        except TableNotFoundError:
            pass
        try:
            path.mkdir(parents=True, exist_ok=True)
            DeltaTable.create(
                str(path),
                spec.schema,
                partition_by=[PARTITION_COLUMN],
                mode="ignore",
                name=f"prgate_archive_{spec.name}",
                description=f"prgate audit archive of {topic}",
                configuration=TABLE_CONFIGURATION,
            )
        except DeltaError as exc:  # another process created it at the same moment
            log.info("table_create_raced", extra={"table": spec.name, "error": exc})
        time.sleep(0.05)
    raise RuntimeError(f"cannot open or create the Delta table at {path}")


class DeltaSink:
    """Appends one topic's rows and offsets to its table (one commit per flush)."""

    def __init__(self, path: Path, spec: TableSpec, topic: str) -> None:
        self.path = path
        self.spec = spec
        self.topic = topic
        self._table = open_table(path, spec, topic)
        self._writer_properties = WriterProperties(compression="ZSTD")
        # partition -> the version we expect in the table: read at assignment or written last.
        self.expected: dict[int, int | None] = {}

    def assign(self, partitions: Iterable[int]) -> dict[int, int | None]:
        """Read where ``partitions`` stand in the table: next offset to archive, None if never."""
        self._table.update_incremental()
        found = {p: self._table.transaction_version(app_id(self.topic, p)) for p in partitions}
        self.expected.update(found)
        return found

    def revoke(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.expected.pop(partition, None)

    def flush(self, rows: pa.Table, next_offsets: Mapping[int, int]) -> FlushResult:
        """Append ``rows`` (of the partitions in ``next_offsets``) and set each partition's next
        offset, in one commit. Raises DeltaError/OSError on anything but a lost race (the
        process should then stop; a restart resumes from the table)."""
        pending = dict(next_offsets)
        lost: dict[int, int] = {}
        for attempt in range(1, MAX_CAS_ATTEMPTS + 1):
            self._table.update_incremental()
            for partition in list(pending):
                have = self._table.transaction_version(app_id(self.topic, partition))
                if partition not in self.expected or have != self.expected[partition]:
                    lost[partition] = have if have is not None else 0
                    del pending[partition]
            if not pending:
                return FlushResult(None, 0, lost, attempt)
            if lost:
                keep = pa.array(sorted(pending), pa.int32())
                rows = rows.filter(pc.is_in(rows["kafka_partition"], value_set=keep))
            txns = [Transaction(app_id(self.topic, p), version) for p, version in pending.items()]
            try:
                write_deltalake(
                    self._table,
                    rows,
                    mode="append",
                    # A newer archive adds columns; an older one beside it writes NULLs there.
                    schema_mode="merge",
                    partition_by=[PARTITION_COLUMN],
                    writer_properties=self._writer_properties,
                    commit_properties=CommitProperties(
                        app_transactions=txns, max_commit_retries=50
                    ),
                )
            except CommitFailedError as exc:
                # A concurrent commit set one of our app ids: re-read and compare again.
                log.warning(
                    "archive_commit_conflict",
                    extra={"table": self.spec.name, "attempt": attempt, "error": exc},
                )
                self._table = DeltaTable(str(self.path))
                continue
            self.expected.update(pending)
            return FlushResult(self._table.version(), rows.num_rows, lost, attempt)
        raise RuntimeError(f"{self.spec.name}: no commit after {MAX_CAS_ATTEMPTS} attempts")
