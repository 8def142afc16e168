"""From a command RPC's request to a CommandEnvelope, and the small call helpers around it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway import errors
from gateway.command_specs import ACCEPTED, COMPLETED, CommandSpec
from gateway.idempotency import command_id_for_key, new_command_id, pull_request_id_for
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, results_pb2

MAX_KEY_LENGTH = 256
MAX_ID_LENGTH = 128
IDEMPOTENCY_METADATA = "idempotency-key"


def reply_budget(context: Any, default: float) -> float:
    """Seconds this call may still wait, keeping a margin to answer before the deadline."""
    remaining: float | None = context.time_remaining()
    if remaining is None:
        return default
    margin = min(0.25, remaining * 0.1)
    return max(0.0, remaining - margin)


def metadata_value(context: Any, key: str) -> str:
    for item in context.invocation_metadata() or ():
        if item[0] == key:
            value = item[1]
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return ""


def receipt_for(result: results_pb2.CommandResult) -> svc.CommandReceipt:
    return svc.CommandReceipt(
        command_id=result.command_id,
        pull_request_id=result.pull_request_id,
        state=result.state,
        result=result,
    )


def build_envelope(
    spec: CommandSpec, request: Any, *, caller: str, key: str, now: float
) -> commands_pb2.CommandEnvelope:
    """The envelope of one command call: ids assigned, options copied, the command inside."""
    if len(key) > MAX_KEY_LENGTH:
        raise errors.invalid_argument(
            "options.idempotency_key",
            "IDEMPOTENCY_KEY_TOO_LONG",
            f"idempotency key must be at most {MAX_KEY_LENGTH} characters",
        )
    command_id = command_id_for_key(caller, key) if key else new_command_id()
    command = request.command
    pull_request_id = pull_request_id_for(command_id) if spec.creates else command.pull_request_id
    envelope = commands_pb2.CommandEnvelope(
        command_id=command_id,
        pull_request_id=pull_request_id,
        caller=caller,
        idempotency_key=key,
    )
    envelope.issued_at.FromDatetime(datetime.fromtimestamp(now, UTC))
    if request.options.HasField("expected_version"):
        envelope.expected_version = request.options.expected_version
    getattr(envelope, spec.envelope_field).CopyFrom(command)
    return envelope


def response_mode(spec: CommandSpec, request: Any) -> int:
    """The call's response mode: the request's, or the command's default when unspecified."""
    mode = int(request.options.response_mode)
    if mode == svc.RESPONSE_MODE_UNSPECIFIED:
        return spec.default_mode
    if mode not in (ACCEPTED, COMPLETED):
        raise errors.invalid_argument(
            "options.response_mode",
            "UNKNOWN_RESPONSE_MODE",
            f"response_mode {mode} is not one of ACCEPTED, COMPLETED",
        )
    return mode
