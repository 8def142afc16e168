"""The domain rules and limits as settings, shared by the gateway and the processor.

Both processes check commands with the same :class:`prgate.domain.Policy`: the gateway
synchronously on its read model, the processor when it applies them. Both settings classes
inherit :class:`PolicySettings`, so the same flags and ``PRGATE_*`` variables configure both;
give both processes the same values (a command the gateway lets through under a looser limit
is then REJECTED by the processor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prgate.domain import DEFAULT_POLICY, Policy
from prgate.settings import setting

_D = DEFAULT_POLICY


@dataclass(frozen=True)
class PolicySettings:
    """The fields of :class:`prgate.domain.Policy` that both processes take from settings."""

    required_approvals: int = setting(
        _D.required_approvals,
        "PRGATE_REQUIRED_APPROVALS",
        "approvals from non-authors a merge needs",
    )
    max_title_length: int = setting(
        _D.max_title_length, "PRGATE_MAX_TITLE_LENGTH", "longest title in characters (code points)"
    )
    max_title_bytes: int = setting(
        _D.max_title_bytes, "PRGATE_MAX_TITLE_BYTES", "longest title in UTF-8 bytes"
    )
    max_description_bytes: int = setting(
        _D.max_description_bytes,
        "PRGATE_MAX_DESCRIPTION_BYTES",
        "longest pull request description in UTF-8 bytes",
    )
    max_repository_bytes: int = setting(
        _D.max_repository_bytes,
        "PRGATE_MAX_REPOSITORY_BYTES",
        "longest repository name (owner/name) in bytes",
    )
    max_branch_bytes: int = setting(
        _D.max_branch_bytes, "PRGATE_MAX_BRANCH_BYTES", "longest branch name in UTF-8 bytes"
    )
    max_name_bytes: int = setting(
        _D.max_name_bytes,
        "PRGATE_MAX_NAME_BYTES",
        "longest user name (author, reviewer, changed_by, merged_by_user, actor) in UTF-8 bytes",
    )
    max_check_name_bytes: int = setting(
        _D.max_check_name_bytes, "PRGATE_MAX_CHECK_NAME_BYTES", "longest check name in UTF-8 bytes"
    )
    max_commit_message_bytes: int = setting(
        _D.max_commit_message_bytes,
        "PRGATE_MAX_COMMIT_MESSAGE_BYTES",
        "longest merge commit message override in UTF-8 bytes",
    )
    max_reason_bytes: int = setting(
        _D.max_reason_bytes, "PRGATE_MAX_REASON_BYTES", "longest revert reason in UTF-8 bytes"
    )
    max_checks: int = setting(
        _D.max_checks,
        "PRGATE_MAX_CHECKS",
        "distinct check names per pull request; one more is FAILED_PRECONDITION TOO_MANY_CHECKS",
    )
    max_reviews: int = setting(
        _D.max_reviews,
        "PRGATE_MAX_REVIEWS",
        "approvals (distinct reviewers) per pull request; one more is FAILED_PRECONDITION"
        " TOO_MANY_REVIEWS",
    )

    def policy(self, **extra: Any) -> Policy:
        """The domain policy these settings describe (``extra``: the other Policy fields, such
        as the processor's ``recent_commands_kept``). Raises ValueError for a bad value."""
        return Policy(
            required_approvals=self.required_approvals,
            max_title_length=self.max_title_length,
            max_title_bytes=self.max_title_bytes,
            max_description_bytes=self.max_description_bytes,
            max_repository_bytes=self.max_repository_bytes,
            max_branch_bytes=self.max_branch_bytes,
            max_name_bytes=self.max_name_bytes,
            max_check_name_bytes=self.max_check_name_bytes,
            max_commit_message_bytes=self.max_commit_message_bytes,
            max_reason_bytes=self.max_reason_bytes,
            max_checks=self.max_checks,
            max_reviews=self.max_reviews,
            **extra,
        )
