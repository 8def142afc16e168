"""A pull request's whole life through the gateway, over a real channel, broker and processor."""

from __future__ import annotations

import threading
import time
import uuid

import grpc
import pytest
from grpc_status import rpc_status
from helpers.kafka import free_port

from gateway.errors import details_of
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, outcome_pb2, pull_request_pb2, query_service_pb2
from tests.e2e.stack import GatewayProcess, Stack

COMPLETED = svc.CommandOptions(response_mode=svc.RESPONSE_MODE_COMPLETED)
ACCEPTED = svc.CommandOptions(response_mode=svc.RESPONSE_MODE_ACCEPTED)
SUCCEEDED = outcome_pb2.COMMAND_STATE_SUCCEEDED


def open_command(title: str = "Add a widget") -> commands_pb2.OpenPullRequest:
    return commands_pb2.OpenPullRequest(
        repository="acme/widgets",
        title=title,
        author="ada",
        source_branch=f"feature/{uuid.uuid4().hex[:8]}",
        target_branch="main",
    )


def error_details(exc: grpc.RpcError) -> dict[str, object]:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None, f"no google.rpc details on {exc.code()}: {exc.details()}"
    return dict(details_of(status))


def watch_states(
    g: GatewayProcess, command_id: str, timeout: float = 20.0
) -> list[svc.CommandReceipt]:
    stream = g.commands().WatchCommand(
        svc.WatchCommandRequest(command_id=command_id), timeout=timeout
    )
    return [item.receipt for item in stream]


def test_full_life_of_a_pull_request(gateway: GatewayProcess) -> None:
    commands, queries = gateway.commands(), gateway.queries()
    opened = commands.OpenPullRequest(
        svc.OpenPullRequestRequest(command=open_command()), timeout=20
    )
    receipt = opened.receipt
    assert receipt.state == SUCCEEDED and receipt.result.version == 1
    pr_id = receipt.pull_request_id

    # A watcher of the pull request sees every version from here on.
    seen: list[int] = []
    watch = queries.WatchPullRequest(
        query_service_pb2.WatchPullRequestRequest(pull_request_id=pr_id), timeout=60
    )

    def follow() -> None:
        try:
            for item in watch:
                seen.append(item.pull_request.version)
        except grpc.RpcError:
            pass

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()

    retitled = commands.ChangePullRequestTitle(
        svc.ChangePullRequestTitleRequest(
            command=commands_pb2.ChangePullRequestTitle(
                pull_request_id=pr_id, title="Add a better widget", changed_by="ada"
            )
        ),
        timeout=20,
    )
    assert retitled.receipt.result.version == 2
    approved = commands.ApprovePullRequest(
        svc.ApprovePullRequestRequest(
            command=commands_pb2.ApprovePullRequest(pull_request_id=pr_id, reviewer="bob")
        ),
        timeout=20,
    )
    assert approved.receipt.result.version == 3
    failing = commands.RecordCheckResult(
        svc.RecordCheckResultRequest(
            command=commands_pb2.RecordCheckResult(
                pull_request_id=pr_id,
                check_name="ci",
                conclusion=pull_request_pb2.CHECK_CONCLUSION_FAILURE,
            )
        ),
        timeout=20,
    )
    assert failing.receipt.result.version == 4

    merge = svc.MergePullRequestRequest(
        command=commands_pb2.MergePullRequest(pull_request_id=pr_id, merged_by_user="bob")
    )
    with pytest.raises(grpc.RpcError) as refused:
        commands.MergePullRequest(merge, timeout=20)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error_details(refused.value)
    assert [v.subject for v in details["PreconditionFailure"].violations] == ["ci"]  # type: ignore[attr-defined]

    passing = commands.RecordCheckResult(
        svc.RecordCheckResultRequest(
            command=commands_pb2.RecordCheckResult(
                pull_request_id=pr_id,
                check_name="ci",
                conclusion=pull_request_pb2.CHECK_CONCLUSION_SUCCESS,
            )
        ),
        timeout=20,
    )
    assert passing.receipt.result.version == 5

    accepted = commands.MergePullRequest(merge, timeout=20)
    assert accepted.receipt.state == outcome_pb2.COMMAND_STATE_ACCEPTED
    states = watch_states(gateway, accepted.receipt.command_id)
    assert [r.state for r in states] == [outcome_pb2.COMMAND_STATE_ACCEPTED, SUCCEEDED]
    final = states[-1].result
    assert final.version == 7
    assert [e.WhichOneof("event") for e in final.events] == [
        "pull_request_merged",
        "pull_request_status_changed",
    ]

    got = queries.GetPullRequest(
        query_service_pb2.GetPullRequestRequest(pull_request_id=pr_id), timeout=10
    ).pull_request
    assert got.status == pull_request_pb2.PULL_REQUEST_STATUS_MERGED
    assert got.version == 7 and got.title == "Add a better widget"
    assert got.merge.merged_by_user == "bob"

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (not seen or seen[-1] < 7):
        time.sleep(0.05)
    watch.cancel()
    follower.join(timeout=5)
    assert seen[-1] == 7
    assert seen == sorted(set(seen)), f"versions must arrive in order, once: {seen}"
    assert seen[0] <= 2


def test_accepted_and_completed_modes(gateway: GatewayProcess) -> None:
    commands = gateway.commands()
    accepted = commands.OpenPullRequest(
        svc.OpenPullRequestRequest(command=open_command(), options=ACCEPTED), timeout=20
    )
    assert accepted.receipt.state == outcome_pb2.COMMAND_STATE_ACCEPTED
    assert not accepted.receipt.HasField("result")
    # Read-your-writes: an approve right after the ACCEPTED open is not refused as NOT_FOUND.
    approved = commands.ApprovePullRequest(
        svc.ApprovePullRequestRequest(
            command=commands_pb2.ApprovePullRequest(
                pull_request_id=accepted.receipt.pull_request_id, reviewer="bob"
            ),
            options=COMPLETED,
        ),
        timeout=20,
    )
    assert approved.receipt.state == SUCCEEDED
    assert approved.receipt.result.version == 2


def test_idempotent_retry_returns_the_first_receipt(gateway: GatewayProcess) -> None:
    commands = gateway.commands()
    request = svc.OpenPullRequestRequest(
        command=open_command(), options=svc.CommandOptions(idempotency_key=uuid.uuid4().hex)
    )
    first = commands.OpenPullRequest(request, timeout=20)
    again = commands.OpenPullRequest(request, timeout=20)
    assert again.receipt.command_id == first.receipt.command_id
    assert again.receipt.pull_request_id == first.receipt.pull_request_id
    assert again.receipt.result.version == 1
    other = svc.OpenPullRequestRequest()
    other.CopyFrom(request)
    other.command.title = "another title"
    with pytest.raises(grpc.RpcError) as reused:
        commands.OpenPullRequest(other, timeout=20)
    assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_deadline_exceeded_carries_command_id_that_watch_resolves(stack: Stack) -> None:
    processor = stack.processor()
    g = stack.gateway(free_port())
    processor.stop()  # nobody processes: the result cannot arrive in time
    with pytest.raises(grpc.RpcError) as late:
        g.commands().OpenPullRequest(
            svc.OpenPullRequestRequest(command=open_command()), timeout=1.5
        )
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    info = error_details(late.value)["ErrorInfo"]
    command_id = info.metadata["command_id"]  # type: ignore[attr-defined]
    assert command_id
    stack.processor()
    states = watch_states(g, command_id, timeout=60)
    assert [r.state for r in states] == [outcome_pb2.COMMAND_STATE_ACCEPTED, SUCCEEDED]


def test_resource_exhausted_past_the_waiting_bound(stack: Stack) -> None:
    processor = stack.processor()
    g = stack.gateway(free_port(), PRGATE_MAX_WAITING="2")
    processor.stop()
    codes: list[grpc.StatusCode] = []

    def call() -> None:
        try:
            g.commands().OpenPullRequest(
                svc.OpenPullRequestRequest(command=open_command()), timeout=4
            )
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            codes.append(exc.code())

    waiting = [threading.Thread(target=call) for _ in range(2)]
    for thread in waiting:
        thread.start()
    time.sleep(1.0)  # both are now waiting for results that cannot come
    with pytest.raises(grpc.RpcError) as full:
        g.commands().OpenPullRequest(svc.OpenPullRequestRequest(command=open_command()), timeout=4)
    assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for thread in waiting:
        thread.join(timeout=10)
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 2
    # The flood is over: the gateway takes commands again.
    stack.processor()
    done = g.commands().OpenPullRequest(
        svc.OpenPullRequestRequest(command=open_command()), timeout=30
    )
    assert done.receipt.state == SUCCEEDED


def test_command_accepted_on_one_gateway_is_watched_on_another(stack: Stack) -> None:
    stack.processor()
    first = stack.gateway(free_port(), name="g1")
    second = stack.gateway(free_port(), name="g2")
    accepted = first.commands().OpenPullRequest(
        svc.OpenPullRequestRequest(command=open_command(), options=ACCEPTED), timeout=20
    )
    states = watch_states(second, accepted.receipt.command_id)
    assert states[-1].state == SUCCEEDED
    assert states[-1].pull_request_id == accepted.receipt.pull_request_id
    # A gateway started after the command completed still answers from the lookback.
    third = stack.gateway(free_port(), name="g3")
    late = watch_states(third, accepted.receipt.command_id)
    assert [r.state for r in late] == [outcome_pb2.COMMAND_STATE_ACCEPTED, SUCCEEDED]
