"""Small facts about a CommandEnvelope: its type name and the pull request it targets."""

from __future__ import annotations

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
