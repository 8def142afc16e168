"""The eight command methods, written once for the sync and the asyncio client.

:class:`Client` returns a ``CommandReceipt``; :class:`AsyncClient` returns an awaitable of
one. Both differ only in ``_send``. Every method takes the same keyword options:

- ``mode``: ``"accepted"`` returns once the command is durably on Kafka, ``"completed"`` waits
  for the processor's result; ``None`` is the command's default (COMPLETED, but ACCEPTED for
  merge and revert, which callers follow with ``watch_command``/``wait_command``);
- ``idempotency_key``: a key of the caller's (default: a new uuid4 per call, reused for the
  client's own retries);
- ``expected_version``: apply only at exactly this pull request version, else ``Aborted``;
- ``timeout``: seconds per attempt (default: the client's ``timeout``).

A refusal raises the :mod:`prgate.client.errors` exception of its code.
"""

from __future__ import annotations

import abc
from typing import Generic, TypeVar

from prgate.client import requests
from prgate.client.requests import CommandCall, Conclusion, Mode
from prgate.v1 import commands_pb2

R = TypeVar("R")


class CommandMethods(abc.ABC, Generic[R]):
    """One method per command RPC of ``PullRequestCommandService``."""

    @abc.abstractmethod
    def _send(self, call: CommandCall, timeout: float | None) -> R:
        """Call ``call.rpc`` with retries of UNAVAILABLE; return the receipt."""

    def open_pull_request(  # noqa: PLR0917 - the command's fields, in the proto's order
        self,
        repository: str,
        title: str,
        author: str,
        source_branch: str,
        target_branch: str,
        description: str = "",
        *,
        mode: Mode | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        timeout: float | None = None,
    ) -> R:
        """Open a pull request; the receipt's ``pull_request_id`` is its new id."""
        body = requests.open_pull_request(
            repository, title, author, source_branch, target_branch, description=description
        )
        return self._send(
            requests.command(
                *requests.OPEN,
                body,
                mode=mode,
                idempotency_key=idempotency_key,
                expected_version=expected_version,
            ),
            timeout,
        )

    def change_title(
        self,
        pull_request_id: str,
        title: str,
        changed_by: str,
        *,
        mode: Mode | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        timeout: float | None = None,
    ) -> R:
        body = commands_pb2.ChangePullRequestTitle(
            pull_request_id=pull_request_id, title=title, changed_by=changed_by
        )
        return self._send(
            requests.command(
                *requests.CHANGE_TITLE,
                body,
                mode=mode,
                idempotency_key=idempotency_key,
                expected_version=expected_version,
            ),
            timeout,
        )

    def approve(
        self,
        pull_request_id: str,
        reviewer: str,
        *,
        mode: Mode | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        timeout: float | None = None,
    ) -> R:
        body = commands_pb2.ApprovePullRequest(pull_request_id=pull_request_id, reviewer=reviewer)
        return self._send(
            requests.command(
                *requests.APPROVE,
                body,
                mode=mode,
                idempotency_key=idempotency_key,
                expected_version=expected_version,
            ),
            timeout,
        )

    def record_check(
        self,
        pull_request_id: str,
        check_name: str,
        conclusion: Conclusion | str,
        *,
        mode: Mode | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        timeout: float | None = None,
    ) -> R:
        """Record the latest conclusion (``"success"``, ``"failure"``, ``"pending"``) of a check."""
        body = requests.record_check(pull_request_id, check_name, conclusion)
        return self._send(
            requests.command(
                *requests.RECORD_CHECK,
                body,
                mode=mode,
                idempotency_key=idempotency_key,
                expected_version=expected_version,
            ),
            timeout,
        )

    def merge(
        self,
        pull_request_id: str,
        merged_by_user: str,
        commit_message_override: str = "",
        *,
        mode: Mode | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        timeout: float | None = None,
    ) -> R:
        """Merge; by default returns once ACCEPTED (follow it with ``wait_command``)."""
        body = commands_pb2.MergePullRequest(
            pull_request_id=pull_request_id,
            merged_by_user=merged_by_user,
            commit_message_override=commit_message_override,
        )
        return self._send(
            requests.command(
                *requests.MERGE,
                body,
                mode=mode,
                idempotency_key=idempotency_key,
                expected_version=expected_version,
            ),
            timeout,
        )

    def close(
        self,
        pull_request_id: str,
        actor: str,
        *,
        mode: Mode | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        timeout: float | None = None,
    ) -> R:
        """Close an open pull request (the command; the client itself ends with ``shutdown``)."""
        body = commands_pb2.ClosePullRequest(pull_request_id=pull_request_id, actor=actor)
        return self._send(
            requests.command(
                *requests.CLOSE,
                body,
                mode=mode,
                idempotency_key=idempotency_key,
                expected_version=expected_version,
            ),
            timeout,
        )

    def reopen(
        self,
        pull_request_id: str,
        actor: str,
        *,
        mode: Mode | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        timeout: float | None = None,
    ) -> R:
        body = commands_pb2.ReopenPullRequest(pull_request_id=pull_request_id, actor=actor)
        return self._send(
            requests.command(
                *requests.REOPEN,
                body,
                mode=mode,
                idempotency_key=idempotency_key,
                expected_version=expected_version,
            ),
            timeout,
        )

    def revert(
        self,
        pull_request_id: str,
        actor: str,
        reason: str = "",
        *,
        mode: Mode | None = None,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        timeout: float | None = None,
    ) -> R:
        """Revert a merged pull request; by default returns once ACCEPTED."""
        body = commands_pb2.RevertPullRequest(
            pull_request_id=pull_request_id, actor=actor, reason=reason
        )
        return self._send(
            requests.command(
                *requests.REVERT,
                body,
                mode=mode,
                idempotency_key=idempotency_key,
                expected_version=expected_version,
            ),
            timeout,
        )
