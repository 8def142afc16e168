"""The archive's settings: one typed object from flags and ``PRGATE_ARCHIVE_*`` variables.

``ArchiveSettings`` extends :class:`prgate.kafka.settings.KafkaSettings` like the processor's,
so one object carries the connection, the topic names and the archive's own knobs.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prgate.kafka.provision import cache_root
from prgate.kafka.settings import KafkaSettings
from prgate.settings import setting


def default_root() -> Path:
    """``~/.cache/prgate/archive`` (the project's cache, as for the local broker)."""
    return cache_root() / "archive"


@dataclass(frozen=True)
class ArchiveSettings(KafkaSettings):
    """Everything an archive process (and ``prgate archive maintain``) is configured with."""

    root: str = setting(
        "",
        "PRGATE_ARCHIVE_ROOT",
        "directory of the Delta tables, one per topic (default: cache/archive)",
    )
    group_id: str = setting(
        "prgate-archive", "PRGATE_ARCHIVE_GROUP_ID", "consumer group of the archive processes"
    )
    instance_id: str = setting(
        "",
        "PRGATE_ARCHIVE_INSTANCE_ID",
        "stable name of this archive instance (group.instance.id: a restarted instance gets its "
        "partitions back without a rebalance); empty: <hostname>-<pid>, dynamic membership",
    )
    flush_max_records: int = setting(
        20_000,
        "PRGATE_ARCHIVE_FLUSH_MAX_RECORDS",
        "records of one table buffered before they are written as one Delta commit",
    )
    flush_interval_ms: int = setting(
        5000,
        "PRGATE_ARCHIVE_FLUSH_INTERVAL_MS",
        "longest time a consumed record waits for its commit (bounds the delay until visible)",
    )
    writer_threads: int = setting(
        1,
        "PRGATE_ARCHIVE_WRITER_THREADS",
        "threads that decode and commit due batches while the consumer goes on (each holds one "
        "batch of one table); 0: on the consuming thread, which waits meanwhile",
    )
    session_timeout_ms: int = setting(
        10_000,
        "PRGATE_ARCHIVE_SESSION_TIMEOUT_MS",
        "consumer session.timeout.ms: how soon a crashed archive's partitions move",
    )
    vacuum_retention_hours: int = setting(
        168,
        "PRGATE_ARCHIVE_VACUUM_RETENTION_HOURS",
        "`prgate archive maintain`: files replaced by compaction (and files no commit "
        "references) are deleted once older than this; readers of older versions need them",
    )
    metrics_listen: str = setting(
        "", "PRGATE_METRICS_LISTEN", "host:port to serve Prometheus /metrics on (empty: off)"
    )
    log_level: str = setting("INFO", "PRGATE_LOG_LEVEL", "log level")

    def __post_init__(self) -> None:
        super().__post_init__()  # the Kafka properties file
        checks: list[tuple[bool, str]] = [
            (bool(self.group_id), "group_id must not be empty"),
            (self.flush_max_records >= 1, "flush_max_records must be >= 1"),
            (self.flush_interval_ms >= 10, "flush_interval_ms must be >= 10"),
            (0 <= self.writer_threads <= 4, "writer_threads must be 0 to 4"),
            (self.session_timeout_ms >= 1000, "session_timeout_ms must be >= 1000"),
            (self.vacuum_retention_hours >= 0, "vacuum_retention_hours must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def root_path(self) -> Path:
        """The tables' directory: ``root`` or :func:`default_root`."""
        return Path(self.root).expanduser() if self.root else default_root()

    @property
    def client_name(self) -> str:
        return self.instance_id or f"{socket.gethostname()}-{os.getpid()}"

    def consumer_config(self, on_error: Callable[[Any], None] | None = None) -> dict[str, Any]:
        """The group consumer: committed reads only; positions come from the tables.

        Kafka offsets are committed after each table commit only so that lag tools work; they
        never position the consumer (on_assign seeks to the table's offsets).
        """
        extra: dict[str, Any] = {"group.instance.id": self.instance_id} if self.instance_id else {}
        if on_error is not None:
            extra["error_cb"] = on_error
        return self.client_config(
            **{
                "group.id": self.group_id,
                "client.id": f"prgate-archive-{self.client_name}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": self.session_timeout_ms,
                "heartbeat.interval.ms": max(500, self.session_timeout_ms // 4),
                "enable.partition.eof": False,
                **extra,
            }
        )
