"""Idempotency of PullRequestCommandService, through grpcio-testing: retries with the same key
are answered without producing again (also when the first use went through another gateway);
a key reused for a different command is ALREADY_EXISTS.
"""

from __future__ import annotations

import grpc

from gateway.idempotency import command_id_for_key, open_ids_for_key
from prgate.kafka import command_ids
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, outcome_pb2
from tests.unit.gateway.conftest import Harness, open_pr, open_request


def test_idempotent_retry_returns_first_result_and_produces_nothing(harness: Harness) -> None:
    first = harness.call("OpenPullRequest", open_request(idempotency_key="k-1"))
    again = harness.call("OpenPullRequest", open_request(idempotency_key="k-1"))
    assert first.code == again.code == grpc.StatusCode.OK
    assert again.response.receipt.command_id == first.response.receipt.command_id
    assert again.response.receipt.pull_request_id == first.response.receipt.pull_request_id
    assert again.response.receipt.result == first.response.receipt.result
    assert len(harness.sender.sent) == 1


def test_idempotency_key_from_metadata(harness: Harness) -> None:
    meta = (("idempotency-key", "meta-key"),)
    first = harness.call("OpenPullRequest", open_request(), metadata=meta)
    again = harness.call("OpenPullRequest", open_request(), metadata=meta)
    assert again.response.receipt.command_id == first.response.receipt.command_id
    assert len(harness.sender.sent) == 1


def test_same_key_different_command_is_already_exists(harness: Harness) -> None:
    assert harness.call("OpenPullRequest", open_request(idempotency_key="k-2")).code == (
        grpc.StatusCode.OK
    )
    other = open_request(idempotency_key="k-2")
    other.command.title = "Something else"
    outcome = harness.call("OpenPullRequest", other)
    assert outcome.code == grpc.StatusCode.ALREADY_EXISTS
    assert outcome.details["ErrorInfo"].reason == "IDEMPOTENCY_KEY_REUSED"
    assert len(harness.sender.sent) == 1


def test_kafka_unreachable_is_unavailable_and_a_retry_can_succeed(harness: Harness) -> None:
    harness.sender.unavailable = True
    outcome = harness.call("OpenPullRequest", open_request(idempotency_key="k-3"))
    assert outcome.code == grpc.StatusCode.UNAVAILABLE
    assert "RetryInfo" in outcome.details
    harness.sender.unavailable = False
    retry = harness.call("OpenPullRequest", open_request(idempotency_key="k-3"))
    assert retry.code == grpc.StatusCode.OK
    assert len(harness.sender.sent) == 1


def test_retry_of_a_finished_command_gets_its_result_not_a_dry_run(harness: Harness) -> None:
    """Another gateway merged with key K; the retry here must not be refused as NOT_OPEN."""
    pull_request_id = open_pr(harness)
    approve = svc.ApprovePullRequestRequest(
        command=commands_pb2.ApprovePullRequest(pull_request_id=pull_request_id, reviewer="bob")
    )
    assert harness.call("ApprovePullRequest", approve).code == grpc.StatusCode.OK
    merge = svc.MergePullRequestRequest(
        command=commands_pb2.MergePullRequest(
            pull_request_id=pull_request_id, merged_by_user="bob"
        ),
        options=svc.CommandOptions(
            idempotency_key="merge-once", response_mode=svc.RESPONSE_MODE_COMPLETED
        ),
    )
    # The merge happened through "another gateway": same command id, result on the topic.
    envelope = commands_pb2.CommandEnvelope(
        command_id=command_id_for_key("", "merge-once", pull_request_id),
        pull_request_id=pull_request_id,
    )
    envelope.merge_pull_request.CopyFrom(merge.command)
    harness.loop.call(lambda: harness.results.publish(harness.processor.process(envelope)))
    sent_before = len(harness.sender.sent)
    outcome = harness.call("MergePullRequest", merge)
    assert outcome.code == grpc.StatusCode.OK, outcome.message
    assert outcome.response.receipt.state == outcome_pb2.COMMAND_STATE_SUCCEEDED
    assert outcome.response.receipt.command_id == envelope.command_id
    assert len(harness.sender.sent) == sent_before


def test_key_reused_for_another_command_elsewhere_is_already_exists(harness: Harness) -> None:
    """The first use of the key went through another gateway: known only by its result."""
    first = open_pr(harness)
    other = commands_pb2.CommandEnvelope(
        command_id=command_id_for_key("", "shared-key", first), pull_request_id=first
    )
    other.approve_pull_request.pull_request_id = first
    other.approve_pull_request.reviewer = "bob"
    harness.loop.call(lambda: harness.results.publish(harness.processor.process(other)))
    sent_before = len(harness.sender.sent)
    outcome = harness.call("OpenPullRequest", open_request(idempotency_key="shared-key"))
    assert outcome.code == grpc.StatusCode.ALREADY_EXISTS
    assert outcome.details["ErrorInfo"].reason == "IDEMPOTENCY_KEY_REUSED"
    assert len(harness.sender.sent) == sent_before


def test_key_reused_for_another_pull_request_is_already_exists(harness: Harness) -> None:
    """The same key on two pull requests makes two command ids (one base): refused, like any
    reuse for a different command, by the gateway that saw the first."""
    first, second = open_pr(harness), open_pr(harness)
    options = svc.CommandOptions(idempotency_key="approve-once")

    def approve(pull_request_id: str) -> svc.ApprovePullRequestRequest:
        return svc.ApprovePullRequestRequest(
            command=commands_pb2.ApprovePullRequest(
                pull_request_id=pull_request_id, reviewer="bob"
            ),
            options=options,
        )

    assert harness.call("ApprovePullRequest", approve(first)).code == grpc.StatusCode.OK
    sent_before = len(harness.sender.sent)
    outcome = harness.call("ApprovePullRequest", approve(second))
    assert outcome.code == grpc.StatusCode.ALREADY_EXISTS
    assert outcome.details["ErrorInfo"].reason == "IDEMPOTENCY_KEY_REUSED"
    assert len(harness.sender.sent) == sent_before


def test_key_ids_are_bound_to_their_pull_request() -> None:
    """What the processor checks: a key's id names the pull request it was issued for."""
    a, b = command_id_for_key("ada", "k", "pr-a"), command_id_for_key("ada", "k", "pr-b")
    assert a != b and command_ids.base_of(a) == command_ids.base_of(b)
    assert command_ids.binds(a, "pr-a") and not command_ids.binds(a, "pr-b")
    opened, pull_request_id = open_ids_for_key("ada", "k")
    assert pull_request_id == f"pr-{command_ids.base_of(opened)}"
    assert command_ids.binds(opened, pull_request_id)
