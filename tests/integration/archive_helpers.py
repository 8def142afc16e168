"""Running ``python -m archive`` in tests and reading back what it archived.

member = start_archive(kafka, root, log_dir, "a1")
expected = committed_offsets(kafka, topics)       # what read_committed reads, per topic
wait_archived(root, expected, timeout=60)         # every offset in its table, or fail
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from helpers.kafka import consume_all

from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings
from tests.e2e.stack import ServiceProcess, base_env

# The broker's group.min.session.timeout.ms: a killed member's partitions move after this.
SESSION_TIMEOUT_MS = "6000"

Offsets = dict[str, list[tuple[int, int]]]  # table -> sorted (partition, offset), duplicates kept


def table_of(topics: Topics) -> dict[str, str]:
    return {
        topics.commands: "commands",
        topics.results: "results",
        topics.events: "events",
        topics.refusals: "refusals",
    }


def start_archive(
    kafka: KafkaSettings, root: Path, log_dir: Path, instance: str, **env: str
) -> ServiceProcess:
    """``python -m archive`` as a member of this test's group (static membership)."""
    merged = base_env(kafka)
    merged.update(
        {
            "PRGATE_ARCHIVE_ROOT": str(root),
            "PRGATE_ARCHIVE_GROUP_ID": f"{kafka.topic_prefix}archive",
            "PRGATE_ARCHIVE_INSTANCE_ID": instance,
            "PRGATE_ARCHIVE_SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS,
            "PRGATE_ARCHIVE_FLUSH_INTERVAL_MS": "300",
            **env,
        }
    )
    service = ServiceProcess(f"archive-{instance}", "archive", merged, log_dir / f"{instance}.log")
    service.start()
    return service


def committed_offsets(kafka: KafkaSettings, timeout: float = 30.0) -> Offsets:
    """(partition, offset) of every record a read_committed reader sees, per archive table."""
    found: Offsets = {}
    for topic, table in table_of(kafka.topics).items():
        records = consume_all(kafka, topic, timeout=timeout)
        found[table] = sorted((m.partition() or 0, m.offset() or 0) for m in records)
    return found


def archived_offsets(root: Path) -> Offsets:
    """(partition, offset) of every row of each archive table (a missing table: none)."""
    found: Offsets = {}
    for table in ("commands", "results", "events", "refusals"):
        try:
            data = DeltaTable(str(root / table)).to_pyarrow_table(
                columns=["kafka_partition", "kafka_offset"]
            )
        except TableNotFoundError:
            found[table] = []
            continue
        found[table] = sorted(
            zip(data["kafka_partition"].to_pylist(), data["kafka_offset"].to_pylist(), strict=True)
        )
    return found


def wait_archived(root: Path, expected: Offsets, timeout: float) -> Offsets:
    """Wait until every table holds at least as many rows as expected; return what it holds."""
    deadline = time.monotonic() + timeout
    while True:
        have = archived_offsets(root)
        if all(len(have[t]) >= len(expected[t]) for t in expected):
            return have
        if time.monotonic() > deadline:
            missing = {t: len(expected[t]) - len(have[t]) for t in expected}
            raise AssertionError(f"not archived within {timeout}s: missing rows {missing}")
        time.sleep(0.3)


def duplicates(offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [key for key, n in Counter(offsets).items() if n > 1]
