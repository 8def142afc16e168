"""Client and AsyncClient against a scripted fake gateway on a real loopback channel:
retries with one idempotency key, no retry of answers, streams that resume, paging."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from google.rpc import code_pb2
from helpers.kafka import free_port

from gateway import errors as server_errors
from prgate.client import (
    AsyncClient,
    Client,
    FailedPrecondition,
    InvalidArgument,
    RetryEvent,
    RetryPolicy,
    Unavailable,
)
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import outcome_pb2, pull_request_pb2, query_service_pb2, results_pb2
from tests.unit.client.fake_gateway import FakeGateway

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)
SUCCEEDED = outcome_pb2.COMMAND_STATE_SUCCEEDED
ACCEPTED = outcome_pb2.COMMAND_STATE_ACCEPTED


def unavailable(delay: float | None = None) -> server_errors.GatewayError:
    details = [server_errors.error_info("KAFKA_UNAVAILABLE")]
    if delay is not None:
        details.append(server_errors.retry_after(delay))  # type: ignore[arg-type]
    return server_errors.error(code_pb2.UNAVAILABLE, "Kafka did not acknowledge", *details)


def approved(state: int = SUCCEEDED) -> svc.ApprovePullRequestResponse:
    return svc.ApprovePullRequestResponse(
        receipt=svc.CommandReceipt(command_id="c1", pull_request_id="pr-1", state=state)  # type: ignore[arg-type]
    )


def receipt_item(state: int) -> svc.WatchCommandResponse:
    result = results_pb2.CommandResult(command_id="c1", pull_request_id="pr-1", state=state)  # type: ignore[arg-type]
    return svc.WatchCommandResponse(
        receipt=svc.CommandReceipt(
            command_id="c1", pull_request_id="pr-1", state=state, result=result
        )  # type: ignore[arg-type]
    )


def snapshot(version: int) -> query_service_pb2.WatchPullRequestResponse:
    return query_service_pb2.WatchPullRequestResponse(
        pull_request=pull_request_pb2.PullRequest(pull_request_id="pr-1", version=version)
    )


def test_unavailable_is_retried_with_the_same_idempotency_key(fake: FakeGateway) -> None:
    fake.script("ApprovePullRequest", unavailable(0.05), unavailable(), approved())
    events: list[RetryEvent] = []
    with Client(fake.target, retry=FAST, on_retry=events.append) as client:
        started = time.monotonic()
        receipt = client.approve("pr-1", "bob")
        elapsed = time.monotonic() - started
    assert receipt.state == SUCCEEDED and receipt.command_id == "c1"
    calls = fake.calls_of("ApprovePullRequest")
    keys = {c.request.options.idempotency_key for c in calls}
    assert len(calls) == 3 and len(keys) == 1 and len(next(iter(keys))) == 32
    assert [(e.method, e.attempt) for e in events] == [
        ("ApprovePullRequest", 1),
        ("ApprovePullRequest", 2),
    ]
    assert events[0].delay == pytest.approx(0.05)  # the server's RetryInfo
    assert 0.005 <= events[1].delay <= 0.02  # the client's own backoff (0.01 * 2, jittered)
    assert elapsed >= 0.05


def test_each_logical_call_gets_its_own_key_and_a_callers_key_is_kept(fake: FakeGateway) -> None:
    fake.script("ApprovePullRequest", approved(), approved(), approved())
    with Client(fake.target, retry=FAST) as client:
        client.approve("pr-1", "bob")
        client.approve("pr-1", "bob")
        client.approve("pr-1", "bob", idempotency_key="mine-1", mode="accepted", expected_version=3)
    first, second, third = (c.request.options for c in fake.calls_of("ApprovePullRequest"))
    assert first.idempotency_key != second.idempotency_key
    assert third.idempotency_key == "mine-1"
    assert third.response_mode == svc.RESPONSE_MODE_ACCEPTED
    assert third.HasField("expected_version") and third.expected_version == 3
    assert not first.HasField("expected_version")
    assert first.response_mode == svc.RESPONSE_MODE_UNSPECIFIED


def test_answers_other_than_unavailable_are_never_retried(fake: FakeGateway) -> None:
    refused = server_errors.from_violations(
        [
            outcome_pb2.Violation(
                kind=outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION,
                reason="PULL_REQUEST_NOT_OPEN",
                description="the pull request is MERGED, not OPEN",
            )
        ],
        command_id="c1",
        pull_request_id="pr-1",
    )
    late = server_errors.error(code_pb2.DEADLINE_EXCEEDED, "late", server_errors.error_info("X"))
    fake.script("ApprovePullRequest", refused, late)
    with Client(fake.target, retry=FAST) as client:
        with pytest.raises(FailedPrecondition) as caught:
            client.approve("pr-1", "bob")
        with pytest.raises(Exception) as second:
            client.approve("pr-1", "bob")
    assert len(fake.calls_of("ApprovePullRequest")) == 2
    assert caught.value.precondition_violations[0].type == "PULL_REQUEST_NOT_OPEN"
    assert caught.value.command_id == "c1"
    sent_key = fake.calls_of("ApprovePullRequest")[0].request.options.idempotency_key
    assert caught.value.idempotency_key == sent_key
    assert second.value.code == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]


def test_retries_are_bounded(fake: FakeGateway) -> None:
    fake.script("ApprovePullRequest", *[unavailable() for _ in range(4)])
    with Client(fake.target, retry=FAST) as client, pytest.raises(Unavailable) as caught:
        client.approve("pr-1", "bob")
    assert len(fake.calls_of("ApprovePullRequest")) == FAST.max_attempts
    assert caught.value.reason == "KAFKA_UNAVAILABLE"


def test_a_lost_connection_is_retried_until_the_gateway_is_back() -> None:
    port = free_port()
    fake = FakeGateway(port=port)
    fake.script("ApprovePullRequest", approved())
    events: list[RetryEvent] = []

    def start_server_on_first_retry(event: RetryEvent) -> None:
        events.append(event)
        if len(events) == 1:
            fake.start()

    policy = RetryPolicy(max_attempts=8, initial_backoff=0.05, max_backoff=0.5)
    options = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 200)]
    try:
        with Client(
            f"127.0.0.1:{port}", retry=policy, on_retry=start_server_on_first_retry, options=options
        ) as client:
            receipt = client.approve("pr-1", "bob", timeout=5)
    finally:
        fake.stop()
    assert receipt.state == SUCCEEDED
    assert events and all(e.error.code == grpc.StatusCode.UNAVAILABLE for e in events)
    assert len(fake.calls_of("ApprovePullRequest")) == 1


def test_bearer_token_travels_as_authorization_metadata(fake: FakeGateway) -> None:
    fake.script("GetPullRequest", query_service_pb2.GetPullRequestResponse())
    with Client(fake.target, token="s3cret") as client:
        client.get("pr-1")
    assert fake.calls_of("GetPullRequest")[0].metadata["authorization"] == "Bearer s3cret"


def test_watch_command_resumes_after_unavailable_without_repeating_states(
    fake: FakeGateway,
) -> None:
    fake.script(
        "WatchCommand",
        [receipt_item(ACCEPTED), unavailable()],
        [receipt_item(ACCEPTED), receipt_item(SUCCEEDED)],
    )
    with Client(fake.target, retry=FAST) as client:
        states = [r.state for r in client.watch_command("c1", timeout=5)]
    assert states == [ACCEPTED, SUCCEEDED]
    assert len(fake.calls_of("WatchCommand")) == 2


def test_wait_command_raises_the_rejection_and_returns_success(fake: FakeGateway) -> None:
    rejected = receipt_item(outcome_pb2.COMMAND_STATE_REJECTED)
    rejected.receipt.result.violations.add(
        kind=outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT,
        reason="TITLE_REQUIRED",
        field="command.title",
        description="title is required",
    )
    fake.script("WatchCommand", [receipt_item(ACCEPTED), rejected], [receipt_item(SUCCEEDED)])
    with Client(fake.target, retry=FAST) as client:
        with pytest.raises(InvalidArgument) as caught:
            client.wait_command("c1", timeout=5)
        assert client.wait_command("c1", timeout=5).state == SUCCEEDED
    assert caught.value.field_violations[0].field == "command.title"


def test_wait_command_watches_again_after_the_gateways_own_bound(fake: FakeGateway) -> None:
    not_yet = server_errors.error(code_pb2.DEADLINE_EXCEEDED, "not yet; watch it again")
    fake.script(
        "WatchCommand",
        [receipt_item(ACCEPTED), not_yet],
        [receipt_item(ACCEPTED), receipt_item(SUCCEEDED)],
    )
    with Client(fake.target, retry=FAST) as client:
        assert client.wait_command("c1", timeout=5).state == SUCCEEDED
    assert len(fake.calls_of("WatchCommand")) == 2


def test_watch_pull_request_skips_versions_seen_before_a_reconnect(fake: FakeGateway) -> None:
    fake.script(
        "WatchPullRequest",
        [snapshot(1), snapshot(2), unavailable()],
        [snapshot(2), snapshot(3)],
    )
    with Client(fake.target, retry=FAST) as client:
        versions = [p.version for p in client.watch_pull_request("pr-1", timeout=5)]
    assert versions == [1, 2, 3]


def test_list_iterates_every_page(fake: FakeGateway) -> None:
    def page(ids: list[str], token: str) -> query_service_pb2.ListPullRequestsResponse:
        return query_service_pb2.ListPullRequestsResponse(
            pull_requests=[pull_request_pb2.PullRequest(pull_request_id=i) for i in ids],
            next_page_token=token,
        )

    fake.script("ListPullRequests", page(["a", "b"], "t1"), page(["c"], ""))
    with Client(fake.target) as client:
        ids = [p.pull_request_id for p in client.list("acme/widgets", "open", page_size=2)]
    assert ids == ["a", "b", "c"]
    first, second = (c.request for c in fake.calls_of("ListPullRequests"))
    assert (first.repository, first.status, first.page_size, first.page_token) == (
        "acme/widgets",
        pull_request_pb2.PULL_REQUEST_STATUS_OPEN,
        2,
        "",
    )
    assert second.page_token == "t1"


def test_bad_enum_names_fail_before_any_call(fake: FakeGateway) -> None:
    with Client(fake.target) as client:
        with pytest.raises(ValueError, match="conclusion must be one of success"):
            client.record_check("pr-1", "ci", "green")
        with pytest.raises(ValueError, match="mode must be one of"):
            client.approve("pr-1", "bob", mode="eventually")  # type: ignore[arg-type]
    assert fake.calls == []


def test_async_client_retries_with_one_key_and_streams(fake: FakeGateway) -> None:
    fake.script("ApprovePullRequest", unavailable(0.01), approved())
    fake.script(
        "WatchCommand",
        [receipt_item(ACCEPTED), unavailable()],
        [receipt_item(ACCEPTED), receipt_item(SUCCEEDED)],
    )
    fake.script(
        "ListPullRequests",
        query_service_pb2.ListPullRequestsResponse(
            pull_requests=[pull_request_pb2.PullRequest(pull_request_id="x")]
        ),
    )
    events: list[RetryEvent] = []

    async def scenario() -> tuple[int, list[int], list[str]]:
        async with AsyncClient(fake.target, retry=FAST, on_retry=events.append) as client:
            receipt = await client.approve("pr-1", "bob")
            states = [r.state async for r in client.watch_command("c1", timeout=5)]
            ids = [p.pull_request_id async for p in client.list()]
            return receipt.state, states, ids

    state, states, ids = asyncio.run(scenario())
    assert state == SUCCEEDED and states == [ACCEPTED, SUCCEEDED] and ids == ["x"]
    keys = {c.request.options.idempotency_key for c in fake.calls_of("ApprovePullRequest")}
    assert len(fake.calls_of("ApprovePullRequest")) == 2 and len(keys) == 1
    assert [e.method for e in events] == ["ApprovePullRequest", "WatchCommand"]


def test_async_client_raises_mapped_errors(fake: FakeGateway) -> None:
    fake.script(
        "ChangePullRequestTitle",
        server_errors.invalid_argument("command.title", "TITLE_REQUIRED", "title is required"),
    )

    async def scenario() -> InvalidArgument:
        async with AsyncClient(fake.target, retry=FAST) as client:
            with pytest.raises(InvalidArgument) as caught:
                await client.change_title("pr-1", "", "ada")
            return caught.value

    error = asyncio.run(scenario())
    assert error.field_violations[0].reason == "TITLE_REQUIRED"
    assert len(fake.calls_of("ChangePullRequestTitle")) == 1
