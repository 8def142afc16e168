"""``prgate archive maintain``: compaction, vacuum and checkpoints of the archive tables.

Run it from ONE place only (a cron job or a Kubernetes CronJob with ``concurrencyPolicy:
Forbid``), never inside the archive members. Two compactions of one table at the same time
duplicate its rows in deltalake 1.6: both OPTIMIZE commits remove the same small files and add
their own copy, and delta-rs' conflict checker lets the second one through (an OPTIMIZE commit
cannot carry the app transactions that fence the appends either). A lock file in the tables'
directory (``flock``, released when the process dies) makes a second run on the same file
system give up at once; on an object store the single scheduler is the only guard.

Compaction runs beside the archive members safely: their appends and an OPTIMIZE commit are
rebased over each other. By default only closed days (before today, UTC) are compacted, so a
day's files are rewritten once instead of at every run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from archive.schema import PARTITION_COLUMN, TABLES

log = logging.getLogger(__name__)

LOCK_FILE = ".prgate-maintenance.lock"
TARGET_FILE_BYTES = 128 * 1024 * 1024


class MaintenanceBusy(Exception):
    """Another ``prgate archive maintain`` holds the lock of these tables."""


@contextlib.contextmanager
def maintenance_lock(root: Path) -> Iterator[None]:
    """Hold the tables' maintenance lock, or raise MaintenanceBusy at once."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise MaintenanceBusy(f"another maintenance run holds {root / LOCK_FILE}") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def maintain_table(
    path: Path, *, retention_hours: int, include_today: bool, today: dt.date
) -> dict[str, Any]:
    """Compact, vacuum and checkpoint one table; returns what was done (JSON-able)."""
    table = DeltaTable(str(path))
    filters = None if include_today else [(PARTITION_COLUMN, "<", today.isoformat())]
    compacted = table.optimize.compact(
        partition_filters=filters,
        target_size=TARGET_FILE_BYTES,
    )
    # full=True also deletes files no commit references (a writer killed between writing its
    # parquet file and committing); never with a retention that a live writer's file could be
    # younger than.
    deleted = table.vacuum(
        retention_hours=retention_hours,
        dry_run=False,
        enforce_retention_duration=False,
        full=retention_hours >= 1,
    )
    table.create_checkpoint()
    table.cleanup_metadata()
    return {
        "table": path.name,
        "version": table.version(),
        "files_removed": compacted.get("numFilesRemoved", 0),
        "files_added": compacted.get("numFilesAdded", 0),
        "files_vacuumed": len(deleted),
    }


def maintain(
    root: Path,
    *,
    retention_hours: int,
    include_today: bool = False,
    today: dt.date | None = None,
) -> list[dict[str, Any]]:
    """Maintain every archive table under ``root`` while holding the lock."""
    day = today or dt.datetime.now(dt.UTC).date()
    done = []
    with maintenance_lock(root):
        for spec in TABLES:
            path = root / spec.name
            try:
                report = maintain_table(
                    path, retention_hours=retention_hours, include_today=include_today, today=day
                )
            except TableNotFoundError:
                log.info("maintain_skipped", extra={"table": spec.name, "reason": "no_table"})
                continue
            log.info("maintained", extra=dict(report))
            done.append(report)
    return done
