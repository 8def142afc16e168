"""AsyncClient's drivers against the scripted fake gateway: the same retry and stream core as
Client's (a reopened watch skips what it yielded, a wait watches again after the gateway's
own bound and raises a rejection), queries, and the ``options=`` keyword."""

from __future__ import annotations

import asyncio

import pytest
from google.rpc import code_pb2

from gateway import errors as server_errors
from prgate.client import AsyncClient, CallOptions, NotFound, RetryEvent
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import outcome_pb2, pull_request_pb2, query_service_pb2
from tests.unit.client.fake_gateway import FakeGateway
from tests.unit.client.test_client_calls import (
    ACCEPTED,
    FAST,
    SUCCEEDED,
    approved,
    receipt_item,
    snapshot,
    unavailable,
)


def test_async_watch_pull_request_skips_versions_seen_before_a_reconnect(
    fake: FakeGateway,
) -> None:
    fake.script(
        "WatchPullRequest",
        [snapshot(1), snapshot(2), unavailable()],
        [snapshot(1), snapshot(2), snapshot(3)],
    )
    events: list[RetryEvent] = []

    async def scenario() -> list[int]:
        async with AsyncClient(fake.target, retry=FAST, on_retry=events.append) as client:
            return [p.version async for p in client.watch_pull_request("pr-1", timeout=5)]

    assert asyncio.run(scenario()) == [1, 2, 3]
    assert [(e.method, e.attempt) for e in events] == [("WatchPullRequest", 1)]
    assert len(fake.calls_of("WatchPullRequest")) == 2


def test_async_wait_command_watches_again_and_raises_a_rejection(fake: FakeGateway) -> None:
    not_yet = server_errors.error(code_pb2.DEADLINE_EXCEEDED, "not yet; watch it again")
    rejected = receipt_item(outcome_pb2.COMMAND_STATE_REJECTED)
    rejected.receipt.result.violations.add(
        kind=outcome_pb2.VIOLATION_KIND_NOT_FOUND, reason="PULL_REQUEST_NOT_FOUND"
    )
    fake.script(
        "WatchCommand",
        [receipt_item(ACCEPTED), not_yet],
        [receipt_item(ACCEPTED), receipt_item(SUCCEEDED)],
        [rejected],
        [rejected],
    )
    events: list[RetryEvent] = []

    async def scenario() -> tuple[int, NotFound, int]:
        async with AsyncClient(fake.target, retry=FAST, on_retry=events.append) as client:
            done = await client.wait_command("c1", timeout=5)
            with pytest.raises(NotFound) as caught:
                await client.wait_command("c1", timeout=5)
            kept = await client.wait_command("c1", timeout=5, raise_on_rejection=False)
            return done.state, caught.value, kept.state

    state, error, kept = asyncio.run(scenario())
    assert state == SUCCEEDED and kept == outcome_pb2.COMMAND_STATE_REJECTED
    assert error.reason == "PULL_REQUEST_NOT_FOUND" and error.command_id == "c1"
    assert len(fake.calls_of("WatchCommand")) == 4
    assert events == []  # watching again after the gateway's bound is no retry


def test_async_queries_and_options(fake: FakeGateway) -> None:
    fake.script(
        "GetPullRequest",
        unavailable(),
        query_service_pb2.GetPullRequestResponse(
            pull_request=pull_request_pb2.PullRequest(pull_request_id="pr-1", version=7)
        ),
        server_errors.error(code_pb2.NOT_FOUND, "no such pull request"),
    )
    fake.script(
        "ListPullRequests", query_service_pb2.ListPullRequestsResponse(next_page_token="t2")
    )
    fake.script("MergePullRequest", approved(ACCEPTED))

    async def scenario() -> tuple[int, str, int]:
        async with AsyncClient(fake.target, retry=FAST) as client:
            found = await client.get("pr-1")
            with pytest.raises(NotFound):
                await client.get("pr-2")
            page = await client.list_page("acme/widgets", "merged", 10, "t1")
            merged = await client.merge(
                "pr-1", "bob", options=CallOptions(idempotency_key="m1", mode="accepted")
            )
            return found.version, page.next_page_token, merged.state

    assert asyncio.run(scenario()) == (7, "t2", ACCEPTED)
    assert len(fake.calls_of("GetPullRequest")) == 3
    listed = fake.calls_of("ListPullRequests")[0].request
    assert (listed.page_token, listed.status) == ("t1", pull_request_pb2.PULL_REQUEST_STATUS_MERGED)
    sent = fake.calls_of("MergePullRequest")[0].request.options
    assert (sent.idempotency_key, sent.response_mode) == ("m1", svc.RESPONSE_MODE_ACCEPTED)
