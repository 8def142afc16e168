"""Every record prgate puts on Kafka, encoded and decoded in one place: the wire contract.

Values are protobuf binary, keys and header values UTF-8 text; the header names and the
``message-type`` values are in :mod:`prgate.kafka.contract`. Per topic:

=====================  ===================  ====================  ================================
topic                  value                key                   headers
=====================  ===================  ====================  ================================
commands               CommandEnvelope      pull request id       message-type, correlation-id (the
                                                                  command id), reply-to, traceparent
pull-request-events    EventEnvelope        pull request id       message-type, correlation-id (the
                                                                  causing command's), traceparent
pull-requests          PullRequest, or      pull request id       message-type, correlation-id (the
                       null (tombstone)                           causing command's), traceparent
command-results        CommandResult        command id            message-type, correlation-id (as
(or the reply-to)                                                 the command had it), traceparent
commands.dlq           the command record   as received           as received, then dlq-error (why,
                       as received (cut to                        at most 2000 bytes), dlq-source
                       fit, see below)                            (``topic/partition/offset``)[,
                                                                  dlq-original-size]
command-refusals       CommandRefusal       pull request id (no   message-type, correlation-id (the
                                            key when it has none) command id), traceparent
=====================  ===================  ====================  ================================

``traceparent`` is written only when there is one. A record without a ``message-type`` header
is read as the topic's type; one whose header names another type is refused. A dead letter that
would not fit the DLQ topic is cut (value first, then the original headers, then the key) and
ends with ``dlq-original-size``, the original record's size (:func:`record_size`).

The boundary is plain data, so all of it is testable without a broker: keys and values are
``bytes`` (or None), headers are what confluent-kafka hands out (a list of pairs or a dict, or
None; values str, bytes or None). A consumed ``Message`` goes in as ``msg.key(), msg.value(),
msg.headers()``; a :class:`Record` goes out through ``produce(r.topic, key=r.key,
value=r.value, headers=r.headers)``. Decoders raise :class:`Undecodable` with a short reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from prgate.domain import command_type_name, pull_request_id_of
from prgate.kafka import command_ids
from prgate.kafka.contract import (
    HEADER_CORRELATION_ID,
    HEADER_DLQ_ERROR,
    HEADER_DLQ_ORIGINAL_SIZE,
    HEADER_DLQ_SOURCE,
    HEADER_MESSAGE_TYPE,
    HEADER_REPLY_TO,
    HEADER_TRACEPARENT,
    TYPE_COMMAND_ENVELOPE,
    TYPE_COMMAND_REFUSAL,
    TYPE_COMMAND_RESULT,
    TYPE_EVENT_ENVELOPE,
    TYPE_PULL_REQUEST,
)
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.events_pb2 import EventEnvelope
from prgate.v1.pull_request_pb2 import PullRequest
from prgate.v1.refusals_pb2 import CommandRefusal
from prgate.v1.results_pb2 import CommandResult

HeaderValue = str | bytes | None
# Headers as confluent-kafka hands them out: a list of pairs (consumed records) or a dict.
RawHeaders = Mapping[str, HeaderValue] | Sequence[tuple[str, HeaderValue]] | None
# Headers as written: pairs in order. The values written here are bytes (None only when passed
# on as received); the type is what confluent-kafka's produce() takes.
Headers = list[tuple[str, str | bytes | None]]

# The dlq-error text of a command whose id is not bound to its pull request starts with this.
COMMAND_ID_NOT_BOUND = "COMMAND_ID_NOT_BOUND"

# Longest dlq-error header kept: the error text of a parse failure is short, a traceback is not.
MAX_DLQ_ERROR_BYTES = 2000

# Bytes of a Kafka record batch (format v2) besides its records, and the most a record adds
# besides its key, value and headers (length, attributes, timestamp and offset deltas, the key
# and value lengths, the header count: varints at their longest).
BATCH_OVERHEAD = 61
RECORD_OVERHEAD = 1 + 10 + 5 + 5 + 5 + 5 + 5
HEADER_OVERHEAD = 5 + 5  # name length, value length

_M = TypeVar("_M", bound=ProtoMessage)


@dataclass(frozen=True, slots=True)
class Record:
    """One record to produce: ``topic``, ``key`` and ``value`` (None: null), ``headers``."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


class Undecodable(ValueError):
    """The record is not a usable value of its topic; ``str(exc)`` says why in a few words."""


class UndecodableCommand(Undecodable):
    """A command record that cannot be handled.

    ``envelope`` is what could be parsed, when anything could (e.g. a command id without a
    known command), so the processor can still answer it with a FAILED result.
    """

    def __init__(self, reason: str, envelope: CommandEnvelope | None = None) -> None:
        super().__init__(reason)
        self.envelope = envelope


# -- headers and keys -------------------------------------------------------------------------


def _pairs(headers: RawHeaders) -> Iterable[tuple[str, HeaderValue]]:
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


def record_size(record: Record) -> int:
    """An upper bound of the bytes ``record`` takes alone in a record batch, uncompressed: what
    the broker holds against the topic's ``max.message.bytes``. It is also at least what
    librdkafka holds against the producer's ``message.max.bytes`` (key, value, headers)."""
    size = BATCH_OVERHEAD + RECORD_OVERHEAD + len(record.key or b"") + len(record.value or b"")
    for name, value in record.headers:
        size += HEADER_OVERHEAD + len(name.encode()) + len(_raw(value))
    return size


def _raw(value: HeaderValue) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value


def _as_written(headers: RawHeaders) -> Headers:
    return [(name, raw.encode() if isinstance(raw, str) else raw) for name, raw in _pairs(headers)]


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def header_texts(headers: RawHeaders) -> dict[str, str]:
    """Every header as text by name: for a repeated name the last value, null values left out.

    Bytes are decoded as UTF-8 with undecodable bytes replaced (U+FFFD).
    """
    return {name: _text(value) for name, value in _pairs(headers) if value is not None}


def header(headers: RawHeaders, name: str) -> str | None:
    """The last non-null value of header ``name`` as text (see :func:`header_texts`), or None."""
    if headers is None:
        return None
    if isinstance(headers, Mapping):
        value = headers.get(name)
        return None if value is None else _text(value)
    # Per record on every restore: no dict of all headers, just the last match.
    for found, value in reversed(headers):
        if found == name and value is not None:
            return _text(value)
    return None


def record_headers(
    message_type: str,
    *,
    correlation_id: str | None = None,
    reply_to: str | None = None,
    traceparent: str | None = None,
) -> Headers:
    """The fixed headers of a record: ``message-type`` always, the others when given (non-empty)."""
    out: Headers = [(HEADER_MESSAGE_TYPE, message_type.encode())]
    for name, value in (
        (HEADER_CORRELATION_ID, correlation_id),
        (HEADER_REPLY_TO, reply_to),
        (HEADER_TRACEPARENT, traceparent),
    ):
        if value:
            out.append((name, value.encode()))
    return out


def key_text(key: bytes | None) -> str:
    """A record key as text (UTF-8, undecodable bytes replaced); ``""`` for no key."""
    return "" if key is None else _text(key)


# -- encoding ---------------------------------------------------------------------------------


def _encode(topic: str, key: str, value: ProtoMessage, headers: Headers) -> Record:
    return Record(topic, key.encode(), value.SerializeToString(), headers)


def command_record(
    topic: str, envelope: CommandEnvelope, *, reply_to: str, traceparent: str | None = None
) -> Record:
    """A command as the gateway produces it: keyed by the envelope's ``pull_request_id`` (the
    partition holding that pull request's state), correlation-id = command id, ``reply_to`` =
    the topic the result is wanted on."""
    headers = record_headers(
        TYPE_COMMAND_ENVELOPE,
        correlation_id=envelope.command_id,
        reply_to=reply_to,
        traceparent=traceparent,
    )
    return _encode(topic, envelope.pull_request_id, envelope, headers)


def event_record(topic: str, event: EventEnvelope, traceparent: str | None = None) -> Record:
    """An event, keyed by its pull request id, correlation-id = the causing command's id."""
    headers = record_headers(
        TYPE_EVENT_ENVELOPE, correlation_id=event.command_id, traceparent=traceparent
    )
    return _encode(topic, event.pull_request_id, event, headers)


def snapshot_record(
    topic: str, state: PullRequest, command_id: str, traceparent: str | None = None
) -> Record:
    """The whole pull request for the compacted topic, keyed by its id; ``command_id`` is the
    command that made this version (the correlation-id)."""
    headers = record_headers(TYPE_PULL_REQUEST, correlation_id=command_id, traceparent=traceparent)
    return _encode(topic, state.pull_request_id, state, headers)


def result_record(
    topic: str, result: CommandResult, correlation_id: str, traceparent: str | None = None
) -> Record:
    """A CommandResult for ``topic`` (the command's reply-to), keyed by command id, with the
    command's ``correlation_id`` echoed."""
    headers = record_headers(
        TYPE_COMMAND_RESULT, correlation_id=correlation_id, traceparent=traceparent
    )
    return _encode(topic, result.command_id, result, headers)


def refusal_record(topic: str, refusal: CommandRefusal, traceparent: str | None = None) -> Record:
    """A refusal for the command-refusals topic: keyed by the refused command's pull request id
    (no key when it has none), correlation-id = its command id."""
    headers = record_headers(
        TYPE_COMMAND_REFUSAL, correlation_id=refusal.command.command_id, traceparent=traceparent
    )
    key = refusal.command.pull_request_id
    return Record(topic, key.encode() if key else None, refusal.SerializeToString(), headers)


def dlq_source(topic: str, partition: int, offset: int) -> str:
    """Where a dead-lettered record was read, as the ``dlq-source`` header says it."""
    return f"{topic}/{partition}/{offset}"


def dead_letter_record(
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: RawHeaders,
    *,
    source: str,
    error: str,
    max_bytes: int | None = None,
) -> Record:
    """A consumed record for the DLQ: key, value and headers as received (str values as
    UTF-8 bytes, null values kept), then ``dlq-error`` (``error``, cut to
    :data:`MAX_DLQ_ERROR_BYTES`) and ``dlq-source`` (``source``, see :func:`dlq_source`).

    With ``max_bytes`` (the DLQ topic's limit, see :func:`record_size`) a copy that would not
    fit is cut, value first, then the original headers, then the key, and gets a last header
    ``dlq-original-size``: the size of the copy before it was cut.
    """
    dlq_headers: Headers = [
        (HEADER_DLQ_ERROR, error.encode("utf-8", errors="replace")[:MAX_DLQ_ERROR_BYTES]),
        (HEADER_DLQ_SOURCE, source.encode()),
    ]
    full = Record(topic, key, value, [*_as_written(headers), *dlq_headers])
    original = record_size(full)
    if max_bytes is None or original <= max_bytes:
        return full
    dlq_headers.append((HEADER_DLQ_ORIGINAL_SIZE, str(original).encode()))
    kept_headers = _as_written(headers)
    cut = Record(topic, key, b"", [*kept_headers, *dlq_headers])
    room = max_bytes - record_size(cut)
    if room >= 0:
        return Record(topic, key, (value or b"")[:room], cut.headers)
    # The original headers do not fit either.
    room = max_bytes - record_size(Record(topic, b"", b"", dlq_headers))
    return Record(topic, (key or b"")[: max(0, room)], b"", dlq_headers)


# -- decoding ---------------------------------------------------------------------------------


def _check_type(headers: RawHeaders, message_type: str) -> None:
    if not headers:  # the common case of a caller that checked the type itself (the archive)
        return
    if type(headers) is list:
        # Per record on every restore: the last message-type header, compared as bytes first.
        for name, value in reversed(headers):
            if name == HEADER_MESSAGE_TYPE and value is not None:
                if value != message_type.encode() and _text(value) != message_type:
                    raise Undecodable(f"message-type {_text(value)!r} is not {message_type}")
                return
        return
    found = header(headers, HEADER_MESSAGE_TYPE)
    if found is not None and found != message_type:
        raise Undecodable(f"message-type {found!r} is not {message_type}")


def _parse(
    cls: type[_M], message_type: str, value: bytes | None, headers: RawHeaders, id_path: str
) -> _M:
    """``value`` as ``cls``, whose field at ``id_path`` (dotted, e.g. ``command.command_id``)
    must be set."""
    _check_type(headers, message_type)
    if not value:
        raise Undecodable("empty value")
    try:
        parsed = cls.FromString(value)
    except DecodeError as exc:
        raise Undecodable(f"not a protobuf {cls.__name__}: {exc}") from exc
    field: object = parsed
    for name in id_path.split(".") if "." in id_path else (id_path,):
        field = getattr(field, name)
    if not field:
        raise Undecodable(f"{cls.__name__} has no {id_path}")
    return parsed


def decode_command(key: bytes | None, value: bytes | None, headers: RawHeaders) -> CommandEnvelope:
    """The CommandEnvelope of a commands record, or :class:`UndecodableCommand` saying why not.

    Beyond parsing, a usable command has a command id, a command this version knows, a pull
    request id, the record's key is that pull request id, and the command id is bound to it
    (:func:`prgate.kafka.command_ids.binds`).
    """
    try:
        envelope = _parse(CommandEnvelope, TYPE_COMMAND_ENVELOPE, value, headers, "command_id")
    except Undecodable as exc:
        raise UndecodableCommand(str(exc)) from exc
    if not command_type_name(envelope):
        raise UndecodableCommand(
            "CommandEnvelope names no command, or one this version does not know", envelope
        )
    pull_request_id = pull_request_id_of(envelope)
    if not pull_request_id:
        raise UndecodableCommand("CommandEnvelope names no pull_request_id", envelope)
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
            f"record key {key_text(key)!r} is not the pull request id {pull_request_id!r}",
            envelope,
        )
    if not command_ids.binds(envelope.command_id, pull_request_id):
        # An id issued for another pull request (or none): answering it here would give that
        # command a second result.
        raise UndecodableCommand(
            f"{COMMAND_ID_NOT_BOUND}: command id {envelope.command_id[:80]!r} is not bound to the"
            f" pull request id {pull_request_id!r}",
            envelope,
        )
    return envelope


def decode_event(value: bytes | None, headers: RawHeaders) -> EventEnvelope:
    """The EventEnvelope of an events record (it must have an event id)."""
    return _parse(EventEnvelope, TYPE_EVENT_ENVELOPE, value, headers, "event_id")


def decode_snapshot(
    key: bytes | None, value: bytes | None, headers: RawHeaders
) -> PullRequest | None:
    """The PullRequest of a pull-requests record; None for a tombstone (null value, keyed).

    The snapshot must have a pull request id, equal to the key when there is a key.
    """
    if value is None:
        _check_type(headers, TYPE_PULL_REQUEST)
        if not key:
            raise Undecodable("tombstone without key")
        return None
    state = _parse(PullRequest, TYPE_PULL_REQUEST, value, headers, "pull_request_id")
    if key and key_text(key) != state.pull_request_id:
        raise Undecodable(f"key differs from id {state.pull_request_id!r}")
    return state


def decode_result(value: bytes | None, headers: RawHeaders) -> CommandResult:
    """The CommandResult of a results record (it must have a command id)."""
    return _parse(CommandResult, TYPE_COMMAND_RESULT, value, headers, "command_id")


def decode_refusal(value: bytes | None, headers: RawHeaders) -> CommandRefusal:
    """The CommandRefusal of a command-refusals record (its command must have a command id)."""
    return _parse(CommandRefusal, TYPE_COMMAND_REFUSAL, value, headers, "command.command_id")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A decoded DLQ record: why (``error``), from where (``source_*``), and the original
    record (``key``, ``value``, ``headers`` without the dlq headers, as received, or what was
    kept of them when the copy was cut: then ``original_size`` is the copy's size before)."""

    error: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    original_size: int | None = None


def decode_dead_letter(key: bytes | None, value: bytes | None, headers: RawHeaders) -> DeadLetter:
    """The dead letter in a DLQ record; Undecodable unless its headers end with dlq-error and
    dlq-source, and then maybe dlq-original-size (as :func:`dead_letter_record` writes them)."""
    original = _as_written(headers)
    original_size: int | None = None
    if original and original[-1][0] == HEADER_DLQ_ORIGINAL_SIZE:
        size_text = _text(original.pop()[1] or b"")
        if not size_text.isdigit():
            raise Undecodable(f"{HEADER_DLQ_ORIGINAL_SIZE} {size_text!r} is not a size")
        original_size = int(size_text)
    found: dict[str, str] = {}
    # Appended last; a header of the same name further up belongs to the original record.
    for name in (HEADER_DLQ_SOURCE, HEADER_DLQ_ERROR):
        last = original.pop() if original else None
        if last is None or last[0] != name or last[1] is None:
            raise Undecodable(
                f"the headers do not end with {HEADER_DLQ_ERROR}, {HEADER_DLQ_SOURCE}"
            )
        found[name] = _text(last[1])
    source = found[HEADER_DLQ_SOURCE]
    parts = source.rsplit("/", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].isdigit():
        raise Undecodable(f"{HEADER_DLQ_SOURCE} {source!r} is not topic/partition/offset")
    return DeadLetter(
        found[HEADER_DLQ_ERROR],
        parts[0],
        int(parts[1]),
        int(parts[2]),
        key,
        value,
        original,
        original_size,
    )
