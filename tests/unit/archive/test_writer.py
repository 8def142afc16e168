"""The consume loop and its writer thread: a batch out while the loop buffers the next records.

The loop's bookkeeping (positions, buffers, following the table after a lost race) is pure
logic over real Delta tables; the consumer is a stand-in that records seeks and assignments
(the real broker is in tests/integration/test_archive.py).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import Message, TopicPartition
from deltalake import DeltaTable

from archive.decode import Consumed
from archive.schema import COMMANDS
from archive.service import Archiver
from archive.settings import ArchiveSettings
from archive.sink import DeltaSink, app_id
from archive.writer import WAIT_ALL
from tests.unit.archive.test_sink import TOPICS, offsets_in, records, rows


class StandInConsumer:
    """What the loop calls on its consumer outside consume(): assignment, seeks, commits."""

    def __init__(self) -> None:
        self.assigned: list[tuple[str, int, int]] = []
        self.seeks: list[tuple[str, int, int]] = []

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned += [(tp.topic, tp.partition, tp.offset) for tp in partitions]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def commit(self, **_: Any) -> None:
        pass

    def close(self) -> None:
        pass


def messages(consumed: list[Consumed], topic: str = "") -> list[Message]:
    return [
        Message(
            topic=topic or c.topic,
            partition=c.partition,
            offset=c.offset,
            key=c.key,
            value=c.value,
            headers=cast("list[tuple[str, bytes]]", c.headers),
            timestamp=(1, c.timestamp_ms),
        )
        for c in consumed
    ]


def archiver(
    root: Path, flush_max_records: int, writer_threads: int = 1
) -> tuple[Archiver, StandInConsumer]:
    settings = ArchiveSettings(
        root=str(root),
        topic_prefix=TOPICS.prefix,
        bootstrap_servers="127.0.0.1:9",  # never reached: the consumer is replaced
        flush_max_records=flush_max_records,
        flush_interval_ms=60_000,
        writer_threads=writer_threads,
    )
    member = Archiver(settings, stop=threading.Event())
    member._consumer.close()
    stand_in = StandInConsumer()
    member._consumer = stand_in  # type: ignore[assignment]
    return member, stand_in


def test_a_batch_that_lost_its_race_drops_what_was_buffered_after_it(tmp_path: Path) -> None:
    member, consumer = archiver(tmp_path, flush_max_records=5)
    member._on_assign(consumer, [TopicPartition(TOPICS.commands, 0)])  # type: ignore[arg-type]
    assert consumer.assigned == [(TOPICS.commands, 0, -2)]  # the beginning: an empty table
    # Another writer (a member that held partition 0 and did not notice losing it) archives
    # offsets 0..4 first.
    zombie = DeltaSink(tmp_path / "commands", COMMANDS, TOPICS.commands)
    zombie.assign([0])
    zombie.flush(rows(records(0, range(5))), {0: 5})

    member._take(messages(records(0, range(5))), now=0.0)
    member._flush_due(now=0.0)  # offsets 0..4 go to the writer
    member._take(messages(records(0, range(5, 8))), now=0.0)  # buffered while it writes
    member._collect(WAIT_ALL)  # its compare-and-set fails: the table is at 5

    assert consumer.seeks == [(TOPICS.commands, 0, 5)]
    assert member._buffers[TOPICS.commands].count == 0  # 5..7 dropped, read again after the seek
    assert member._positions[(TOPICS.commands, 0)] == 5
    member._take(messages(records(0, range(5, 8))), now=0.0)  # the re-read from the seek
    member.flush_all("stop")
    member._writer.close()
    assert offsets_in(tmp_path / "commands") == [(0, n) for n in range(8)]  # each once
    table = DeltaTable(str(tmp_path / "commands"))
    assert table.transaction_version(app_id(TOPICS.commands, 0)) == 8


@pytest.mark.parametrize("writer_threads", [0, 1, 2])
def test_batches_of_two_topics_commit_in_order_while_the_loop_consumes(
    tmp_path: Path, writer_threads: int
) -> None:
    member, consumer = archiver(tmp_path, flush_max_records=10, writer_threads=writer_threads)
    topics = (TOPICS.commands, TOPICS.results)  # results: archived as undecodable, still once
    assigned = [TopicPartition(t, p) for t in topics for p in (0, 1)]
    member._on_assign(consumer, assigned)  # type: ignore[arg-type]
    most_out = 0
    for start in range(0, 100, 7):  # consume() batches of 7 per partition
        for topic in topics:
            for partition in (0, 1):
                chunk = records(partition, range(start, min(100, start + 7)))
                member._take(messages(chunk, topic), 0.0)
        member._collect()
        member._flush_due(now=0.0)
        most_out = max(most_out, len(member._writer._out))
    member.flush_all("stop")
    member._writer.close()
    assert most_out == writer_threads  # 0: written on the loop's thread
    for topic, name in zip(topics, ("commands", "results"), strict=True):
        path = tmp_path / name
        assert offsets_in(path) == [(p, n) for p in (0, 1) for n in range(100)]
        table = DeltaTable(str(path))
        assert [table.transaction_version(app_id(topic, p)) for p in (0, 1)] == [100, 100]
    assert consumer.seeks == []


def test_a_table_due_by_age_is_committed_beside_another_tables_batch(tmp_path: Path) -> None:
    member, consumer = archiver(tmp_path, flush_max_records=10)
    assigned = [TopicPartition(t, 0) for t in (TOPICS.commands, TOPICS.results)]
    member._on_assign(consumer, assigned)  # type: ignore[arg-type]
    member._take(messages(records(0, range(10)), TOPICS.commands), now=0.0)
    member._take(messages(records(0, range(3)), TOPICS.results), now=0.0)
    assert member._flush_due(now=0.0) is False  # commands due by size: to the writer
    assert member._writer.holds(TOPICS.commands)
    # results due by age while the writer holds the commands batch: committed right here
    assert member._flush_due(now=61.0) is False
    assert offsets_in(tmp_path / "results") == [(0, n) for n in range(3)]
    assert member._writer.holds(TOPICS.commands)  # not taken back yet
    member._take(messages(records(0, range(10, 12)), TOPICS.commands), now=61.0)
    assert member._flush_due(now=200.0) is True  # commands due by age, its batch still out
    member.flush_all("stop")
    member._writer.close()
    assert offsets_in(tmp_path / "commands") == [(0, n) for n in range(12)]
