"""Decode and commit one batch of a topic: on a writer thread beside the consume loop.

The consume loop hands a topic's buffered records over as one :class:`Batch` and goes on
consuming while a single writer thread takes the batch's fields out of the message objects,
decodes them (:mod:`archive.bulk`) and writes rows and offsets as one Delta commit
(:meth:`archive.sink.DeltaSink.flush`). At most one batch is with the writer at a time: the
loop hands over the next one (or answers a rebalance, or stops) only after it has taken the
previous one's :class:`Written` back, so the records held are at most the batch being written
and the buffers being filled (about twice ``flush_max_records`` per topic), and the commits of a
partition land in offset order.

The writer never touches the consumer, the consume loop never touches a sink while a batch is
out: seeks, offset commits for lag tools and the positions stay with the loop's thread.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
from confluent_kafka import Message

from archive.bulk import RecordColumns, columns_to_arrow
from archive.decode import TableCodec
from archive.sink import DeltaSink, FlushResult


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
    """One writer thread and the batch it holds (none or one)."""

    def __init__(self, tables: dict[str, TableCodec], sinks: dict[str, DeltaSink]) -> None:
        self._tables, self._sinks = tables, sinks
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-writer")
        self._out: Future[Written] | None = None

    @property
    def busy(self) -> bool:
        """A batch is out and not yet written."""
        return self._out is not None and not self._out.done()

    def submit(self, batch: Batch) -> None:
        """Hand ``batch`` to the writer thread; the previous one must have been taken back."""
        if self._out is not None:
            raise RuntimeError("archive writer: the previous batch was not taken back")
        self._out = self._pool.submit(
            write, batch, self._tables[batch.topic], self._sinks[batch.topic]
        )

    def take(self, *, wait: bool) -> Written | None:
        """The batch written since the last call (waiting for it when ``wait``), or None when
        none is out (or, without ``wait``, it is still being written). Raises what the write
        raised; the batch is then taken back too (nothing of it is in the table unless its
        commit landed, which a restart reads from the table)."""
        out = self._out
        if out is None or (not wait and not out.done()):
            return None
        self._out = None
        return out.result()

    def close(self) -> None:
        """Wait for the batch out (if any), then end the thread."""
        self._pool.shutdown(wait=True)
