"""The gateway's command producer: puts a CommandEnvelope on the commands topic.

``send`` returns only once the broker acknowledged the record (acks=all, idempotent producer):
that acknowledgement is what makes a command ACCEPTED. confluent-kafka's producer is blocking,
so one dedicated thread calls ``poll`` to serve delivery reports and hands each report to the
event loop with ``call_soon_threadsafe``; ``produce`` itself never blocks (a full local queue
raises BufferError instead), so it is called on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from gateway.ports import AckTimeout, KafkaUnavailable
from prgate.kafka import codec
from prgate.kafka.settings import KafkaSettings
from prgate.observability import logs
from prgate.v1.commands_pb2 import CommandEnvelope

__all__ = ["AckTimeout", "CommandProducer", "KafkaUnavailable"]

log = logging.getLogger(__name__)

_POLL_INTERVAL_S = 0.1
_PROBE_INTERVAL_S = 1.0
_PROBE_TIMEOUT_S = 0.5
# librdkafka error codes that mean "no broker reachable right now".
_UNREACHABLE = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN})


class CommandProducer:
    """Produces command envelopes and awaits the broker's acknowledgement of each."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        delivery_timeout_ms: int = 5000,
        linger_ms: int = 0,
        extra: dict[str, str] | None = None,
    ) -> None:
        self._topic = kafka.topics.commands
        # message.timeout.ms bounds how long librdkafka retries a record: with the broker
        # down, the delivery report carries _MSG_TIMED_OUT after at most this long.
        # linger.ms 0: a command is sent at once; under load records still batch while earlier
        # requests are in flight. Lab (README Performance): ack p50 at c=1 / c=16 2.2 / 3.1 ms
        # with 1 ms, 0.6 / 1.5 ms with 0; at c=64 the same, for ~8 µs more broker CPU per send.
        self._config: dict[str, Any] = kafka.client_config(
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": linger_ms,
                "socket.nagle.disable": True,
                "message.timeout.ms": delivery_timeout_ms,
                "request.timeout.ms": min(delivery_timeout_ms, 30000),
                "client.id": "prgate-gateway-producer",
            }
        )
        self._config.update(extra or {})
        self._config["error_cb"] = self._on_error
        self._repeats = logs.Repeats()
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._flush_timeout = 5.0
        self._stopped: asyncio.Future[None] | None = None
        self._healthy = True
        self._fatal = False  # the idempotent producer hit a fatal error: unusable for good
        self._closed = False
        self.last_error: str = ""

    async def start(self) -> None:
        """Create the producer and start its poll thread."""
        if self._producer is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        self._producer = Producer(self._config)
        self._thread = threading.Thread(
            target=self._poll_forever, name="prgate-producer-poll", daemon=True
        )
        self._thread.start()
        log.info("producer_started", extra={"topic": self._topic})

    async def send(
        self,
        envelope: CommandEnvelope,
        *,
        reply_to: str,
        timeout: float,
        traceparent: str | None = None,
    ) -> None:
        """Produce ``envelope`` and return once the broker acknowledged it.

        Raises KafkaUnavailable on a delivery error, a full local queue, or when ``timeout``
        seconds pass without an acknowledgement. After a timeout the record may still be
        delivered later; the command id lets a retry with the same idempotency key find it.
        """
        if self._closed:
            raise KafkaUnavailable("command producer is closed")
        if self._producer is None or self._loop is None:
            raise RuntimeError("CommandProducer.send() before start()")
        record = codec.command_record(
            self._topic, envelope, reply_to=reply_to, traceparent=traceparent
        )
        acked: asyncio.Future[None] = self._loop.create_future()
        loop = self._loop

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            # Runs on the poll thread; the future belongs to the loop.
            # RuntimeError: the loop is already closed, nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._settle, acked, err)

        try:
            self._producer.produce(
                record.topic,
                value=record.value,
                key=record.key,
                headers=record.headers,
                on_delivery=on_delivery,
            )
        except BufferError as exc:
            raise KafkaUnavailable(
                f"local producer queue is full; command {envelope.command_id} not sent"
            ) from exc
        except Exception as exc:  # KafkaException: e.g. a fatal idempotence error
            raise KafkaUnavailable(
                f"could not produce command {envelope.command_id} to {self._topic}: {exc}"
            ) from exc
        try:
            await asyncio.wait_for(acked, timeout)
        except TimeoutError as exc:
            raise AckTimeout(
                f"no acknowledgement from Kafka within {timeout:.3g}s for command "
                f"{envelope.command_id} on {self._topic}"
            ) from exc

    def _settle(self, acked: asyncio.Future[None], err: KafkaError | None) -> None:
        if err is None:
            self._healthy = True
        else:
            self.last_error = err.str()
            if err.code() in (KafkaError._MSG_TIMED_OUT, *_UNREACHABLE):
                self._healthy = False
        if acked.done():  # the caller's deadline already passed
            return
        if err is None:
            acked.set_result(None)
        else:
            acked.set_exception(
                KafkaUnavailable(f"delivery to {self._topic} failed: {err.name()}: {err.str()}")
            )

    def _on_error(self, err: KafkaError) -> None:
        # error_cb runs on the poll thread; a bool store is atomic under the GIL.
        if err.fatal():
            self._fatal = True
        if err.code() in _UNREACHABLE or err.fatal():
            self._healthy = False
        self.last_error = err.str()
        fields = {"code": err.name(), "error": err.str()}
        if err.fatal():
            log.error("producer_error", extra=fields)
        else:  # repeats for as long as the broker is away: bounded
            logs.log_repeating(
                log, self._repeats, logging.WARNING, "producer_error", fields,
                err.name(), logs.masked(err.str()),
            )  # fmt: skip

    def healthy(self) -> bool:
        """False while the broker is unreachable (or after a fatal producer error, or close).

        True again after a successful delivery or a successful metadata probe (the poll thread
        probes about once a second while unhealthy). For health reporting; do not gate sends
        on it, ``send`` itself fails in bounded time.
        """
        return self._healthy and not self._fatal and not self._closed

    def _poll_forever(self) -> None:
        producer = self._producer
        assert producer is not None
        next_probe = 0.0
        try:
            while not self._stop.is_set():
                producer.poll(_POLL_INTERVAL_S)
                if not self._healthy and time.monotonic() >= next_probe:
                    # librdkafka reports losing the broker but not getting it back: while
                    # unhealthy, ask for metadata now and then (bounded) to notice recovery.
                    next_probe = time.monotonic() + _PROBE_INTERVAL_S
                    self._probe(producer)
            remaining = producer.flush(self._flush_timeout)
            if remaining:
                log.warning("producer_flush_incomplete", extra={"remaining": remaining})
                # Fail what is left right away instead of leaving callers to their deadlines.
                producer.purge(in_queue=True, in_flight=True, blocking=False)
                producer.poll(0)
            producer.close()
        except Exception:
            log.exception("producer_poll_thread_failed")
        finally:
            self._signal_stopped()

    def _probe(self, producer: Producer) -> None:
        try:
            producer.list_topics(self._topic, timeout=_PROBE_TIMEOUT_S)
        except KafkaException:
            return
        if not self._healthy:
            log.info("producer_broker_reachable_again")
        self._healthy = True

    def _signal_stopped(self) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is None or stopped is None:
            return

        def resolve() -> None:
            if not stopped.done():
                stopped.set_result(None)

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(resolve)

    async def close(self, timeout: float = 5.0) -> None:
        """Flush outstanding records (at most ``timeout`` seconds) and stop the poll thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None or self._stopped is None:
            return
        self._flush_timeout = max(0.0, timeout)
        self._stop.set()
        try:
            # The thread needs up to one poll interval to notice, then the bounded flush.
            await asyncio.wait_for(asyncio.shield(self._stopped), timeout + 2 * _POLL_INTERVAL_S)
        except TimeoutError:
            log.warning("producer_close_timeout", extra={"thread_name": self._thread.name})
            return
        self._thread.join(timeout=1.0)
        self._producer = None  # closed on the poll thread
        log.info("producer_closed", extra={"topic": self._topic})
