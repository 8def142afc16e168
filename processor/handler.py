"""One consumed command in, the records to produce and the new state out. No Kafka I/O.

The transaction loop (:mod:`processor.loop`) calls :meth:`CommandHandler.handle` for each record
of a batch and produces what it returns; state changes go to the batch's
:class:`~processor.state_store.StagedChanges`, so they become visible to later commands of the
same batch but reach the committed store only when the transaction commits.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message
from google.protobuf.message import DecodeError

from prgate.tracing import Span, Tracing
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.outcome_pb2 import (
    COMMAND_STATE_REJECTED,
    COMMAND_STATE_SUCCEEDED,
    ProcessedCommand,
)
from processor import records
from processor.contract import (
    HEADER_CORRELATION_ID,
    HEADER_MESSAGE_TYPE,
    HEADER_REPLY_TO,
    HEADER_TRACEPARENT,
    TYPE_COMMAND_ENVELOPE,
    Topics,
)
from processor.domain import (
    Accepted,
    Policy,
    command_type_name,
    decide,
    exists,
    find_processed,
    fingerprint,
    fold,
    pull_request_id_of,
    reasons,
    remember,
)
from processor.domain.outcome import already_exists
from processor.state_store import StagedChanges

log = logging.getLogger(__name__)


class Outcome(Enum):
    """What became of one command record (for logs, counters and spans).

    DEAD_LETTER: the record is no usable command; FAILED: a valid command that ``decide``
    raised on (a bug). Both go to the DLQ with a FAILED result when the command id is known.
    """

    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"
    DEAD_LETTER = "dead_letter"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Handled:
    """The records to produce for one command, and what the loop counts and traces."""

    outcome: Outcome
    outgoing: list[records.Outgoing]
    command_type: str = ""  # "" when the record named no known command
    events: int = 0
    span: Span | None = None  # ended by the loop when the transaction commits or aborts
    command_id: str = ""
    pull_request_id: str = ""


class UndecodableCommand(Exception):
    """The record is not a usable CommandEnvelope; the text goes into the dlq-error header.

    ``envelope`` is what could be parsed, when anything could (e.g. a command id without a
    known command), so the caller can still answer with a FAILED result.
    """

    def __init__(self, reason: str, envelope: CommandEnvelope | None = None) -> None:
        super().__init__(reason)
        self.envelope = envelope


def decode_command(message: Message) -> CommandEnvelope:
    """The CommandEnvelope of ``message``, or :class:`UndecodableCommand` saying why not."""
    value = message.value()
    if not value:
        raise UndecodableCommand("empty value")
    message_type = records.header(message.headers(), HEADER_MESSAGE_TYPE)
    if message_type is not None and message_type != TYPE_COMMAND_ENVELOPE:
        raise UndecodableCommand(f"message-type {message_type!r} is not {TYPE_COMMAND_ENVELOPE}")
    envelope = CommandEnvelope()
    try:
        envelope.ParseFromString(value)
    except DecodeError as exc:
        raise UndecodableCommand(f"not a protobuf CommandEnvelope: {exc}") from exc
    if not envelope.command_id:
        raise UndecodableCommand("CommandEnvelope has no command_id")
    if not command_type_name(envelope):
        raise UndecodableCommand(
            "CommandEnvelope names no command, or one this version does not know", envelope
        )
    pull_request_id = pull_request_id_of(envelope)
    if not pull_request_id:
        raise UndecodableCommand("CommandEnvelope names no pull_request_id", envelope)
    key = message.key()
    if key is None:
        # Without a key the producer's partitioner chose the partition (round robin or random),
        # so the state this command would be decided against is most likely not its pull
        # request's; deciding it there could repeat a version or miss one.
        raise UndecodableCommand(
            f"record has no key; it must be the pull request id {pull_request_id!r}", envelope
        )
    if key != pull_request_id.encode():
        # The key chose the partition; state for this pull request lives in another one.
        raise UndecodableCommand(
            f"record key {key.decode('utf-8', errors='replace')!r} is not the pull request id "
            f"{pull_request_id!r}",
            envelope,
        )
    return envelope


def record_time(message: Message, fallback: Callable[[], datetime]) -> datetime:
    """The record's timestamp (when the command was accepted onto Kafka), else ``fallback()``.

    Using the record time keeps a re-processed batch (after an abort) byte-identical.
    """
    kind, millis = message.timestamp()
    if kind == TIMESTAMP_NOT_AVAILABLE or millis <= 0:
        return fallback()
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


class CommandHandler:
    """Applies the domain to one command record at a time."""

    def __init__(
        self,
        topics: Topics,
        policy: Policy,
        *,
        reply_topic: Callable[[str | None], str] | None = None,
        clock: Callable[[], datetime] = utc_now,
        tracing: Tracing | None = None,
    ) -> None:
        """``reply_topic`` maps a reply-to header (or None) to the topic to answer on.

        With ``tracing``, each command gets a span (child of its record's traceparent) whose
        traceparent goes on the records it causes; ``Handled.span`` is left open for the loop.
        """
        self._topics = topics
        self._policy = policy
        self._reply_topic = reply_topic or (lambda requested: requested or topics.results)
        self._clock = clock
        self._tracing = tracing

    def handle(self, message: Message, staged: StagedChanges) -> Handled:
        """The records to produce for ``message``; new state goes into ``staged``."""
        headers = message.headers()
        traceparent = records.header(headers, HEADER_TRACEPARENT)
        if self._tracing is None:
            return self._handle(message, headers, traceparent, staged)
        span = self._tracing.start_command(traceparent)
        handled = self._handle(message, headers, span.traceparent, staged)
        span.rename(f"prgate.processor/{handled.command_type or 'undecodable'}")
        span.set(
            **{
                "command_id": records.header(headers, HEADER_CORRELATION_ID) or "",
                "command_type": handled.command_type,
                "outcome": handled.outcome.value,
                "events": handled.events,
                "messaging.kafka.partition": message.partition() or 0,
                "messaging.kafka.offset": message.offset() or 0,
            }
        )
        return dataclasses.replace(handled, span=span)

    def _handle(
        self,
        message: Message,
        headers: records.RawHeaders,
        traceparent: str | None,
        staged: StagedChanges,
    ) -> Handled:
        correlation_id = records.header(headers, HEADER_CORRELATION_ID)
        reply_to = self._reply_topic(records.header(headers, HEADER_REPLY_TO))
        try:
            envelope = decode_command(message)
        except UndecodableCommand as exc:
            return self.dead_letter(
                message, str(exc), correlation_id, reply_to, traceparent, envelope=exc.envelope
            )
        command_id = envelope.command_id
        command_type = command_type_name(envelope)
        pull_request_id = pull_request_id_of(envelope)
        partition = message.partition() or 0
        state = staged.get(partition, pull_request_id)
        echo = correlation_id or command_id

        processed = find_processed(state, command_id)
        digest = fingerprint(envelope)
        if processed is not None and processed.fingerprint and processed.fingerprint != digest:
            # The id (an idempotency key) came again with another command: refuse it, and keep
            # the record of the first one.
            result = records.make_result(
                command_id=command_id,
                pull_request_id=pull_request_id,
                command_type=command_type,
                state=COMMAND_STATE_REJECTED,
                version=state.version if state is not None else 0,
                violations=[
                    already_exists(
                        reasons.IDEMPOTENCY_KEY_REUSED,
                        command_id,
                        "this command id (idempotency key) was already used for a different"
                        " command",
                    )
                ],
                completed_at=self._clock(),
            )
            return Handled(
                Outcome.REJECTED,
                [records.result_record(reply_to, result, echo, traceparent)],
                command_type,
                command_id=command_id,
                pull_request_id=pull_request_id,
            )
        if processed is not None:
            result = records.replayed_result(
                processed, pull_request_id, command_type, self._clock()
            )
            return Handled(
                Outcome.DUPLICATE,
                [records.result_record(reply_to, result, echo, traceparent)],
                command_type,
                command_id=command_id,
                pull_request_id=pull_request_id,
            )

        try:
            decision = decide(
                state, envelope, now=record_time(message, self._clock), policy=self._policy
            )
        except Exception as exc:  # a domain bug: park this command, keep the partition moving
            log.exception("event=decide_failed command_id=%s", command_id)
            return self.dead_letter(
                message,
                f"decide failed: {type(exc).__name__}: {exc}",
                echo,
                reply_to,
                traceparent,
                envelope=envelope,
                outcome=Outcome.FAILED,
            )

        version_before = state.version if state is not None and exists(state) else 0
        out: list[records.Outgoing] = []
        events = decision.events if isinstance(decision, Accepted) else ()
        if isinstance(decision, Accepted):
            new_state = fold(events, state) if events else state
            version_after = events[-1].version if events else version_before
            remembered = ProcessedCommand(
                command_id=command_id,
                state=COMMAND_STATE_SUCCEEDED,
                version=version_after,
                first_version=version_before,
                fingerprint=digest,
            )
            out.extend(records.event_record(self._topics.events, e, traceparent) for e in events)
            result = records.make_result(
                command_id=command_id,
                pull_request_id=pull_request_id,
                command_type=command_type,
                state=COMMAND_STATE_SUCCEEDED,
                version=version_after,
                events=events,
                completed_at=self._clock(),
            )
            outcome = Outcome.SUCCEEDED
        else:
            new_state = state
            remembered = ProcessedCommand(
                command_id=command_id,
                state=COMMAND_STATE_REJECTED,
                version=version_before,
                first_version=version_before,
                violations=decision.violations,
                fingerprint=digest,
            )
            result = records.make_result(
                command_id=command_id,
                pull_request_id=pull_request_id,
                command_type=command_type,
                state=COMMAND_STATE_REJECTED,
                version=version_before,
                violations=decision.violations,
                completed_at=self._clock(),
            )
            outcome = Outcome.REJECTED

        # Remember the command also for a no-op or a rejection, so a redelivery gets the same
        # answer; but write nothing for a pull request that does not exist.
        if new_state is not None and exists(new_state):
            new_state = remember(new_state, remembered, self._policy)
            staged.put(partition, pull_request_id, new_state)
            out.append(
                records.snapshot_record(
                    self._topics.pull_requests, new_state, command_id, traceparent
                )
            )
        out.append(records.result_record(reply_to, result, echo, traceparent))
        return Handled(
            outcome,
            out,
            command_type,
            len(events),
            command_id=command_id,
            pull_request_id=pull_request_id,
        )

    def dead_letter(
        self,
        message: Message,
        error: str,
        correlation_id: str | None,
        reply_to: str,
        traceparent: str | None,
        *,
        envelope: CommandEnvelope | None = None,
        outcome: Outcome = Outcome.DEAD_LETTER,
    ) -> Handled:
        """The record as received to the DLQ; a FAILED result when we know the command id."""
        out = [records.dead_letter_record(self._topics.dlq, message, error)]
        command_id = (envelope.command_id if envelope is not None else "") or correlation_id
        if command_id:
            key = message.key()
            pull_request_id = pull_request_id_of(envelope) if envelope is not None else ""
            if not pull_request_id and key is not None:
                pull_request_id = key.decode("utf-8", errors="replace")
            result = records.failed_result(
                command_id,
                pull_request_id,
                command_type_name(envelope) if envelope is not None else "",
                error,
                self._clock(),
            )
            out.append(records.result_record(reply_to, result, command_id, traceparent))
        log.warning(
            "event=command_dead_lettered source=%s/%s/%s command_id=%s error=%r",
            message.topic(),
            message.partition(),
            message.offset(),
            command_id or "-",
            error,
        )
        command_type = command_type_name(envelope) if envelope is not None else ""
        return Handled(outcome, out, command_type, command_id=command_id or "")
