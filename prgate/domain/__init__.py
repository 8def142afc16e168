"""The pull-request domain: pure rules shared by the gateway and the processor.

``decide(state, command)`` returns events or a rejection; ``evolve(state, event)`` folds one
event into a new state; ``apply(state, command)`` is decide plus the processor's idempotency
(recent command ids, fingerprints), the remembered command and the CommandResult. No I/O,
no clock, no randomness: time comes in as ``now`` and event ids are derived from the command id
(:data:`EVENT_ID_NAMESPACE`). Every text and every repeated field is bounded by the
:class:`Policy`, so a snapshot never outgrows :func:`max_snapshot_bytes`. The contract is
``docs/domain-api.md``.
"""

from __future__ import annotations

from . import reasons
from .apply import Applied, DecideFailed, Outcome, apply, command_result, failed_result
from .commands import command_type_name, fingerprint, pull_request_id_of
from .decide import EVENT_ID_NAMESPACE, decide, event_id, exists
from .evolve import evolve, fold
from .fields import canonical_repository, validate_fields
from .limits import MAX_REJECTION_BYTES, max_public_bytes, max_snapshot_bytes
from .outcome import Accepted, Decision, Rejected
from .policy import DEFAULT_POLICY, Policy
from .recent import find_processed, remember
from .rules import ALLOWED_TRANSITIONS, merge_commit_message, non_author_approvers
from .text import TextKind, bad_character

__all__ = [
    "ALLOWED_TRANSITIONS",
    "DEFAULT_POLICY",
    "EVENT_ID_NAMESPACE",
    "MAX_REJECTION_BYTES",
    "Accepted",
    "Applied",
    "DecideFailed",
    "Decision",
    "Outcome",
    "Policy",
    "Rejected",
    "TextKind",
    "apply",
    "bad_character",
    "canonical_repository",
    "command_result",
    "command_type_name",
    "decide",
    "event_id",
    "evolve",
    "exists",
    "failed_result",
    "find_processed",
    "fingerprint",
    "fold",
    "max_public_bytes",
    "max_snapshot_bytes",
    "merge_commit_message",
    "non_author_approvers",
    "pull_request_id_of",
    "reasons",
    "remember",
    "validate_fields",
]
