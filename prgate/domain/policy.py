"""The tunable rules and limits of a pull request."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Policy:
    """Rule settings shared by the gateway's synchronous check and the processor's decision.

    Both processes build it from the same settings (``PRGATE_REQUIRED_APPROVALS``,
    ``PRGATE_MAX_*``; :mod:`prgate.policy_settings`); give them the same values, or the
    processor rejects what the gateway let through.

    ``required_approvals`` counts distinct approvals from people other than the author that a
    merge needs. The limits bound every pull request, so that its snapshot always fits a Kafka
    record and a gRPC message (:func:`prgate.domain.max_snapshot_bytes` computes the bound):

    - text limits (``max_*_bytes``) count UTF-8 bytes; ``max_title_length`` additionally
      counts characters (code points), GitHub's rule for titles. ``max_name_bytes`` is the
      limit of every person's name (author, reviewer, ``changed_by``, ``merged_by_user``,
      ``actor``). A text over its limit is INVALID_ARGUMENT ``<FIELD>_TOO_LONG``.
    - ``max_checks`` distinct check names and ``max_reviews`` approvals (distinct reviewers)
      per pull request; one more is FAILED_PRECONDITION ``TOO_MANY_CHECKS`` /
      ``TOO_MANY_REVIEWS``. A check already recorded can always be reported again.
    - ``recent_commands_kept`` bounds ``PullRequest.recent_commands`` (see
      :func:`prgate.domain.remember`).
    """

    required_approvals: int = 1
    max_title_length: int = 256
    max_title_bytes: int = 1024
    max_description_bytes: int = 64 * 1024
    max_repository_bytes: int = 256
    max_branch_bytes: int = 256
    max_name_bytes: int = 256
    max_check_name_bytes: int = 256
    max_commit_message_bytes: int = 64 * 1024
    max_reason_bytes: int = 4 * 1024
    max_checks: int = 256
    max_reviews: int = 100
    recent_commands_kept: int = 64

    def __post_init__(self) -> None:
        # A bad policy is a configuration error at start-up, not a per-command outcome.
        if self.required_approvals < 0:
            raise ValueError("required_approvals must be >= 0")
        if self.recent_commands_kept < 0:
            raise ValueError("recent_commands_kept must be >= 0")
        for field in fields(self):
            if field.name.startswith("max_") and getattr(self, field.name) < 1:
                raise ValueError(f"{field.name} must be >= 1")
        if self.required_approvals > self.max_reviews:
            # Nothing could ever be merged.
            raise ValueError("required_approvals must not exceed max_reviews")


# The default of every `policy` parameter (a module-level singleton: Policy is frozen).
DEFAULT_POLICY = Policy()
