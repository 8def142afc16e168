"""A command call as admission sees it, whatever carries it, and its CommandEnvelope.

:class:`CommandRequest` is any of the eight command requests; :class:`CallContext` is what the
transport knows about the call (the caller, request headers, the deadline). The gRPC servicer
implements it over grpc.aio's servicer context; an HTTP/JSON server would over its request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from google.protobuf.message import Message

from gateway import refusals
from gateway.command_specs import ACCEPTED, COMPLETED, CommandSpec
from gateway.idempotency import pull_request_id_for
from prgate.domain import pull_request_id_of
from prgate.kafka import command_ids
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, results_pb2

MAX_KEY_LENGTH = 256
MAX_ID_LENGTH = 128
IDEMPOTENCY_METADATA = "idempotency-key"


class CommandRequest(Protocol):
    """One of the eight ``<Command>Request`` messages: the command and its options."""

    @property
    def command(self) -> Message: ...

    @property
    def options(self) -> svc.CommandOptions: ...


class CallContext(Protocol):
    """The transport's side of one call; read only when (and in the order) a step needs it."""

    def caller(self) -> str:
        """The authenticated caller's name, "" without authentication (may raise on a bug)."""
        ...

    def header(self, name: str) -> str:
        """The request header (gRPC metadata entry) ``name``, lower-case; "" when absent."""
        ...

    def time_remaining(self) -> float | None:
        """Seconds until the call's deadline; None when the call has none."""
        ...


def reply_budget(remaining: float | None, default: float) -> float:
    """Seconds a call with ``remaining`` seconds (None: no deadline) may still wait, keeping
    a margin to answer before the deadline; ``default`` without a deadline."""
    if remaining is None:
        return default
    margin = min(0.25, remaining * 0.1)
    return max(0.0, remaining - margin)


def receipt_for(result: results_pb2.CommandResult) -> svc.CommandReceipt:
    return svc.CommandReceipt(
        command_id=result.command_id,
        pull_request_id=result.pull_request_id,
        state=result.state,
        result=result,
    )


def build_envelope(
    spec: CommandSpec, request: CommandRequest, *, caller: str, key: str, now: float
) -> commands_pb2.CommandEnvelope:
    """The envelope of one command call: ids assigned, options copied, the command inside.

    The command id is bound to the pull request (:mod:`prgate.kafka.command_ids`): the key (or
    a random UUID) gives its base, the pull request id its tag.

    ``now`` is Unix time in seconds (``issued_at``). Refusal INVALID_ARGUMENT for a key
    longer than MAX_KEY_LENGTH.
    """
    if len(key) > MAX_KEY_LENGTH:
        raise refusals.invalid_argument(
            "options.idempotency_key",
            "IDEMPOTENCY_KEY_TOO_LONG",
            f"idempotency key must be at most {MAX_KEY_LENGTH} characters",
        )
    base = command_ids.key_base(caller, key) if key else command_ids.new_base()
    envelope = commands_pb2.CommandEnvelope(caller=caller, idempotency_key=key)
    command = getattr(envelope, spec.envelope_field)
    command.CopyFrom(request.command)
    # Fields this version does not know would travel to Kafka unseen by every rule (and could
    # pad a record past the broker's limit): the command that is checked is what is sent.
    command.DiscardUnknownFields()
    # OpenPullRequest's id is derived from its command id's base; the others name theirs.
    envelope.pull_request_id = (
        pull_request_id_for(base) if spec.creates else pull_request_id_of(envelope)
    )
    # The id names its pull request, so it can never answer for another one.
    envelope.command_id = command_ids.bind(base, envelope.pull_request_id)
    envelope.issued_at.FromDatetime(datetime.fromtimestamp(now, UTC))
    if request.options.HasField("expected_version"):
        envelope.expected_version = request.options.expected_version
    return envelope


def response_mode(spec: CommandSpec, request: CommandRequest) -> int:
    """The call's response mode: the request's, or the command's default when unspecified."""
    mode = int(request.options.response_mode)
    if mode == svc.RESPONSE_MODE_UNSPECIFIED:
        return spec.default_mode
    if mode not in (ACCEPTED, COMPLETED):
        raise refusals.invalid_argument(
            "options.response_mode",
            "UNKNOWN_RESPONSE_MODE",
            f"response_mode {mode} is not one of ACCEPTED, COMPLETED",
        )
    return mode
