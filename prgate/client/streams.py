"""Resumable server streams, decided once for both clients.

A client opens a :class:`~prgate.client.requests.Watch` with the time :class:`Resume` leaves,
passes on the items ``Resume.fresh`` accepts, and after an RPC error asks ``Resume.failed``
how long to wait before opening it again (or gets the error raised). Which items are fresh is
the watch's own filter: :class:`NewStates` for a command, :class:`NewerVersions` for a pull
request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from prgate.client.errors import PrgateError, error_for, error_from_result, error_from_rpc
from prgate.client.requests import RECEIPT, TERMINAL, Watch
from prgate.client.retry import Attempts, remaining
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import pull_request_pb2, query_service_pb2


class NewStates:
    """Fresh ``WatchCommandResponse`` items: each command state once."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def __call__(self, item: Any) -> bool:
        if item.receipt.state in self.seen:
            return False
        self.seen.add(item.receipt.state)
        return True


class NewerVersions:
    """Fresh ``WatchPullRequestResponse`` items: each a higher version than the last."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self, item: Any) -> bool:
        if item.pull_request.version <= self.last:
            return False
        self.last = item.pull_request.version
        return True


def command_states(command_id: str, timeout: float | None, *, rewatch: bool = False) -> Watch:
    """The watch of a command's receipts: ACCEPTED, then one terminal state."""
    request = svc.WatchCommandRequest(command_id=command_id)
    return Watch("WatchCommand", request, NewStates(), RECEIPT, timeout, rewatch)


def versions(pull_request_id: str, timeout: float | None) -> Watch:
    """The watch of a pull request's snapshots: the current one, then each new version."""
    request = query_service_pb2.WatchPullRequestRequest(pull_request_id=pull_request_id)
    return Watch("WatchPullRequest", request, NewerVersions(), _snapshot, timeout)


def _snapshot(item: Any) -> pull_request_pb2.PullRequest:
    pull_request: pull_request_pb2.PullRequest = item.pull_request
    return pull_request


class Resume:
    """The state of one watch across its reopenings: its deadline and its retries.

    The deadline starts when the Resume is made (when the caller starts iterating).
    """

    def __init__(
        self, watch: Watch, attempts: Attempts, on_item: Callable[[Any], None] | None = None
    ) -> None:
        """``on_item`` sees every item the stream sends (the session takes its token)."""
        self.watch = watch
        self.attempts = attempts
        self._on_item = on_item
        self.deadline = None if watch.timeout is None else time.monotonic() + watch.timeout

    def time_left(self) -> float | None:
        """Seconds for the stream about to be opened (None: no limit); raises
        DeadlineExceeded once the watch's ``timeout`` has passed."""
        return remaining(self.deadline)

    def fresh(self, item: Any) -> bool:
        """Whether to pass ``item`` on; a fresh item is progress, so retries start over."""
        if self._on_item is not None:
            self._on_item(item)
        if not self.watch.fresh(item):
            return False
        self.attempts.restart()
        return True

    def failed(self, exc: grpc.RpcError) -> float:
        """After ``exc`` ended the stream: seconds to wait before reopening it. Raises the
        :class:`PrgateError` of ``exc`` when it is not reopened."""
        error = error_from_rpc(exc)
        if self.watch.rewatch and self._rewatch(error):
            self.attempts.restart()  # a new watch: its own retries, no retry event
            return 0.0
        return self.attempts.retry(error, exc)

    def _rewatch(self, error: PrgateError) -> bool:
        in_time = self.deadline is None or time.monotonic() < self.deadline
        return error.code == grpc.StatusCode.DEADLINE_EXCEEDED and in_time


def finished(receipt: svc.CommandReceipt, *, raise_on_rejection: bool) -> svc.CommandReceipt | None:
    """A terminal ``receipt`` (None while it is not); a REJECTED or FAILED one raises the
    error of its result when ``raise_on_rejection``."""
    if receipt.state not in TERMINAL:
        return None
    error = error_from_result(receipt.result)
    if error is not None and raise_on_rejection:
        raise error
    return receipt


def watch_ended() -> PrgateError:
    """The error of a watch that ended before it reached what its caller waited for."""
    return error_for(grpc.StatusCode.UNKNOWN, "the watch ended before a terminal state")
