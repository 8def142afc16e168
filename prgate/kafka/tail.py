"""Read every partition of one topic on a dedicated thread and hand batches to the event loop.

The gateway's reply router and read model both need the same thing: a consumer that is not
part of any consumer group (``assign()`` on all partitions, nothing committed), reads only
committed transactional records, starts at offsets the owner chooses, and reports when it has
reached the end offsets seen at start ("caught up").

Threading: confluent-kafka's consumer blocks, so it lives on its own thread. Records are
decoded on that thread (``decode``) and the decoded batch is applied on the event loop
(``apply``) via ``call_soon_threadsafe``; all of the owner's state is touched only on the loop.
The thread waits (in short, bounded slices) until the previous batch was applied before it
hands over the next one, so at most one batch is in flight and memory stays bounded however
slow the loop is. Every blocking Kafka call has a timeout; ``close()`` stops the thread and
closes the consumer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from prgate.kafka.settings import KafkaSettings
from prgate.observability import logs

log = logging.getLogger(__name__)

T = TypeVar("T")

# Chooses where each partition starts: given the consumer and the topic's partitions, returns
# them with offsets set (an absolute offset, OFFSET_BEGINNING or OFFSET_END). Runs on the thread.
StartOffsets = Callable[[Consumer, list[TopicPartition]], list[TopicPartition]]


def from_beginning(_consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
    """Start every partition at its first retained record."""
    return [TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in partitions]


class TopicTail(Generic[T]):
    """One consumer thread over all partitions of ``topic``."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        *,
        name: str,
        decode: Callable[[Message], T],
        apply: Callable[[Sequence[T]], None],
        start_offsets: StartOffsets = from_beginning,
        on_caught_up: Callable[[], None] | None = None,
        batch_size: int = 500,
        poll_timeout_s: float = 0.2,
        request_timeout_s: float = 5.0,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.topic = topic
        self._repeats = logs.Repeats()  # of tail_error lines
        self.name = name
        self._decode = decode
        self._apply = apply
        self._start_offsets = start_offsets
        self._on_caught_up = on_caught_up
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._request_timeout_s = request_timeout_s
        self._config: dict[str, Any] = kafka.client_config(
            **{
                # Never joins or commits: the id only has to be unique.
                "group.id": f"prgate-{name}-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 100,
                "client.id": f"prgate-{name}",
            }
        )
        self._config.update(extra or {})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._applied = threading.Event()
        self._assigned: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._caught_up = False
        self.partitions = 0
        self.errors = 0

    def start(self) -> asyncio.Future[None]:
        """Start the thread; the returned future resolves once partitions are assigned."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._loop = asyncio.get_running_loop()
        self._assigned = self._loop.create_future()
        self._stopped = self._loop.create_future()
        self._applied.set()
        self._thread = threading.Thread(target=self._run, name=f"prgate-{self.name}", daemon=True)
        self._thread.start()
        return self._assigned

    def caught_up(self) -> bool:
        """True once every partition reached the end offset it had when the tail started."""
        return self._caught_up

    async def close(self, timeout: float | None = None) -> None:
        """Stop the thread and close the consumer (on the thread), waiting at most ``timeout``.

        The default covers one blocking Kafka request (an assignment attempt against a dead
        broker) plus the consumer's close. Past it the daemon thread is left to finish alone.
        """
        thread, stopped = self._thread, self._stopped
        if thread is None or stopped is None:
            return
        self._stop.set()
        if timeout is None:
            timeout = self._request_timeout_s + 2.0
        try:
            await asyncio.wait_for(asyncio.shield(stopped), timeout)
        except TimeoutError:
            log.warning("tail_close_timeout", extra={"tail": self.name})
            return
        thread.join(timeout=1.0)

    # --- on the consumer thread -------------------------------------------------------------

    def _call_on_loop(self, callback: Callable[[], object]) -> bool:
        loop = self._loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed: nobody to deliver to any more
            self._stop.set()
            return False
        return True

    def _run(self) -> None:
        consumer: Consumer | None = None
        try:
            consumer = Consumer(self._config)
            pending = self._assign_with_retry(consumer)
            if pending is None:
                return
            self._consume(consumer, pending)
        except Exception:
            log.exception("tail_thread_failed", extra={"tail": self.name})
        finally:
            if consumer is not None:
                try:
                    consumer.close()
                except Exception:
                    log.exception("tail_consumer_close_failed", extra={"tail": self.name})
            self._call_on_loop(self._resolve_stopped)
            log.info("tail_stopped", extra={"tail": self.name, "topic": self.topic})

    def _resolve_stopped(self) -> None:
        for fut in (self._stopped, self._assigned):
            if fut is not None and not fut.done():
                if fut is self._assigned:
                    fut.set_exception(KafkaException(f"{self.name} stopped before assignment"))
                    fut.exception()  # mark retrieved: nobody may be awaiting it any more
                else:
                    fut.set_result(None)

    def _assign_with_retry(self, consumer: Consumer) -> dict[int, int] | None:
        """Assign all partitions; returns {partition: end offset still to reach}."""
        attempt = 0
        while not self._stop.is_set():
            try:
                return self._assign(consumer)
            except Exception as exc:
                attempt += 1
                log.warning(
                    "tail_assign_failed",
                    extra={
                        "tail": self.name,
                        "topic": self.topic,
                        "attempt": attempt,
                        "error": str(exc),
                    },
                )
                self._stop.wait(min(0.2 * attempt, 2.0))
        return None

    def _assign(self, consumer: Consumer) -> dict[int, int]:
        timeout = self._request_timeout_s
        metadata = consumer.list_topics(self.topic, timeout=timeout)
        topic_md = metadata.topics.get(self.topic)
        if topic_md is None or topic_md.error is not None:
            raise KafkaException(topic_md.error if topic_md is not None else "no metadata")
        partitions = [TopicPartition(self.topic, p) for p in sorted(topic_md.partitions)]
        if not partitions:
            raise KafkaException(f"topic {self.topic} has no partitions")
        bounds = {
            tp.partition: consumer.get_watermark_offsets(tp, timeout=timeout) for tp in partitions
        }
        starts = self._start_offsets(consumer, partitions)
        # With read_committed the high watermark is the last stable offset: the end we can reach.
        pending: dict[int, int] = {}
        for tp in starts:
            low, high = bounds[tp.partition]
            start = {OFFSET_BEGINNING: low, OFFSET_END: high}.get(tp.offset, tp.offset)
            if start < high:
                pending[tp.partition] = high
        consumer.assign(starts)
        self.partitions = len(partitions)
        log.info(
            "tail_assigned",
            extra={
                "tail": self.name,
                "topic": self.topic,
                "partitions": len(partitions),
                "behind": len(pending),
            },
        )
        self._call_on_loop(self._resolve_assigned)
        return pending

    def _resolve_assigned(self) -> None:
        if self._assigned is not None and not self._assigned.done():
            self._assigned.set_result(None)

    def _consume(self, consumer: Consumer, pending: dict[int, int]) -> None:
        announced = False
        while not self._stop.is_set():
            # consume(n, timeout) waits the whole timeout unless n records arrive, so wait for
            # one record, then take whatever else is already fetched without waiting.
            messages = consumer.consume(1, timeout=self._poll_timeout_s)
            if messages:
                messages += consumer.consume(self._batch_size - 1, timeout=0)
            decoded: list[T] = []
            for msg in messages:
                err = msg.error()
                if err is None:
                    decoded.append(self._decode(msg))
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.pop(msg.partition() or 0, None)
                else:
                    self.errors += 1
                    logs.log_repeating(
                        log, self._repeats, logging.WARNING, "tail_error",
                        {"tail": self.name, "error": err.str()},
                        err.name(), logs.masked(err.str()),
                    )  # fmt: skip
            if pending:
                self._check_positions(consumer, pending)
            reached = not pending and not announced
            if not decoded and not reached:
                continue
            if not self._hand_over(decoded, reached):
                return
            announced = announced or reached

    def _check_positions(self, consumer: Consumer, pending: dict[int, int]) -> None:
        positions = consumer.position([TopicPartition(self.topic, p) for p in pending])
        for tp in positions:
            if tp.offset >= 0 and tp.offset >= pending.get(tp.partition, 0):
                pending.pop(tp.partition, None)

    def _hand_over(self, batch: list[T], reached_end: bool) -> bool:
        # Backpressure: wait for the previous batch to be applied, in slices, so a stop request
        # is seen within one slice.
        while not self._applied.wait(0.1):
            if self._stop.is_set():
                return False
        self._applied.clear()

        def apply() -> None:
            try:
                if batch:
                    self._apply(batch)
                if reached_end:
                    self._caught_up = True
                    log.info("tail_caught_up", extra={"tail": self.name, "topic": self.topic})
                    if self._on_caught_up is not None:
                        self._on_caught_up()
            except Exception:
                log.exception("tail_apply_failed", extra={"tail": self.name})
            finally:
                self._applied.set()

        return self._call_on_loop(apply)
