"""The bounded record of recently handled commands that travels with the pull request.

It lets the processor recognise a redelivered command id and answer it with the original
result instead of applying the command again.
"""

from __future__ import annotations

from prgate.v1 import outcome_pb2, pull_request_pb2

from .policy import DEFAULT_POLICY, Policy


def find_processed(
    state: pull_request_pb2.PullRequest | None, command_id: str
) -> outcome_pb2.ProcessedCommand | None:
    """A copy of what is recorded for ``command_id``, or None (also for an empty id)."""
    if state is None or not command_id:
        return None
    for processed in reversed(state.recent_commands):
        if processed.command_id == command_id:
            found = outcome_pb2.ProcessedCommand()
            found.CopyFrom(processed)
            return found
    return None


def remember(
    state: pull_request_pb2.PullRequest | None,
    processed: outcome_pb2.ProcessedCommand,
    policy: Policy = DEFAULT_POLICY,
) -> pull_request_pb2.PullRequest:
    """A new state with ``processed`` appended (newest last), keeping the newest
    ``policy.recent_commands_kept`` entries. An older entry with the same command id is
    dropped, so an id appears at most once. ``state`` None gives an empty pull request (version
    0) that holds only the record; decide() treats it as absent.
    """
    new = pull_request_pb2.PullRequest()
    if state is not None:
        new.CopyFrom(state)
    kept = [entry for entry in new.recent_commands if entry.command_id != processed.command_id]
    kept.append(processed)
    limit = policy.recent_commands_kept
    kept = kept[-limit:] if limit > 0 else []
    copies = []
    for entry in kept:
        copy = outcome_pb2.ProcessedCommand()
        copy.CopyFrom(entry)
        copies.append(copy)
    del new.recent_commands[:]
    new.recent_commands.extend(copies)
    return new
