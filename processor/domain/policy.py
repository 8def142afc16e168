"""The tunable limits of the pull-request rules."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    """Rule settings shared by the gateway's synchronous check and the processor's decision.

    ``required_approvals`` counts distinct approvals from people other than the author that a
    merge needs; ``max_title_length`` is in characters (code points); ``recent_commands_kept``
    bounds ``PullRequest.recent_commands`` (see :func:`processor.domain.remember`).
    """

    required_approvals: int = 1
    max_title_length: int = 256
    recent_commands_kept: int = 64

    def __post_init__(self) -> None:
        # A bad policy is a configuration error at start-up, not a per-command outcome.
        if self.required_approvals < 0:
            raise ValueError("required_approvals must be >= 0")
        if self.max_title_length < 1:
            raise ValueError("max_title_length must be >= 1")
        if self.recent_commands_kept < 0:
            raise ValueError("recent_commands_kept must be >= 0")


# The default of every `policy` parameter (a module-level singleton: Policy is frozen).
DEFAULT_POLICY = Policy()
