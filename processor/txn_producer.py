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
``init_transactions`` fences the old one and aborts whatever it left open. A wedged producer
still has a thread inside one of its calls, so it is never closed or freed (that could crash
the process); it is kept referenced and left behind.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from processor.settings import ProcessorSettings

log = logging.getLogger("processor.loop")

TXN_CALL_TIMEOUT_S = 10.0  # one transactional API call
RETRY_BUDGET_S = 30.0  # all retries of one call together
CLOSE_LIMIT_S = 5.0
STUCK_MARGIN_S = 5.0  # beyond a call's own timeout, before the producer is declared stuck


class StuckCallError(Exception):
    """A transactional call did not return within its bound (it ignored its own timeout)."""


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
            log.warning("event=kafka_call_retry call=%s error=%s", what, error)
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
        self._config = settings.producer_config(instance_id) | {"error_cb": on_error}
        self._stop = stop
        self._producer: Producer | None = None
        self._abandoned: list[Producer] = []

    @property
    def producer(self) -> Producer:
        assert self._producer is not None, "start() first"
        return self._producer

    def start(self) -> None:
        """Create the producer and fence (abort) anything its transactional.id left open."""
        self._producer = Producer(self._config)
        producer = self._producer
        retrying(
            "init_transactions",
            lambda: producer.init_transactions(TXN_CALL_TIMEOUT_S),
            self._stop,
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
            log.warning("event=abort_failed error=%r", exc)
            return False
        return True

    def replace(self, reason: str, *, wedged: bool = False) -> None:
        """A new producer with the same transactional.id; the old one is closed or left behind.

        Closing can hang on the same broken coordinator connection, so it is bounded, and a
        producer that does not close in time is left behind like a wedged one.
        """
        log.warning("event=producer_replacing reason=%r wedged=%s", reason, wedged)
        old, self._producer = self._producer, None
        if old is not None and not wedged:
            try:
                bounded_call("close_producer", lambda: _purge_and_close(old), CLOSE_LIMIT_S)
            except (KafkaException, RuntimeError) as exc:
                log.warning("event=old_producer_close_failed error=%r", exc)
            except StuckCallError:
                wedged = True
        if old is not None and wedged:
            self._abandoned.append(old)
            log.warning("event=producer_abandoned abandoned=%d", len(self._abandoned))
        self.start()
        log.info("event=producer_replaced")

    def close(self, *, in_transaction: bool) -> None:
        """Abort a transaction left open (only after a fatal error), flush and close."""
        if self._producer is None:
            return
        if in_transaction:
            try:
                self._producer.abort_transaction(TXN_CALL_TIMEOUT_S)
            except KafkaException as exc:
                log.warning("event=abort_on_close_failed error=%r", exc)
        remaining = self._producer.flush(5.0)
        if remaining:
            log.warning("event=producer_flush_incomplete remaining=%d", remaining)
        self._producer.close()
        self._producer = None


def _purge_and_close(producer: Producer) -> None:
    producer.purge()
    producer.close()
