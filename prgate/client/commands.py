"""The eight command methods, written once for the sync and the asyncio client.

:class:`Client` returns a ``CommandReceipt``; :class:`AsyncClient` returns an awaitable of
one. Every method takes the same keywords, ``**keywords``: ``mode``, ``idempotency_key``,
``expected_version``, ``timeout`` and ``options`` (see :mod:`prgate.client.options`). A bad
``mode`` or ``conclusion`` raises ValueError before any call; a refusal raises the
:mod:`prgate.client.errors` exception of its code.
"""

from __future__ import annotations

import abc
from typing import Any, Generic, TypeVar, Unpack, cast

from google.protobuf.message import Message

from prgate.client import requests
from prgate.client.options import CallKeywords, CallOptions
from prgate.client.requests import Conclusion, Unary
from prgate.v1 import commands_pb2

R = TypeVar("R")


class CommandMethods(abc.ABC, Generic[R]):
    """One method per command RPC of ``PullRequestCommandService``; ``R`` is what a command
    method returns (the receipt, or an awaitable of it)."""

    @abc.abstractmethod
    def _unary(self, call: Unary) -> Any:
        """Make ``call`` with retries of UNAVAILABLE; its unpacked response (AsyncClient: an
        awaitable of it)."""

    def _command(self, body: Message, keywords: CallKeywords) -> R:
        options = CallOptions.of(keywords)
        call = requests.command(body, options.command_options(), options.timeout)
        return cast(R, self._unary(call))

    def open_pull_request(  # noqa: PLR0917 - the command's fields, in the proto's order
        self,
        repository: str,
        title: str,
        author: str,
        source_branch: str,
        target_branch: str,
        description: str = "",
        **keywords: Unpack[CallKeywords],
    ) -> R:
        """Open a pull request; the receipt's ``pull_request_id`` is its new id."""
        return self._command(
            commands_pb2.OpenPullRequest(
                repository=repository,
                title=title,
                author=author,
                source_branch=source_branch,
                target_branch=target_branch,
                description=description,
            ),
            keywords,
        )

    def change_title(
        self, pull_request_id: str, title: str, changed_by: str, **keywords: Unpack[CallKeywords]
    ) -> R:
        """Give the pull request a new title."""
        body = commands_pb2.ChangePullRequestTitle(
            pull_request_id=pull_request_id, title=title, changed_by=changed_by
        )
        return self._command(body, keywords)

    def approve(self, pull_request_id: str, reviewer: str, **keywords: Unpack[CallKeywords]) -> R:
        """Approve as ``reviewer``."""
        body = commands_pb2.ApprovePullRequest(pull_request_id=pull_request_id, reviewer=reviewer)
        return self._command(body, keywords)

    def record_check(
        self,
        pull_request_id: str,
        check_name: str,
        conclusion: Conclusion | str,
        **keywords: Unpack[CallKeywords],
    ) -> R:
        """Record the latest conclusion (``"success"``, ``"failure"``, ``"pending"``) of a check."""
        return self._command(
            requests.record_check(pull_request_id, check_name, conclusion), keywords
        )

    def merge(
        self,
        pull_request_id: str,
        merged_by_user: str,
        commit_message_override: str = "",
        **keywords: Unpack[CallKeywords],
    ) -> R:
        """Merge; by default returns once ACCEPTED (follow it with ``wait_command``).

        ``commit_message_override`` (when not empty) replaces the merge commit's message.
        """
        body = commands_pb2.MergePullRequest(
            pull_request_id=pull_request_id,
            merged_by_user=merged_by_user,
            commit_message_override=commit_message_override,
        )
        return self._command(body, keywords)

    def close(self, pull_request_id: str, actor: str, **keywords: Unpack[CallKeywords]) -> R:
        """Close an open pull request (the command; the client itself ends with ``shutdown``)."""
        body = commands_pb2.ClosePullRequest(pull_request_id=pull_request_id, actor=actor)
        return self._command(body, keywords)

    def reopen(self, pull_request_id: str, actor: str, **keywords: Unpack[CallKeywords]) -> R:
        """Reopen a closed pull request."""
        body = commands_pb2.ReopenPullRequest(pull_request_id=pull_request_id, actor=actor)
        return self._command(body, keywords)

    def revert(
        self, pull_request_id: str, actor: str, reason: str = "", **keywords: Unpack[CallKeywords]
    ) -> R:
        """Revert a merged pull request; by default returns once ACCEPTED."""
        body = commands_pb2.RevertPullRequest(
            pull_request_id=pull_request_id, actor=actor, reason=reason
        )
        return self._command(body, keywords)
