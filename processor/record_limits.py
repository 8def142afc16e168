"""Records that Kafka would refuse: sizes checked before producing, and the errors of one record.

A Kafka topic takes records up to its ``max.message.bytes`` (per record batch), and the producer
refuses anything over its own ``message.max.bytes`` before sending. Inside a transaction the two
fail differently: ``produce()`` raises at once for the producer's limit; a record over the
topic's limit fails in its delivery report, which makes the whole transaction abortable. Either
way, redoing the batch would fail again, forever. So:

- :class:`RecordLimits` knows each topic's limit (read with ``describe_configs`` at start, a
  reply topic's when first used) and the producer's, and every record is checked against them
  before it is produced (:func:`prgate.kafka.codec.record_size`). The handler turns a command
  whose snapshot (or event, or result) would not fit into a rejection
  (:func:`oversize_rejection`, reason ``SNAPSHOT_TOO_LARGE`` / ``RECORD_TOO_LARGE``); the DLQ copy
  of a record is cut to fit.
- A record that Kafka still refuses (a limit lowered since it was read, an ACL, a topic deleted)
  is told apart from Kafka being away by its error (:func:`record_error_name`); the loop then
  aborts once and redoes the batch with that command FAILED (:class:`RecordFailure`), and learns
  the lower limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaError

from prgate.domain import (
    Applied,
    Outcome,
    Policy,
    command_result,
    command_type_name,
    exists,
    fingerprint,
    pull_request_id_of,
    remember,
)
from prgate.domain.outcome import failed_precondition
from prgate.kafka import codec
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import TopicAdminError, max_message_bytes
from prgate.v1 import outcome_pb2, pull_request_pb2
from prgate.v1.commands_pb2 import CommandEnvelope

log = logging.getLogger(__name__)

# Stable reasons of the rejections made here (a client may match on them).
SNAPSHOT_TOO_LARGE = "SNAPSHOT_TOO_LARGE"
RECORD_TOO_LARGE = "RECORD_TOO_LARGE"

# librdkafka's default message.max.bytes, and Kafka's default max.message.bytes.
PRODUCER_DEFAULT_MAX = 1_000_000
TOPIC_DEFAULT_MAX = 1_048_588

# Errors that belong to one record, not to Kafka being away: redoing the batch cannot help.
# Their names label prgate_processor_records_refused_total.
_RECORD_ERRORS = {
    KafkaError.MSG_SIZE_TOO_LARGE: "MSG_SIZE_TOO_LARGE",
    KafkaError.RECORD_LIST_TOO_LARGE: "RECORD_LIST_TOO_LARGE",
    KafkaError.INVALID_RECORD: "INVALID_RECORD",
    KafkaError.POLICY_VIOLATION: "POLICY_VIOLATION",
}
# Errors of a whole topic. For a reply topic (named by a command) they are that command's
# problem: its result goes to the results topic instead. For a contract topic they are the
# deployment's (a missing ACL refuses every command alike), so the loop keeps retrying, as
# while Kafka is away, rather than fail every command.
_TOPIC_ERRORS = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "TOPIC_AUTHORIZATION_FAILED",
    KafkaError.TOPIC_EXCEPTION: "INVALID_TOPIC",
    KafkaError.UNKNOWN_TOPIC_OR_PART: "UNKNOWN_TOPIC",
    KafkaError._UNKNOWN_TOPIC: "UNKNOWN_TOPIC",
    KafkaError._UNKNOWN_PARTITION: "UNKNOWN_TOPIC",
}
RECORD_ERRORS = tuple(sorted(set(_RECORD_ERRORS.values())))


def record_error_name(error: KafkaError, *, reply_topic: bool = False) -> str | None:
    """The name of an error that belongs to one record (one of :data:`RECORD_ERRORS`), or for
    a ``reply_topic`` also to its topic; None for any other (Kafka away, fenced, ...)."""
    if error.fatal():
        return None
    name = _RECORD_ERRORS.get(error.code())
    if name is None and reply_topic:
        name = _TOPIC_ERRORS.get(error.code())
    return name


@dataclass(frozen=True, slots=True)
class RecordFailure:
    """Why a command record must be answered FAILED instead of applied: Kafka refused one of
    the records it caused. ``dlq``: whether its DLQ copy may still be written (False after the
    copy itself was refused)."""

    error: str  # one of RECORD_ERRORS
    topic: str
    size: int
    detail: str
    dlq: bool = True

    def reason(self) -> str:
        """The FAILED result's error message and the dlq-error header."""
        return (
            f"RECORD_REFUSED: Kafka refused a {self.size}-byte record for {self.topic}"
            f" ({self.error}: {self.detail})"
        )


class RecordLimits:
    """The largest record each topic takes: min(topic's ``max.message.bytes``, producer's
    ``message.max.bytes``), both in bytes.

    ``topics`` holds the limits read at start; ``describe(topic)`` reads one more (None when
    it cannot be read, then the producer's limit applies).
    """

    def __init__(
        self,
        topics: Mapping[str, int] | None = None,
        *,
        producer_max: int = PRODUCER_DEFAULT_MAX,
        describe: Callable[[str], int | None] | None = None,
    ) -> None:
        self._topics = dict(topics or {})
        self._producer_max = producer_max
        self._describe = describe
        self._unknown: set[str] = set()  # described without an answer: not asked again

    @classmethod
    def of(
        cls, kafka: KafkaSettings, producer_config: Mapping[str, Any], timeout: float
    ) -> RecordLimits:
        """The limits of ``kafka``'s cluster for a producer of ``producer_config``; a topic's is
        read (``describe_configs``, bounded by ``timeout``) when first needed, or by
        :meth:`update`."""
        producer_max = producer_config.get("message.max.bytes") or PRODUCER_DEFAULT_MAX
        return cls(
            producer_max=int(producer_max),
            describe=lambda topic: read_limits(kafka, [topic], timeout).get(topic),
        )

    def update(self, topics: Mapping[str, int]) -> None:
        """Take the limits of ``topics`` (read at start)."""
        self._topics.update(topics)

    def limit(self, topic: str) -> int:
        """The largest record (:func:`codec.record_size`) ``topic`` takes."""
        known = self._topics.get(topic)
        if known is None and self._describe is not None and topic not in self._unknown:
            known = self._describe(topic)
            if known is None:
                self._unknown.add(topic)
            else:
                self._topics[topic] = known
        return min(known or self._producer_max, self._producer_max)

    def fits(self, record: codec.Record) -> bool:
        return codec.record_size(record) <= self.limit(record.topic)

    def learn(self, topic: str, refused_size: int, *, batched_up_to: int) -> bool:
        """Kafka refused a ``refused_size``-byte record as too large for ``topic``; the
        producer built batches of up to ``batched_up_to`` bytes. Reads the topic's limit again.

        Returns True when the record would fit alone: the topic's limit went down since it was
        read, and the record only failed in a batch over the new limit (the caller should build
        smaller batches); False when the record itself is too large (its limit is then below it).
        """
        fresh = self._describe(topic) if self._describe is not None else None
        if fresh is not None and refused_size <= fresh < batched_up_to:
            self._topics[topic] = fresh
            alone = True
        else:
            # Believe Kafka over a limit that would take the record.
            known = fresh if fresh is not None else self.limit(topic)
            self._topics[topic] = min(known, max(1, refused_size - 1))
            alone = False
        log.warning(
            "record_limit_learned",
            extra={
                "topic": topic,
                "limit": self._topics[topic],
                "refused_size": refused_size,
                "fits_alone": alone,
            },
        )
        return alone

    def batch_size(self, topics: list[str]) -> int:
        """A producer ``batch.size`` that keeps a batch of several records within the smallest
        limit of ``topics`` (librdkafka's default, 1,000,000, when that already does)."""
        smallest = min((self.limit(t) for t in topics), default=self._producer_max)
        return max(1, min(PRODUCER_DEFAULT_MAX, smallest - codec.BATCH_OVERHEAD))


def read_limits(kafka: KafkaSettings, topics: list[str], timeout: float) -> dict[str, int]:
    """The ``max.message.bytes`` of each of ``topics`` that exists; {} (logged) when Kafka does
    not answer: then the producer's limit applies until a refusal teaches better."""
    try:
        return max_message_bytes(kafka, topics, timeout=timeout)
    except TopicAdminError as exc:
        log.warning("record_limits_unknown", extra={"topics": ",".join(topics), "error": exc})
        return {}


def oversize_rejection(
    before: pull_request_pb2.PullRequest | None,
    envelope: CommandEnvelope,
    *,
    reason: str,
    description: str,
    completed_at: datetime,
    policy: Policy,
) -> Applied:
    """``envelope`` REJECTED (FAILED_PRECONDITION ``reason``) on ``before``, instead of the
    outcome whose records would not fit: no events, the state unchanged but for the rejection
    remembered in ``recent_commands`` (as for any rejection)."""
    command_id, pull_request_id = envelope.command_id, pull_request_id_of(envelope)
    violation = failed_precondition(reason, f"pull_request/{pull_request_id}", description)
    version = before.version if before is not None and exists(before) else 0
    result = command_result(
        command_id=command_id,
        pull_request_id=pull_request_id,
        command_type=command_type_name(envelope),
        state=outcome_pb2.COMMAND_STATE_REJECTED,
        version=version,
        violations=[violation],
        completed_at=completed_at,
    )
    if before is None or not exists(before):
        return Applied(Outcome.REJECTED, result)
    remembered = outcome_pb2.ProcessedCommand(
        command_id=command_id,
        state=outcome_pb2.COMMAND_STATE_REJECTED,
        version=version,
        first_version=version,
        fingerprint=fingerprint(envelope),
    )
    remembered.violations.append(violation)
    return Applied(Outcome.REJECTED, result, (), remember(before, remembered, policy))
