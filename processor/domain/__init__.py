"""The pull-request domain: pure rules shared by the gateway and the processor.

``decide(state, command)`` returns events or a rejection; ``evolve(state, event)`` folds one
event into a new state. No I/O, no clock, no randomness: time comes in as ``now`` and event ids
are derived from the command id (:data:`EVENT_ID_NAMESPACE`). The contract is
``docs/domain-api.md``.
"""

from __future__ import annotations

from . import reasons
from .commands import command_type_name, fingerprint, pull_request_id_of
from .decide import EVENT_ID_NAMESPACE, decide, event_id, exists
from .evolve import evolve, fold
from .fields import validate_fields
from .outcome import Accepted, Decision, Rejected
from .policy import DEFAULT_POLICY, Policy
from .recent import find_processed, remember
from .rules import ALLOWED_TRANSITIONS, merge_commit_message, non_author_approvers

__all__ = [
    "ALLOWED_TRANSITIONS",
    "DEFAULT_POLICY",
    "EVENT_ID_NAMESPACE",
    "Accepted",
    "Decision",
    "Policy",
    "Rejected",
    "command_type_name",
    "decide",
    "event_id",
    "evolve",
    "exists",
    "find_processed",
    "fingerprint",
    "fold",
    "merge_commit_message",
    "non_author_approvers",
    "pull_request_id_of",
    "reasons",
    "remember",
    "validate_fields",
]
