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

from prgate.domain import (
    Applied,
    DecideFailed,
    Policy,
    apply,
    command_type_name,
    failed_result,
    find_processed,
    pull_request_id_of,
)
from prgate.domain import Outcome as DomainOutcome
from prgate.kafka import codec, command_ids
from prgate.kafka.contract import (
    HEADER_CORRELATION_ID,
    HEADER_REPLY_TO,
    HEADER_TRACEPARENT,
    Topics,
)
from prgate.observability.tracing import Span, Tracing
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.pull_request_pb2 import PullRequest
from processor.record_limits import (
    RECORD_TOO_LARGE,
    SNAPSHOT_TOO_LARGE,
    RecordFailure,
    RecordLimits,
    oversize_rejection,
)
from processor.reply_topics import Reply
from processor.state_store import StagedChanges

log = logging.getLogger(__name__)


class Outcome(Enum):
    """What became of one command record (for logs, counters and spans).

    The first three are :class:`prgate.domain.Outcome`'s. DEAD_LETTER: the record is no
    usable command; FAILED: a valid command that ``decide`` raised on (a bug). Both go to the
    DLQ with a FAILED result when the command id is known.
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
    outgoing: list[codec.Record]
    command_type: str = ""  # "" when the record named no known command
    events: int = 0
    span: Span | None = None  # ended by the loop when the transaction commits or aborts
    command_id: str = ""
    pull_request_id: str = ""
    reply_refused: str = ""  # why the reply-to header was not followed (processor.reply_topics)
    record_error: str = ""  # the Kafka error that failed this command (processor.record_limits)


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
        reply_topic: Callable[[str | None], Reply] | None = None,
        clock: Callable[[], datetime] = utc_now,
        tracing: Tracing | None = None,
        limits: RecordLimits | None = None,
    ) -> None:
        """``reply_topic`` maps a reply-to header (or None) to the topic to answer on (and why
        the header was not followed); by default the header is followed. With ``limits``, a
        command whose records would not fit their topics is rejected (``SNAPSHOT_TOO_LARGE``,
        ``RECORD_TOO_LARGE``) and a DLQ copy is cut to fit.

        With ``tracing``, each command gets a span (child of its record's traceparent) whose
        traceparent goes on the records it causes; ``Handled.span`` is left open for the loop.
        """
        self._topics = topics
        self._policy = policy
        self._reply_topic = reply_topic or (lambda requested: Reply(requested or topics.results))
        self._clock = clock
        self._tracing = tracing
        self._limits = limits

    def handle(
        self, message: Message, staged: StagedChanges, failure: RecordFailure | None = None
    ) -> Handled:
        """The records to produce for ``message``; new state goes into ``staged``.

        With ``failure`` (Kafka refused a record this command caused, when the loop tried),
        the command is not applied: FAILED result and DLQ copy, ``Handled.record_error`` set.
        """
        headers = codec.header_texts(message.headers())
        traceparent = headers.get(HEADER_TRACEPARENT)
        if self._tracing is None:
            return self._handle(message, headers, traceparent, staged, failure)
        span = self._tracing.start_command(traceparent)
        with span.current():  # log lines written while deciding carry the span's ids
            handled = self._handle(message, headers, span.traceparent, staged, failure)
        span.rename(f"prgate.processor/{handled.command_type or 'undecodable'}")
        span.set(
            **{
                "command_id": headers.get(HEADER_CORRELATION_ID) or "",
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
        headers: dict[str, str],
        traceparent: str | None,
        staged: StagedChanges,
        failure: RecordFailure | None,
    ) -> Handled:
        correlation_id = headers.get(HEADER_CORRELATION_ID)
        reply = self._reply_topic(headers.get(HEADER_REPLY_TO))
        handled = self._decide(
            message,
            correlation_id=correlation_id,
            reply_to=reply.topic,
            traceparent=traceparent,
            staged=staged,
            failure=failure,
        )
        if reply.refused:
            handled = dataclasses.replace(handled, reply_refused=reply.refused)
        return handled

    def _decide(
        self,
        message: Message,
        *,
        correlation_id: str | None,
        reply_to: str,
        traceparent: str | None,
        staged: StagedChanges,
        failure: RecordFailure | None,
    ) -> Handled:
        try:
            envelope = codec.decode_command(message.key(), message.value(), message.headers())
        except codec.UndecodableCommand as exc:
            return self.dead_letter(
                message,
                str(exc),
                correlation_id,
                reply_to,
                traceparent,
                envelope=exc.envelope,
                staged=staged,
            )
        command_id = envelope.command_id
        pull_request_id = pull_request_id_of(envelope)
        partition = message.partition() or 0
        echo = correlation_id or command_id
        if failure is not None:
            failed = self.dead_letter(
                message,
                failure.reason(),
                echo,
                reply_to,
                traceparent,
                envelope=envelope,
                outcome=Outcome.FAILED,
                staged=staged,
                dlq=failure.dlq,
            )
            return dataclasses.replace(failed, record_error=failure.error)
        before = staged.get(partition, pull_request_id)
        try:
            applied = apply(
                before,
                envelope,
                now=record_time(message, self._clock),
                completed_at=self._clock(),
                policy=self._policy,
            )
        except DecideFailed as exc:  # a domain bug: park this command, keep the partition moving
            log.exception("decide_failed", extra={"command_id": command_id})
            return self.dead_letter(
                message,
                str(exc),
                echo,
                reply_to,
                traceparent,
                envelope=envelope,
                outcome=Outcome.FAILED,
                staged=staged,
            )

        applied, out = self._fitting(
            applied, before, envelope, reply_to=reply_to, echo=echo, traceparent=traceparent
        )
        if applied.state is not None:
            staged.put(partition, pull_request_id, applied.state)
        return Handled(
            Outcome(applied.outcome.value),
            out,
            command_type_name(envelope),
            len(applied.events),
            command_id=command_id,
            pull_request_id=pull_request_id,
        )

    def _records(
        self, applied: Applied, command_id: str, reply_to: str, echo: str, traceparent: str | None
    ) -> list[codec.Record]:
        out = [codec.event_record(self._topics.events, e, traceparent) for e in applied.events]
        if applied.state is not None:
            out.append(
                codec.snapshot_record(
                    self._topics.pull_requests, applied.state, command_id, traceparent
                )
            )
        out.append(codec.result_record(reply_to, applied.result, echo, traceparent))
        return out

    def _fitting(
        self,
        applied: Applied,
        before: PullRequest | None,
        envelope: CommandEnvelope,
        *,
        reply_to: str,
        echo: str,
        traceparent: str | None,
    ) -> tuple[Applied, list[codec.Record]]:
        """``applied`` and its records, when every record fits its topic. Otherwise a command
        that would have succeeded is rejected instead; for any other outcome a snapshot that
        does not fit (it would only remember the command) is left out."""
        command_id = envelope.command_id
        out = self._records(applied, command_id, reply_to, echo, traceparent)
        limits = self._limits
        if limits is None:
            return applied, out
        too_large = [r for r in out if not limits.fits(r)]
        if too_large and applied.outcome is DomainOutcome.SUCCEEDED:
            first = too_large[0]
            snapshot = first.topic == self._topics.pull_requests
            what = "pull request" if snapshot else "record"
            # Short: it is remembered with the rejection, in the snapshot that is at its limit.
            description = (
                f"the {what} would take {codec.record_size(first)} bytes,"
                f" over {limits.limit(first.topic)}"
            )
            log.warning(
                "command_too_large",
                extra={
                    "command_id": command_id,
                    "topic": first.topic,
                    "bytes": codec.record_size(first),
                    "limit": limits.limit(first.topic),
                },
            )
            applied = oversize_rejection(
                before,
                envelope,
                reason=SNAPSHOT_TOO_LARGE if snapshot else RECORD_TOO_LARGE,
                description=description,
                completed_at=self._clock(),
                policy=self._policy,
            )
            out = self._records(applied, command_id, reply_to, echo, traceparent)
        if applied.state is not None and not all(limits.fits(r) for r in out):
            applied = dataclasses.replace(applied, state=None)
            out = self._records(applied, command_id, reply_to, echo, traceparent)
        return applied, out

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
        staged: StagedChanges,
        dlq: bool = True,
    ) -> Handled:
        """The record as received to the DLQ, and a FAILED result when the record names a
        command id that may have one (:meth:`answerable`)."""
        source = codec.dlq_source(
            message.topic() or "", message.partition() or 0, message.offset() or 0
        )
        out = []
        if dlq:
            limit = self._limits.limit(self._topics.dlq) if self._limits is not None else None
            out.append(
                codec.dead_letter_record(
                    self._topics.dlq,
                    message.key(),
                    message.value(),
                    message.headers(),
                    source=source,
                    error=error,
                    max_bytes=limit,
                )
            )
        command_id = (envelope.command_id if envelope is not None else "") or correlation_id
        # The key names the pull request when the envelope does not (or could not be read).
        pull_request_id = (
            pull_request_id_of(envelope) if envelope is not None else ""
        ) or codec.key_text(message.key())
        if command_id and self.answerable(message, command_id, pull_request_id, staged):
            result = failed_result(
                command_id,
                pull_request_id,
                command_type_name(envelope) if envelope is not None else "",
                error,
                self._clock(),
            )
            out.append(codec.result_record(reply_to, result, command_id, traceparent))
        log.warning(
            "command_dead_lettered",
            extra={
                "source": f"{message.topic()}/{message.partition()}/{message.offset()}",
                "command_id": command_id or "-",
                "error": error,
            },
        )
        command_type = command_type_name(envelope) if envelope is not None else ""
        return Handled(outcome, out, command_type, command_id=command_id or "")

    @staticmethod
    def answerable(
        message: Message, command_id: str, pull_request_id: str, staged: StagedChanges
    ) -> bool:
        """Whether a dead-lettered record may give ``command_id`` a FAILED result, without
        ever giving a command a second result: only when the id is bound to the record's pull
        request and, where that pull request's state lives, the id has no result yet.

        A pull request's state is held only on its own partition; without it here, only a
        record keyed by the pull request id (so on its partition) shows the id is unanswered.
        """
        if not command_ids.binds(command_id, pull_request_id):
            return False
        state = staged.get(message.partition() or 0, pull_request_id)
        if state is not None:
            return find_processed(state, command_id) is None
        return codec.key_text(message.key()) == pull_request_id
