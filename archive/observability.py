"""The archive's Prometheus metrics (``PRGATE_METRICS_LISTEN``)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import CollectorRegistry, Counter, Histogram

from prgate.observability.metrics import new_registry

FLUSH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ArchiveMetrics:
    """Records archived, undecodable ones, commits and their duration, races lost."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or new_registry()
        self.records = Counter(
            "prgate_archive_records",
            "Records committed to the archive tables, by table",
            ["table"],
            registry=self.registry,
        )
        self.undecodable = Counter(
            "prgate_archive_undecodable_records",
            "Records committed with a decode_error (kept with their raw bytes), by table",
            ["table"],
            registry=self.registry,
        )
        self.commits = Counter(
            "prgate_archive_commits", "Delta commits, by table", ["table"], registry=self.registry
        )
        self.flush_seconds = Histogram(
            "prgate_archive_flush_seconds",
            "Decoding plus the Delta commit of one flush",
            ["table"],
            buckets=FLUSH_BUCKETS,
            registry=self.registry,
        )
        self.lost = Counter(
            "prgate_archive_partitions_lost_race",
            "Partitions dropped from a flush because another writer archived them first",
            registry=self.registry,
        )

    def flushed(self, table: str, rows: int, batch: pa.Table, seconds: float, lost: int) -> None:
        """Count one flush: ``rows`` committed of ``batch``, ``lost`` partitions dropped."""
        if rows:
            self.records.labels(table).inc(rows)
            self.commits.labels(table).inc()
            errors = batch.num_rows - pc.count(batch["decode_error"], mode="only_null").as_py()
            if errors and not lost:
                self.undecodable.labels(table).inc(errors)
        self.flush_seconds.labels(table).observe(seconds)
        if lost:
            self.lost.inc(lost)
