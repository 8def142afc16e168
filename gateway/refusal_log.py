"""Synchronous refusals onto the command-refusals topic, for the audit archive; best effort.

A command the gateway refuses itself (field rules, the dry run on the read model, an idempotency
key reused, too many waiting calls) never reaches the commands topic. :class:`KafkaRefusalLog`
writes one CommandRefusal record per such refusal, fire and forget: ``record`` only puts the
record into librdkafka's local queue (bounded by ``queue.buffering.max.messages``) and returns,
so the refusal goes out to the caller without waiting for Kafka. A full queue or a failed
delivery drops the record and counts it (``prgate_gateway_refusals_dropped``); nothing retries
beyond librdkafka's own retries within ``message.timeout.ms``. The audit trail of refusals is
therefore complete only while Kafka keeps up, unlike the commands, results and events.

A refused command can be as large as a gRPC message (``PRGATE_MAX_MESSAGE_BYTES``, 1 MiB by
default): the field rules refuse texts over their limits, and such a refusal would not fit one
record (librdkafka refuses anything over ``message.max.bytes``, 1,000,000 bytes by default).
So a refusal whose record would be larger than :data:`MAX_RECORD_BYTES` is written with every
text cut to :data:`CLIPPED_TEXT_BYTES` and the fields unknown to this version left out
(:func:`clipped`): the audit keeps who tried what and why it was refused.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message as ProtoMessage

from prgate.domain.text import clip_utf8
from prgate.kafka import codec
from prgate.kafka.settings import KafkaSettings
from prgate.v1.refusals_pb2 import CommandRefusal

log = logging.getLogger(__name__)

QUEUE_MAX_RECORDS = 10_000
DELIVERY_TIMEOUT_MS = 30_000
_POLL_INTERVAL_S = 0.1
_WARN_EVERY_S = 10.0
# librdkafka's default message.max.bytes: a larger record is refused before it is queued.
MAX_RECORD_BYTES = 1_000_000
# What a refusal too large for a record keeps of each text: enough to see what was sent; the
# at most ~50 texts of a refusal (envelope, command, violations) stay far below the limit.
CLIPPED_TEXT_BYTES = 8 * 1024


def clipped(refusal: CommandRefusal) -> CommandRefusal:
    """A copy of ``refusal`` with every string (at any depth, repeated ones too) cut to
    :data:`CLIPPED_TEXT_BYTES` of UTF-8, never inside a character, and no unknown fields."""
    copy = CommandRefusal()
    copy.CopyFrom(refusal)
    copy.DiscardUnknownFields()
    _clip(copy)
    return copy


def _clip(message: ProtoMessage) -> None:
    for field, value in message.ListFields():
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_STRING:
            if repeated:
                value[:] = [clip_utf8(v, CLIPPED_TEXT_BYTES) for v in value]
            else:
                setattr(message, field.name, clip_utf8(value, CLIPPED_TEXT_BYTES))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if repeated else (value,):
                _clip(item)


class KafkaRefusalLog:
    """A RefusalLog producing to ``<prefix>command-refusals`` (gateway.ports.RefusalLog)."""

    def __init__(self, kafka: KafkaSettings, *, queue_max_records: int = QUEUE_MAX_RECORDS) -> None:
        self._topic = kafka.topics.refusals
        self._config: dict[str, Any] = kafka.client_config(
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": DELIVERY_TIMEOUT_MS,
                "queue.buffering.max.messages": queue_max_records,
                "client.id": "prgate-gateway-refusals",
            }
        )
        self._producer: Producer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.recorded = 0  # acknowledged by the broker
        self.dropped = 0  # queue full, delivery failed, or after close
        self._last_warning = 0.0

    def start(self) -> None:
        """Create the producer and the thread serving its delivery reports."""
        if self._producer is not None:
            return
        self._producer = Producer(self._config)
        self._thread = threading.Thread(
            target=self._poll_forever, name="prgate-refusals-poll", daemon=True
        )
        self._thread.start()

    def _poll_forever(self) -> None:
        while not self._stop.is_set() and self._producer is not None:
            self._producer.poll(_POLL_INTERVAL_S)

    def record(self, refusal: CommandRefusal, traceparent: str | None) -> None:
        """Queue the refusal's record and return at once (never raises)."""
        producer = self._producer
        if producer is None or self._stop.is_set():
            self._drop("closed")
            return
        record = codec.refusal_record(self._topic, refusal, traceparent)
        if codec.record_size(record) > MAX_RECORD_BYTES:
            record = codec.refusal_record(self._topic, clipped(refusal), traceparent)
        try:
            producer.produce(
                record.topic,
                key=record.key,
                value=record.value,
                headers=record.headers,
                on_delivery=self._delivered,
            )
        except BufferError:
            self._drop("queue_full")
        except KafkaException as exc:  # e.g. MSG_SIZE_TOO_LARGE under a lower message.max.bytes
            self._drop(f"produce_failed:{exc.args[0].name()}")
        except Exception:  # a refusal must never fail because of its audit record
            log.exception("refusal_record_failed")
            self._drop("produce_failed")

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            with self._lock:
                self.recorded += 1
        else:
            self._drop(f"delivery_failed:{error.name()}")

    def _drop(self, why: str) -> None:
        with self._lock:
            self.dropped += 1
            now = time.monotonic()
            warn = now - self._last_warning >= _WARN_EVERY_S
            if warn:
                self._last_warning = now
        if warn:  # rate-limited: Kafka being away would otherwise log one line per refusal
            log.warning("refusal_record_dropped", extra={"reason": why, "dropped": self.dropped})

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what is queued for at most ``timeout`` seconds, then stop."""
        if self._producer is None:
            return
        remaining = self._producer.flush(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if remaining:
            with self._lock:
                self.dropped += remaining
            log.warning("refusal_records_undelivered", extra={"count": remaining})
