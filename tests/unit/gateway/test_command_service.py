"""Status codes and details of PullRequestCommandService, through grpcio-testing.

Every row of docs/contract.md's error table is covered here with a fake Kafka side; the end-to-end
tests repeat the important ones against the real broker and processor.
"""

from __future__ import annotations

import threading
import time

import grpc
from helpers.ids import bound_id

from prgate.kafka import command_ids
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, outcome_pb2, pull_request_pb2
from tests.unit.gateway.conftest import Harness, Outcome, make_harness, open_pr, open_request

COMPLETED = svc.CommandOptions(response_mode=svc.RESPONSE_MODE_COMPLETED)
ACCEPTED = svc.CommandOptions(response_mode=svc.RESPONSE_MODE_ACCEPTED)


def test_open_completes_with_result_and_assigned_id(harness: Harness) -> None:
    outcome = harness.call("OpenPullRequest", open_request())
    assert outcome.code == grpc.StatusCode.OK
    receipt = outcome.response.receipt
    assert receipt.state == outcome_pb2.COMMAND_STATE_SUCCEEDED
    base = command_ids.base_of(receipt.command_id)
    assert base is not None and receipt.pull_request_id == f"pr-{base}"
    assert command_ids.binds(receipt.command_id, receipt.pull_request_id)
    assert receipt.result.version == 1
    assert [e.WhichOneof("event") for e in receipt.result.events] == ["pull_request_opened"]
    (sent,) = harness.sender.sent
    assert sent.command_id == receipt.command_id
    assert sent.pull_request_id == receipt.pull_request_id
    assert sent.WhichOneof("command") == "open_pull_request"
    # read-your-writes: the result already updated the read model
    assert harness.view.get(receipt.pull_request_id) is not None


def test_malformed_fields_are_invalid_argument_with_field_violations(harness: Harness) -> None:
    request = open_request()
    request.command.title = ""
    request.command.repository = "not-a-repo"
    outcome = harness.call("OpenPullRequest", request)
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field: v.reason for v in outcome.details["BadRequest"].field_violations}
    assert fields["command.title"] == "TITLE_REQUIRED"
    assert fields["command.repository"] == "REPOSITORY_INVALID"
    assert harness.sender.sent == [], "a rejected command must not reach Kafka"


def test_unknown_enum_and_response_mode_are_invalid_argument(harness: Harness) -> None:
    pull_request_id = open_pr(harness)
    check = svc.RecordCheckResultRequest(
        command=commands_pb2.RecordCheckResult(
            pull_request_id=pull_request_id, check_name="ci", conclusion=99
        )
    )
    outcome = harness.call("RecordCheckResult", check)
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert outcome.details["BadRequest"].field_violations[0].field == "command.conclusion"
    outcome = harness.call("OpenPullRequest", open_request(response_mode=7))
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert outcome.details["BadRequest"].field_violations[0].field == "options.response_mode"
    assert len(harness.sender.sent) == 1


def test_rule_failing_on_current_state_is_failed_precondition(harness: Harness) -> None:
    pull_request_id = open_pr(harness)
    merge = svc.MergePullRequestRequest(
        command=commands_pb2.MergePullRequest(pull_request_id=pull_request_id, merged_by_user="ada")
    )
    outcome = harness.call("MergePullRequest", merge)
    assert outcome.code == grpc.StatusCode.FAILED_PRECONDITION
    violations = outcome.details["PreconditionFailure"].violations
    assert [v.type for v in violations] == ["NOT_APPROVED"]
    assert outcome.details["ErrorInfo"].metadata["pull_request_id"] == pull_request_id
    assert len(harness.sender.sent) == 1


def test_failing_check_blocks_merge_and_names_the_check(harness: Harness) -> None:
    pull_request_id = open_pr(harness)
    approve = svc.ApprovePullRequestRequest(
        command=commands_pb2.ApprovePullRequest(pull_request_id=pull_request_id, reviewer="bob")
    )
    assert harness.call("ApprovePullRequest", approve).code == grpc.StatusCode.OK
    check = svc.RecordCheckResultRequest(
        command=commands_pb2.RecordCheckResult(
            pull_request_id=pull_request_id,
            check_name="lint",
            conclusion=pull_request_pb2.CHECK_CONCLUSION_FAILURE,
        )
    )
    assert harness.call("RecordCheckResult", check).code == grpc.StatusCode.OK
    merge = svc.MergePullRequestRequest(
        command=commands_pb2.MergePullRequest(
            pull_request_id=pull_request_id, merged_by_user="bob"
        ),
        options=COMPLETED,
    )
    outcome = harness.call("MergePullRequest", merge)
    assert outcome.code == grpc.StatusCode.FAILED_PRECONDITION
    subjects = [v.subject for v in outcome.details["PreconditionFailure"].violations]
    assert subjects == ["lint"]


def test_unknown_pull_request_is_not_found(harness: Harness) -> None:
    approve = svc.ApprovePullRequestRequest(
        command=commands_pb2.ApprovePullRequest(pull_request_id="pr-missing", reviewer="bob")
    )
    outcome = harness.call("ApprovePullRequest", approve)
    assert outcome.code == grpc.StatusCode.NOT_FOUND
    assert outcome.details["ResourceInfo"].resource_name == "pr-missing"
    assert harness.sender.sent == []


def test_expected_version_mismatch_is_aborted(harness: Harness) -> None:
    pull_request_id = open_pr(harness)
    retitle = svc.ChangePullRequestTitleRequest(
        command=commands_pb2.ChangePullRequestTitle(
            pull_request_id=pull_request_id, title="New", changed_by="ada"
        ),
        options=svc.CommandOptions(expected_version=5),
    )
    outcome = harness.call("ChangePullRequestTitle", retitle)
    assert outcome.code == grpc.StatusCode.ABORTED
    assert outcome.details["ErrorInfo"].reason == "VERSION_CONFLICT"
    retitle.options.expected_version = 1
    assert harness.call("ChangePullRequestTitle", retitle).code == grpc.StatusCode.OK


def test_too_many_waiting_is_resource_exhausted() -> None:
    h = make_harness(max_waiting=0)
    try:
        outcome = h.call("OpenPullRequest", open_request())
        assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert outcome.details["ErrorInfo"].reason == "TOO_MANY_WAITING"
        assert outcome.details["RetryInfo"].retry_delay.seconds == 1
        assert h.sender.sent == []
    finally:
        h.loop.close()


def test_read_model_catching_up_is_unavailable(harness: Harness) -> None:
    harness.view.ready = False
    outcome = harness.call("OpenPullRequest", open_request())
    assert outcome.code == grpc.StatusCode.UNAVAILABLE
    assert outcome.details["ErrorInfo"].reason == "READ_MODEL_CATCHING_UP"


def test_result_not_in_time_is_deadline_exceeded_with_command_id() -> None:
    h = make_harness()
    h.sender.processor = None  # accepted, but nobody answers
    try:
        outcome = h.call("OpenPullRequest", open_request(), timeout=0.5)
        assert outcome.code == grpc.StatusCode.DEADLINE_EXCEEDED
        info = outcome.details["ErrorInfo"]
        assert info.reason == "RESULT_NOT_IN_TIME"
        (sent,) = h.sender.sent
        assert info.metadata["command_id"] == sent.command_id
        # WatchCommand then follows it to completion once the processor answers.
        rpc = h.open_stream("WatchCommand", svc.WatchCommandRequest(command_id=sent.command_id))
        first = rpc.take_response()
        assert first.receipt.state == outcome_pb2.COMMAND_STATE_ACCEPTED
        h.loop.call(lambda: h.results.publish(h.processor.process(sent)))
        second = rpc.take_response()
        assert second.receipt.state == outcome_pb2.COMMAND_STATE_SUCCEEDED
        assert h.ended(rpc).code == grpc.StatusCode.OK
    finally:
        h.loop.close()


def test_processor_rejection_reaches_client_as_same_code(harness: Harness) -> None:
    pull_request_id = open_pr(harness)
    # The gateway's view says approved; the processor's state does not (state changed).
    approved = harness.view.get(pull_request_id)
    assert approved is not None
    stale = pull_request_pb2.PullRequest()
    stale.CopyFrom(approved)
    stale.reviews.add(reviewer="bob")
    harness.view.put(stale)
    merge = svc.MergePullRequestRequest(
        command=commands_pb2.MergePullRequest(
            pull_request_id=pull_request_id, merged_by_user="bob"
        ),
        options=COMPLETED,
    )
    outcome = harness.call("MergePullRequest", merge)
    assert outcome.code == grpc.StatusCode.FAILED_PRECONDITION
    assert outcome.details["ErrorInfo"].metadata["command_id"] == harness.sender.sent[-1].command_id
    assert len(harness.sender.sent) == 2


def test_merge_defaults_to_accepted_and_watch_reports_success(harness: Harness) -> None:
    pull_request_id = open_pr(harness)
    approve = svc.ApprovePullRequestRequest(
        command=commands_pb2.ApprovePullRequest(pull_request_id=pull_request_id, reviewer="bob")
    )
    assert harness.call("ApprovePullRequest", approve).code == grpc.StatusCode.OK
    merge = svc.MergePullRequestRequest(
        command=commands_pb2.MergePullRequest(pull_request_id=pull_request_id, merged_by_user="bob")
    )
    outcome = harness.call("MergePullRequest", merge)
    assert outcome.code == grpc.StatusCode.OK
    receipt = outcome.response.receipt
    assert receipt.state == outcome_pb2.COMMAND_STATE_ACCEPTED
    assert not receipt.HasField("result")
    rpc = harness.open_stream(
        "WatchCommand", svc.WatchCommandRequest(command_id=receipt.command_id)
    )
    states = [rpc.take_response().receipt.state, rpc.take_response().receipt.state]
    assert states == [outcome_pb2.COMMAND_STATE_ACCEPTED, outcome_pb2.COMMAND_STATE_SUCCEEDED]
    assert harness.ended(rpc).code == grpc.StatusCode.OK


def test_accepted_open_then_approve_is_not_rejected_as_stale() -> None:
    """Read-your-writes in ACCEPTED mode: the approve waits for the open to complete. The
    open's result is published only once the approve is seen waiting for it (the admission's
    wait counter), so the waiting path is taken however slow the machine is."""
    h = make_harness(pending_wait_s=30.0)
    processor = h.processor
    assert h.commands is not None
    pending = h.commands.admission.pending
    h.sender.processor = None
    try:
        opened = h.call("OpenPullRequest", open_request(response_mode=svc.RESPONSE_MODE_ACCEPTED))
        assert opened.response.receipt.state == outcome_pb2.COMMAND_STATE_ACCEPTED
        (sent,) = h.sender.sent
        h.sender.processor = processor
        approve = svc.ApprovePullRequestRequest(
            command=commands_pb2.ApprovePullRequest(
                pull_request_id=opened.response.receipt.pull_request_id, reviewer="bob"
            )
        )
        outcomes: list[Outcome] = []
        caller = threading.Thread(
            target=lambda: outcomes.append(h.call("ApprovePullRequest", approve, timeout=60))
        )
        caller.start()
        deadline = time.monotonic() + 30
        while h.loop.call(lambda: pending.waits) == 0:
            assert time.monotonic() < deadline, "the approve never waited for the open"
            caller.join(0.01)
        assert not outcomes, "the approve was answered before the open's result arrived"
        # The open's result arrives while the approve is waiting on it.
        h.loop.call(lambda: h.results.publish(processor.process(sent)))
        caller.join(30)
        (outcome,) = outcomes
        assert outcome.code == grpc.StatusCode.OK, outcome.message
        assert outcome.response.receipt.result.version == 2
        assert h.loop.call(lambda: pending.waits) == 1
    finally:
        h.loop.close()


def test_watch_command_rejects_bad_ids_and_reports_unknown_ones(harness: Harness) -> None:
    rpc = harness.open_stream("WatchCommand", svc.WatchCommandRequest(command_id=""))
    assert harness.ended(rpc).code == grpc.StatusCode.INVALID_ARGUMENT
    rpc = harness.open_stream("WatchCommand", svc.WatchCommandRequest(command_id="x" * 500))
    assert harness.ended(rpc).code == grpc.StatusCode.INVALID_ARGUMENT
    rpc = harness.open_stream("WatchCommand", svc.WatchCommandRequest(command_id="nobody-knows"))
    ended = harness.ended(rpc)
    assert ended.code == grpc.StatusCode.NOT_FOUND
    assert ended.details["ErrorInfo"].reason == "UNKNOWN_COMMAND"


def test_watch_command_after_completion_replays_states(harness: Harness) -> None:
    done = harness.call("OpenPullRequest", open_request())
    rpc = harness.open_stream(
        "WatchCommand", svc.WatchCommandRequest(command_id=done.response.receipt.command_id)
    )
    states = [rpc.take_response().receipt.state, rpc.take_response().receipt.state]
    assert states == [outcome_pb2.COMMAND_STATE_ACCEPTED, outcome_pb2.COMMAND_STATE_SUCCEEDED]
    assert harness.ended(rpc).code == grpc.StatusCode.OK


def test_announced_version_ahead_of_the_read_model_skips_the_stale_dry_run() -> None:
    """Results can arrive before the snapshots they announce; the gateway must not refuse
    on the older state it still holds."""
    h = make_harness(pending_wait_s=0.2)
    try:
        pull_request_id = open_pr(h)
        # Elsewhere, bob approved (version 2); the processor knows, the read model does not,
        # and the approval's result announced version 2 (its events are not foldable here).
        approve = commands_pb2.CommandEnvelope(
            command_id=bound_id("other", pull_request_id), pull_request_id=pull_request_id
        )
        approve.approve_pull_request.reviewer = "bob"
        approve.approve_pull_request.pull_request_id = pull_request_id
        result = h.processor.process(approve)
        del result.events[:]
        h.loop.call(lambda: h.results.publish(result))
        view = h.view.get(pull_request_id)
        assert view is not None and view.version == 1
        merge = svc.MergePullRequestRequest(
            command=commands_pb2.MergePullRequest(
                pull_request_id=pull_request_id, merged_by_user="bob"
            ),
            options=COMPLETED,
        )
        outcome = h.call("MergePullRequest", merge)
        assert outcome.code == grpc.StatusCode.OK, outcome.message
        assert outcome.response.receipt.result.version == 4
    finally:
        h.loop.close()


def test_deadline_before_the_ack_is_deadline_exceeded_with_the_command_id() -> None:
    h = make_harness()
    h.sender.ack_times_out = True
    try:
        outcome = h.call("OpenPullRequest", open_request(), timeout=0.5)
        assert outcome.code == grpc.StatusCode.DEADLINE_EXCEEDED
        info = outcome.details["ErrorInfo"]
        assert info.reason == "ACCEPT_NOT_CONFIRMED"
        assert info.metadata["command_id"] == h.sender.sent[0].command_id
    finally:
        h.loop.close()
