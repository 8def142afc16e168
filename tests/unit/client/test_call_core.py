"""The retry and stream core both clients share (no network): which failures are retried and
with which events, how a stream's retries restart on progress, which items a reopened stream
skips, when a wait watches again, and which receipt ends a wait."""

from __future__ import annotations

import grpc
import pytest

from prgate.client import errors
from prgate.client.base import rpcs_of
from prgate.client.requests import Watch
from prgate.client.retry import Attempts, RetryEvent, RetryPolicy
from prgate.client.streams import NewerVersions, NewStates, Resume, command_states, finished
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import outcome_pb2, pull_request_pb2, query_service_pb2
from tests.unit.client.test_errors import FakeRpcError

POLICY = RetryPolicy(max_attempts=3, initial_backoff=0.1, max_backoff=1.0)
ACCEPTED = outcome_pb2.COMMAND_STATE_ACCEPTED
SUCCEEDED = outcome_pb2.COMMAND_STATE_SUCCEEDED
REJECTED = outcome_pb2.COMMAND_STATE_REJECTED


def failure(code: grpc.StatusCode) -> FakeRpcError:
    return FakeRpcError(code, f"{code.name} happened")


def state(value: int) -> svc.WatchCommandResponse:
    return svc.WatchCommandResponse(receipt=svc.CommandReceipt(command_id="c1", state=value))  # type: ignore[arg-type]


def snapshot(version: int) -> query_service_pb2.WatchPullRequestResponse:
    return query_service_pb2.WatchPullRequestResponse(
        pull_request=pull_request_pb2.PullRequest(pull_request_id="pr-1", version=version)
    )


def resume(watch: Watch, events: list[RetryEvent]) -> Resume:
    return Resume(watch, Attempts(watch.rpc, POLICY, events.append))


def test_attempts_retry_unavailable_with_events_until_the_budget_is_spent() -> None:
    events: list[RetryEvent] = []
    attempts = Attempts("ApprovePullRequest", POLICY, events.append, "key-1")
    delays = [attempts.failed(failure(grpc.StatusCode.UNAVAILABLE)) for _ in range(2)]
    last = failure(grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(errors.Unavailable) as caught:
        attempts.failed(last)
    assert [(e.method, e.attempt, e.delay) for e in events] == [
        ("ApprovePullRequest", 1, delays[0]),
        ("ApprovePullRequest", 2, delays[1]),
    ]
    assert 0.05 <= delays[0] <= 0.1 and 0.1 <= delays[1] <= 0.2  # 0.1 * 2**(n-1), jittered
    assert caught.value.__cause__ is last
    assert caught.value.idempotency_key == "key-1"
    assert all(e.error.idempotency_key == "key-1" for e in events)


def test_attempts_raise_an_answer_at_once_without_an_event() -> None:
    events: list[RetryEvent] = []
    attempts = Attempts("GetPullRequest", POLICY, events.append)
    with pytest.raises(errors.NotFound):
        attempts.failed(failure(grpc.StatusCode.NOT_FOUND))
    assert events == [] and attempts.number == 1


def test_attempts_restart_gives_the_call_a_new_budget() -> None:
    attempts = Attempts("WatchCommand", POLICY)
    attempts.failed(failure(grpc.StatusCode.UNAVAILABLE))
    attempts.failed(failure(grpc.StatusCode.UNAVAILABLE))
    attempts.restart()
    attempts.failed(failure(grpc.StatusCode.UNAVAILABLE))
    assert attempts.number == 2
    attempts.failed(failure(grpc.StatusCode.UNAVAILABLE))
    with pytest.raises(errors.Unavailable):
        attempts.failed(failure(grpc.StatusCode.UNAVAILABLE))


def test_new_states_passes_each_state_once_across_reopenings() -> None:
    fresh = NewStates()
    first_stream = [state(ACCEPTED)]
    second_stream = [state(ACCEPTED), state(SUCCEEDED)]
    passed = [item.receipt.state for item in [*first_stream, *second_stream] if fresh(item)]
    assert passed == [ACCEPTED, SUCCEEDED]


def test_newer_versions_skips_what_was_yielded_and_anything_older() -> None:
    fresh = NewerVersions()
    items = [snapshot(1), snapshot(2), snapshot(2), snapshot(1), snapshot(3)]
    assert [item.pull_request.version for item in items if fresh(item)] == [1, 2, 3]


def test_resume_restarts_the_retries_on_each_fresh_item_only() -> None:
    events: list[RetryEvent] = []
    stream = resume(command_states("c1", None), events)
    assert stream.fresh(state(ACCEPTED))
    stream.failed(failure(grpc.StatusCode.UNAVAILABLE))
    stream.failed(failure(grpc.StatusCode.UNAVAILABLE))
    assert not stream.fresh(state(ACCEPTED))  # seen before the reconnect: no progress
    assert stream.attempts.number == 3
    assert stream.fresh(state(SUCCEEDED))
    assert stream.attempts.number == 1
    assert [e.attempt for e in events] == [1, 2]


def test_resume_watches_again_after_deadline_exceeded_only_when_asked_and_in_time() -> None:
    events: list[RetryEvent] = []
    late = failure(grpc.StatusCode.DEADLINE_EXCEEDED)
    with pytest.raises(errors.DeadlineExceeded) as caught:
        resume(command_states("c1", 30), events).failed(late)
    assert caught.value.__cause__ is late

    again = resume(command_states("c1", 30, rewatch=True), events)
    again.failed(failure(grpc.StatusCode.UNAVAILABLE))
    assert again.failed(late) == 0.0
    assert again.attempts.number == 1  # a new watch: its own retries
    assert [e.error.code for e in events] == [grpc.StatusCode.UNAVAILABLE]  # no event for it

    forever = resume(command_states("c1", None, rewatch=True), events)
    assert forever.failed(late) == 0.0 and forever.time_left() is None

    spent = resume(command_states("c1", 0.0, rewatch=True), events)
    with pytest.raises(errors.DeadlineExceeded):
        spent.failed(late)
    with pytest.raises(errors.DeadlineExceeded, match="timeout passed"):
        spent.time_left()


def test_resume_gives_each_opening_the_time_that_is_left() -> None:
    stream = resume(command_states("c1", 30), [])
    first = stream.time_left()
    second = stream.time_left()
    assert first is not None and second is not None
    assert 0 < second <= first <= 30


def test_finished_returns_a_terminal_receipt_and_raises_a_rejection_when_asked() -> None:
    assert finished(state(ACCEPTED).receipt, raise_on_rejection=True) is None
    done = state(SUCCEEDED).receipt
    assert finished(done, raise_on_rejection=True) is done
    rejected = state(REJECTED).receipt
    rejected.result.state = REJECTED
    rejected.result.violations.add(
        kind=outcome_pb2.VIOLATION_KIND_NOT_FOUND, reason="PULL_REQUEST_NOT_FOUND"
    )
    with pytest.raises(errors.NotFound):
        finished(rejected, raise_on_rejection=True)
    assert finished(rejected, raise_on_rejection=False) is rejected


def test_every_rpc_of_both_services_is_reachable_by_name() -> None:
    channel = grpc.insecure_channel("127.0.0.1:1")  # never connects: no call is made
    try:
        found = rpcs_of(channel)
    finally:
        channel.close()
    services = [
        svc.DESCRIPTOR.services_by_name["PullRequestCommandService"],
        query_service_pb2.DESCRIPTOR.services_by_name["PullRequestQueryService"],
    ]
    expected = {method.name for service in services for method in service.methods}
    assert set(found) == expected
    assert {"WatchCommand", "OpenPullRequest", "GetPullRequest", "WatchPullRequest"} <= expected
