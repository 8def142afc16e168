"""The processor's transactional producer, and how it is recovered when it goes wrong.

librdkafka's transactional API is followed as documented: a retriable error repeats the same
call, an abortable one aborts the transaction. Two things it does not cover are handled here:

- ``send_offsets_to_transaction`` can block past its own timeout when the group coordinator
  goes away (confluentinc/librdkafka#5456, #5511), for example across a broker restart. Every
  call that can hang runs through :func:`bounded_call`; a call that never returns makes the
  producer *wedged*.
- After a broker outage that outlived a transaction, a producer can stay stuck acquiring a
  new epoch, failing every following transaction.

In both cases the producer is replaced by a new one with the same ``transactional.id``: its
``init_transactions`` fences the old one and completes whatever it left open (aborts an open
transaction, finishes one whose commit the coordinator already received). A wedged producer
still has a thread inside one of its calls, so it is never closed or freed (that could crash
the process); it is kept referenced and left behind.

A replacement happens when Kafka misbehaves, often while it is down, so it does not give up
after a budget: it tries again (each attempt bounded, a new producer after one that hung or
failed for good) until Kafka answers, a fatal error (fenced) ends the run, or a stop request
ends it with :class:`StopRequested`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from processor.settings import ProcessorSettings

log = logging.getLogger(__name__)

TXN_CALL_TIMEOUT_S = 10.0  # one transactional API call
RETRY_BUDGET_S = 30.0  # all retries of one call together
CLOSE_LIMIT_S = 5.0
STUCK_MARGIN_S = 5.0  # beyond a call's own timeout, before the producer is declared stuck
REPLACE_BACKOFF_S = 0.5  # first pause between attempts to initialise a replacement producer
REPLACE_BACKOFF_MAX_S = 5.0


class StuckCallError(Exception):
    """A transactional call did not return within its bound (it ignored its own timeout)."""


class StopRequested(Exception):
    """A stop request ended a wait that only Kafka coming back would end otherwise."""


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The KafkaError inside a KafkaException, if any."""
    arg = exc.args[0] if exc.args else None
    return arg if isinstance(arg, KafkaError) else None


def bounded_call(what: str, call: Callable[[], Any], limit_s: float) -> None:
    """Run ``call`` on a helper thread and stop waiting for it after ``limit_s``."""
    done = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the waiting thread
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, name=f"txn-{what}", daemon=True).start()
    if not done.wait(limit_s):
        raise StuckCallError(f"{what} did not return within {limit_s:.0f}s")
    if failure:
        raise failure[0]


def retrying(what: str, call: Callable[[], Any], stop: threading.Event) -> None:
    """``call()``, repeated while librdkafka reports a retriable error (bounded).

    A stop request ends the retries: the caller aborts the batch, and it is redone later.
    """
    deadline = time.monotonic() + RETRY_BUDGET_S
    delay = 0.05
    while True:
        try:
            call()
            return
        except KafkaException as exc:
            error = kafka_error(exc)
            retriable = error is not None and error.retriable() and not error.fatal()
            if not retriable or time.monotonic() + delay > deadline or stop.is_set():
                raise
            log.warning("kafka_call_retry", extra={"call": what, "error": error})
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


class TransactionalProducer:
    """Owns the current transactional producer; replaces it when it cannot go on."""

    def __init__(
        self,
        settings: ProcessorSettings,
        instance_id: str,
        *,
        on_error: Callable[[KafkaError], None],
        stop: threading.Event,
    ) -> None:
        self._config = settings.producer_config(instance_id)
        self._failed_deliveries: list[tuple[str, bytes | None, bytes | None, KafkaError]] = []
        # With local state stores, the offsets of delivered snapshots are their checkpoints.
        self._positions_topic = settings.topics.pull_requests if settings.state_path else None
        self._positions: dict[int, int] = {}
        self._on_error = on_error
        self._generation = 0  # of the newest producer; errors of older ones are not ours
        self._stop = stop
        self._producer: Producer | None = None
        self._abandoned: list[Producer] = []

    @property
    def producer(self) -> Producer:
        assert self._producer is not None, "start() first"
        return self._producer

    @property
    def config(self) -> dict[str, Any]:
        """The client properties of the producers created from now on."""
        return self._config

    def configure(self, **config: Any) -> None:
        """Client properties for the producers created from now on (before start(), or before
        a replacement)."""
        self._config = self._config | config

    def take_failed_deliveries(self) -> list[tuple[str, bytes | None, bytes | None, KafkaError]]:
        """The records the current producer could not deliver since the last call, as
        ``(topic, key, value, error)``: only failures are reported
        (``delivery.report.only.error``), so a healthy batch pays nothing for this."""
        taken, self._failed_deliveries = self._failed_deliveries, []
        return taken

    def take_positions(self) -> dict[int, int]:
        """Per pull-requests partition, the offset after the highest snapshot delivered since
        the last call (only with a state directory; empty otherwise)."""
        taken, self._positions = self._positions, {}
        return taken

    def start(self) -> None:
        """Create the producer and fence (abort) anything its transactional.id left open.

        At start-up the retries are bounded: a processor that cannot reach Kafka at all exits
        (code 1) instead of looking healthy.
        """
        self._producer = self._new_producer()
        producer = self._producer
        retrying(
            "init_transactions",
            lambda: producer.init_transactions(TXN_CALL_TIMEOUT_S),
            self._stop,
        )

    def _new_producer(self) -> Producer:
        """A producer whose errors reach ``on_error`` only while it is the newest one: a
        replaced producer that wakes up fenced must not end the run with its fatal error."""
        self._generation += 1
        generation = self._generation

        def error_cb(error: KafkaError) -> None:
            if generation == self._generation:
                self._on_error(error)
            else:
                log.warning("replaced_producer_error", extra={"error": error})

        positions_topic = self._positions_topic

        def delivered(error: KafkaError | None, message: Message) -> None:
            if generation != self._generation:
                return
            if error is not None:
                self._failed_deliveries.append(
                    (message.topic() or "", message.key(), message.value(), error)
                )
            elif message.topic() == positions_topic:
                partition, offset = message.partition(), message.offset()
                if (
                    partition is not None
                    and offset is not None
                    and offset + 1 > self._positions.get(partition, -1)
                ):
                    self._positions[partition] = offset + 1

        return Producer(
            self._config
            | {
                "error_cb": error_cb,
                "on_delivery": delivered,
                # Without stores only failures are reported: a healthy batch pays nothing.
                "delivery.report.only.error": positions_topic is None,
            }
        )

    def call(self, what: str, call: Callable[[], Any]) -> None:
        """A transactional call that may hang: retried while retriable, each try bounded."""
        retrying(
            what,
            lambda: bounded_call(what, call, TXN_CALL_TIMEOUT_S + STUCK_MARGIN_S),
            self._stop,
        )

    def abort(self) -> bool:
        """One bounded abort attempt; False when it failed (the producer should be replaced)."""
        producer = self.producer
        try:
            bounded_call(
                "abort_transaction",
                lambda: producer.abort_transaction(TXN_CALL_TIMEOUT_S),
                TXN_CALL_TIMEOUT_S + STUCK_MARGIN_S,
            )
        except (KafkaException, StuckCallError) as exc:
            log.warning("abort_failed", extra={"error": exc})
            return False
        return True

    def replace(self, reason: str, *, wedged: bool = False) -> None:
        """A new producer with the same transactional.id; the old one is closed or left behind.

        Closing can hang on the same broken coordinator connection, so it is bounded, and a
        producer that does not close in time is left behind like a wedged one. The new one is
        retried until Kafka answers (see the module docstring); raises :class:`StopRequested`
        when stopped first (there is no producer then) and KafkaException on a fatal error.
        """
        log.warning("producer_replacing", extra={"reason": reason, "wedged": wedged})
        old, self._producer = self._producer, None
        if old is not None:
            self._retire(old, wedged=wedged)
        attempts = self._initialise_until_ready()
        log.info("producer_replaced", extra={"attempts": attempts})

    def _initialise_until_ready(self) -> int:
        """Set a new, initialised producer; returns how many init attempts it took."""
        delay = REPLACE_BACKOFF_S
        attempt = 0
        candidate: Producer | None = None
        while True:
            if self._stop.is_set():
                if candidate is not None:
                    self._retire(candidate, wedged=False)
                raise StopRequested("stop requested while replacing the producer")
            attempt += 1
            if candidate is None:
                candidate = self._new_producer()
            producer = candidate
            try:
                bounded_call(
                    "init_transactions",
                    functools.partial(producer.init_transactions, TXN_CALL_TIMEOUT_S),
                    TXN_CALL_TIMEOUT_S + STUCK_MARGIN_S,
                )
                self._producer = producer
                return attempt
            except StuckCallError as exc:
                failure: BaseException = exc
                self._retire(producer, wedged=True)
                candidate = None
            except KafkaException as exc:
                error = kafka_error(exc)
                if error is not None and error.fatal():
                    self._retire(producer, wedged=False)
                    raise
                failure = exc
                if error is None or not error.retriable():
                    # Not documented as "call again": start over with a fresh producer.
                    self._retire(producer, wedged=False)
                    candidate = None
            log.warning(
                "producer_init_retry",
                extra={"attempt": attempt, "next_in_s": round(delay, 1), "error": failure},
            )
            self._stop.wait(delay)
            delay = min(delay * 2, REPLACE_BACKOFF_MAX_S)

    def _retire(self, producer: Producer, *, wedged: bool) -> None:
        """Close ``producer`` (bounded), or leave it behind when it is wedged or will not close."""
        if not wedged:
            try:
                bounded_call("close_producer", lambda: _purge_and_close(producer), CLOSE_LIMIT_S)
            except (KafkaException, RuntimeError) as exc:
                log.warning("old_producer_close_failed", extra={"error": exc})
            except StuckCallError:
                wedged = True
        if wedged:
            self._abandoned.append(producer)
            log.warning("producer_abandoned", extra={"abandoned": len(self._abandoned)})

    def close(self, *, in_transaction: bool) -> None:
        """Abort a transaction left open (only after a fatal error), flush and close.

        Never raises: a fenced or otherwise failed producer refuses ``flush`` with the error
        that ended the run (``KafkaException(_FENCED)``); the process is stopping anyway, and
        its stop line and metrics shutdown must still happen. Each failure is one log line.
        """
        producer, self._producer = self._producer, None
        if producer is None:
            return
        if in_transaction:
            try:
                producer.abort_transaction(TXN_CALL_TIMEOUT_S)
            except KafkaException as exc:
                log.warning("abort_on_close_failed", extra={"error": kafka_error(exc) or exc})
        try:
            remaining = producer.flush(CLOSE_LIMIT_S)
            if remaining:
                log.warning("producer_flush_incomplete", extra={"remaining": remaining})
        except KafkaException as exc:
            # Records of an unfinished transaction are never committed: nothing is lost.
            log.warning("producer_flush_failed", extra={"error": kafka_error(exc) or exc})
        try:
            producer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("producer_close_failed", extra={"error": kafka_error(exc) or exc})


def _purge_and_close(producer: Producer) -> None:
    producer.purge()
    producer.close()
