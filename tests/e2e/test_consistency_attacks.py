"""Attacks on consistency tokens against real gateways, a real processor and a real broker.

* Rotating ``PRGATE_PAGE_TOKEN_SECRET``: two gateways of adjacent rotation steps (one issues
  with the old secret and accepts the new one, the other the reverse) read each other's
  consistency and page tokens; before ``PRGATE_PAGE_TOKEN_ACCEPTED_SECRET`` they refused them
  (INVALID_ARGUMENT), and clients dropped the tokens, losing read-your-writes mid-rotation.
* Far-future tokens on every call that takes one (Get, List, Watch, a command), many at once,
  half of them cancelled by their clients and half ending by their deadline, and a watch
  without a deadline: each ends (UNAVAILABLE ``READ_MODEL_BEHIND`` with both versions, or
  CANCELLED), the gateway's count of waiting calls goes back to 0, and it still serves.
"""

from __future__ import annotations

import re
import time
import urllib.request

import grpc
from grpc_status import rpc_status
from helpers.kafka import free_port

from gateway.consistency_tokens import ConsistencyTokens, Position
from gateway.refusals import details_of
from prgate.kafka.settings import KafkaSettings
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, query_service_pb2
from tests.e2e.stack import GatewayProcess, Stack

OLD, NEW = "old-secret-of-the-deployment", "new-secret-of-the-deployment"


def open_pull_request(gateway: GatewayProcess, branch: str) -> svc.CommandReceipt:
    answer = gateway.commands().OpenPullRequest(
        svc.OpenPullRequestRequest(
            command=commands_pb2.OpenPullRequest(
                repository="acme/attacks",
                title="attack",
                author="ada",
                source_branch=branch,
                target_branch="main",
            )
        ),
        timeout=20,
    )
    receipt: svc.CommandReceipt = answer.receipt
    return receipt


def test_gateways_of_adjacent_rotation_steps_read_each_other_s_tokens(stack: Stack) -> None:
    stack.processor()
    step_1 = stack.gateway(
        free_port(), "step-1", PRGATE_PAGE_TOKEN_SECRET=OLD, PRGATE_PAGE_TOKEN_ACCEPTED_SECRET=NEW
    )
    step_2 = stack.gateway(
        free_port(), "step-2", PRGATE_PAGE_TOKEN_SECRET=NEW, PRGATE_PAGE_TOKEN_ACCEPTED_SECRET=OLD
    )
    opened = open_pull_request(step_1, "feature/rotate-1")
    open_pull_request(step_1, "feature/rotate-2")
    pull_request_id = opened.pull_request_id
    # The old secret's token, on the gateway that issues with the new one.
    approved = step_2.commands().ApprovePullRequest(
        svc.ApprovePullRequestRequest(
            command=commands_pb2.ApprovePullRequest(
                pull_request_id=pull_request_id, reviewer="bob"
            ),
            options=svc.CommandOptions(consistency_token=opened.consistency_token),
        ),
        timeout=20,
    )
    assert approved.receipt.result.version == 2
    # The new secret's token, on the gateway that issues with the old one.
    got = step_1.queries().GetPullRequest(
        query_service_pb2.GetPullRequestRequest(
            pull_request_id=pull_request_id,
            consistency_token=approved.receipt.consistency_token,
        ),
        timeout=20,
    )
    assert got.pull_request.version == 2
    assert [r.reviewer for r in got.pull_request.reviews] == ["bob"]
    # Page tokens: a listing started on one gateway goes on on the other, both ways.
    for first, second in ((step_1, step_2), (step_2, step_1)):
        page = first.queries().ListPullRequests(
            query_service_pb2.ListPullRequestsRequest(repository="acme/attacks", page_size=1),
            timeout=20,
        )
        assert page.next_page_token
        rest = second.queries().ListPullRequests(
            query_service_pb2.ListPullRequestsRequest(
                repository="acme/attacks", page_size=1, page_token=page.next_page_token
            ),
            timeout=20,
        )
        assert len(rest.pull_requests) == 1
        assert rest.pull_requests[0].pull_request_id != page.pull_requests[0].pull_request_id


def waiters(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^prgate_gateway_read_model_version_waiters (\S+)$", text, re.M)
    assert found, "no prgate_gateway_read_model_version_waiters in /metrics"
    return float(found.group(1))


def behind(error: grpc.RpcError, pull_request_id: str, wanted: int) -> None:
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = details_of(status)["ErrorInfo"]
    assert info.reason == "READ_MODEL_BEHIND"  # type: ignore[attr-defined]
    assert dict(info.metadata) == {  # type: ignore[attr-defined]
        "pull_request_id": pull_request_id,
        "wanted_version": str(wanted),
        "reached_version": "1",
    }


def test_far_future_tokens_many_at_once_end_and_leave_no_waiter(
    stack: Stack, kafka_settings: KafkaSettings
) -> None:
    stack.processor()
    metrics = free_port()
    gateway = stack.gateway(
        free_port(),
        "far",
        PRGATE_METRICS_LISTEN=f"127.0.0.1:{metrics}",
        PRGATE_CONSISTENCY_WAIT_S="1",
    )
    pull_request_id = open_pull_request(gateway, "feature/far").pull_request_id
    # Minted with the deployment's key, as anyone who knows the topic names can without a
    # secret: only "never reached" is wrong with it.
    tokens = ConsistencyTokens.for_deployment("", kafka_settings.topics.pull_requests)
    wanted = 2**64 - 1
    ahead = tokens.issue(Position(pull_request_id, wanted))
    queries, commands = gateway.queries(), gateway.commands()
    get = query_service_pb2.GetPullRequestRequest(
        pull_request_id=pull_request_id, consistency_token=ahead
    )
    listed = query_service_pb2.ListPullRequestsRequest(consistency_token=ahead)
    approve = svc.ApprovePullRequestRequest(
        command=commands_pb2.ApprovePullRequest(pull_request_id=pull_request_id, reviewer="bob"),
        options=svc.CommandOptions(consistency_token=ahead),
    )
    watch = query_service_pb2.WatchPullRequestRequest(
        pull_request_id=pull_request_id, consistency_token=ahead
    )
    calls: list[grpc.Future] = []
    for _ in range(40):
        calls.append(queries.GetPullRequest.future(get, timeout=600))
        calls.append(queries.ListPullRequests.future(listed, timeout=600))
        calls.append(commands.ApprovePullRequest.future(approve, timeout=600))
    watches = [queries.WatchPullRequest(watch, timeout=600) for _ in range(40)]
    # Every call is waiting (a deadline of 600 s: only cancelling ends them now).
    deadline = time.monotonic() + 60
    while waiters(metrics) < 160 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert waiters(metrics) == 160
    for call in [*calls, *watches]:
        call.cancel()
    deadline = time.monotonic() + 60
    while waiters(metrics) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert waiters(metrics) == 0

    # Deadlines: each call ends UNAVAILABLE with both versions, before its deadline.
    futures = [queries.GetPullRequest.future(get, timeout=3) for _ in range(20)]
    futures += [commands.ApprovePullRequest.future(approve, timeout=3) for _ in range(20)]
    for future in futures:
        error = future.exception()
        assert isinstance(error, grpc.RpcError)
        behind(error, pull_request_id, wanted)
    # A watch without a deadline waits PRGATE_CONSISTENCY_WAIT_S, then ends the same way.
    try:
        next(iter(queries.WatchPullRequest(watch)))
    except grpc.RpcError as error:
        behind(error, pull_request_id, wanted)
    else:
        raise AssertionError("a watch with a never-reached token yielded")
    assert waiters(metrics) == 0
    # Nothing was produced, and the gateway still answers.
    current = queries.GetPullRequest(
        query_service_pb2.GetPullRequestRequest(pull_request_id=pull_request_id), timeout=20
    )
    assert current.pull_request.version == 1
