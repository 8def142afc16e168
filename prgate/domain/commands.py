"""Small facts about a CommandEnvelope: its type name, the pull request it targets, and the
fingerprint that tells a redelivered command from another command under the same id."""

from __future__ import annotations

import hashlib

from prgate.v1 import commands_pb2

OPEN = "open_pull_request"

# CommandEnvelope oneof field name -> short message name, e.g. "MergePullRequest".
COMMAND_TYPES: dict[str, str] = {
    field.name: field.message_type.name
    for field in commands_pb2.CommandEnvelope.DESCRIPTOR.oneofs_by_name["command"].fields
    if field.message_type is not None
}


def command_type_name(command: commands_pb2.CommandEnvelope) -> str:
    """The short name of the command in the envelope (``"MergePullRequest"``), ``""`` if unset."""
    which = command.WhichOneof("command")
    return "" if which is None else COMMAND_TYPES[which]


def pull_request_id_of(command: commands_pb2.CommandEnvelope) -> str:
    """The id of the pull request the command is about.

    For OpenPullRequest that is the envelope's ``pull_request_id`` (the gateway assigns it); for
    every other command it is the command's own ``pull_request_id``, falling back to the
    envelope's when the command leaves it empty. ``""`` when neither says.
    """
    which = command.WhichOneof("command")
    if which is None or which == OPEN:
        return command.pull_request_id
    own: str = getattr(command, which).pull_request_id
    return own or command.pull_request_id


def fingerprint(command: commands_pb2.CommandEnvelope) -> bytes:
    """SHA-256 of what makes the command itself: type, fields, expected version, pull request.

    Not the ids, the caller or the time: a retry of the same command has the same fingerprint,
    the same idempotency key used for another command does not.
    """
    digest = hashlib.sha256()
    which = command.WhichOneof("command") or ""
    digest.update(which.encode())
    if which:
        digest.update(getattr(command, which).SerializeToString(deterministic=True))
    if command.HasField("expected_version"):
        digest.update(str(command.expected_version).encode())
    digest.update(pull_request_id_of(command).encode())
    return digest.digest()
