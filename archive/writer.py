"""Decode and commit one batch of a topic: on a writer thread beside the consume loop.

The consume loop hands a topic's buffered records over as one :class:`Batch` and goes on
consuming while a writer thread takes the batch's fields out of the message objects, decodes
them (:mod:`archive.bulk`) and writes rows and offsets as one Delta commit
(:meth:`archive.sink.DeltaSink.flush`). At most ``threads`` batches are out at a time and at most
one per topic: the loop hands a topic's next batch over (or answers a rebalance, or stops) only
after it has taken the previous one's :class:`Written` back, so the records held are the
batches being written and the buffers being filled (at most about twice ``flush_max_records``
per topic), and the commits of a partition land in offset order.

The writer never touches the consumer, the consume loop never touches a sink while a batch is
out: seeks, offset commits for lag tools and the positions stay with the loop's thread.
"""

from __future__ import annotations

import time
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
from confluent_kafka import Message

from archive.bulk import RecordColumns, columns_to_arrow
from archive.decode import TableCodec
from archive.sink import DeltaSink, FlushResult

# BatchWriter.take's waits besides a topic's name ("*" is not allowed in a Kafka topic name).
WAIT_ANY = "*any"
WAIT_ALL = "*all"


@dataclass(frozen=True)
class Batch:
    """A topic's records taken from its buffer, by partition in offset order, and why."""

    topic: str
    parts: dict[int, list[Message]]
    reason: str  # size, age, revoke, stop


@dataclass(frozen=True)
class Written:
    """What writing a :class:`Batch` did: the sink's result, the next offset of every
    partition in the batch (those not in ``result.lost`` are now the table's), the rows decoded
    and the seconds it took (decode and commit)."""

    batch: Batch
    result: FlushResult
    next_offsets: dict[int, int]
    rows: pa.Table
    seconds: float


def write(batch: Batch, table: TableCodec, sink: DeltaSink) -> Written:
    """Decode ``batch`` and commit it with its offsets (one Delta commit); raises what
    :meth:`DeltaSink.flush` raises."""
    started = time.perf_counter()
    messages = [m for ms in batch.parts.values() for m in ms]
    columns = RecordColumns.of_messages(messages)
    rows = columns_to_arrow(table, columns, archived_at_us=time.time_ns() // 1000)
    next_offsets = {p: (ms[-1].offset() or 0) + 1 for p, ms in batch.parts.items()}
    result = sink.flush(rows, next_offsets)
    return Written(batch, result, next_offsets, rows, time.perf_counter() - started)


class BatchWriter:
    """Writer threads and the batches they hold: at most ``threads`` at a time, one per topic
    (so a partition's commits land in offset order and a sink is used by one thread)."""

    def __init__(
        self, tables: dict[str, TableCodec], sinks: dict[str, DeltaSink], threads: int = 1
    ) -> None:
        self._tables, self._sinks, self._slots = tables, sinks, threads
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix="archive-writer"
        )  # started on the first submit only
        self._out: dict[str, Future[Written]] = {}

    def holds(self, topic: str) -> bool:
        """A batch of ``topic`` is out (written or not) and not yet taken back."""
        return topic in self._out

    @property
    def full(self) -> bool:
        """Every slot holds a batch not yet taken back."""
        return len(self._out) >= self._slots

    def submit(self, batch: Batch) -> None:
        """Hand ``batch`` to a writer thread: a slot must be free and no batch of its topic out."""
        if self.full or batch.topic in self._out:
            raise RuntimeError("archive writer: no free slot for the batch")
        table, sink = self._tables[batch.topic], self._sinks[batch.topic]
        self._out[batch.topic] = self._pool.submit(write, batch, table, sink)

    def take(self, wait: str = "") -> list[Written]:
        """The batches written and not yet taken back, after waiting as ``wait`` says: ""
        not at all, :data:`WAIT_ANY` until one is written (when any is out), :data:`WAIT_ALL`
        until every one is, or a topic's name until its batch is. Raises what a write raised
        (that batch is taken back too; nothing of it is in the table unless its commit landed,
        which a restart reads)."""
        if wait and self._out:
            if wait in (WAIT_ANY, WAIT_ALL):
                pending = list(self._out.values())
            else:
                pending = [self._out[wait]] if wait in self._out else []
            first = futures.FIRST_COMPLETED if wait == WAIT_ANY else futures.ALL_COMPLETED
            futures.wait(pending, return_when=first)
        done = [topic for topic, out in self._out.items() if out.done()]
        return [self._out.pop(topic).result() for topic in done]

    def close(self) -> None:
        """Wait for the batches out (if any), then end the threads."""
        self._pool.shutdown(wait=True)
