"""Status codes and details of PullRequestCommandService, through grpcio-testing.

Every row of DESIGN.md's error table is covered here with a fake Kafka side; the end-to-end
tests repeat the important ones against the real broker and processor.
"""

from __future__ import annotations

import grpc

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, outcome_pb2, pull_request_pb2
from tests.unit.gateway.conftest import Harness, make_harness

COMPLETED = svc.CommandOptions(response_mode=svc.RESPONSE_MODE_COMPLETED)
ACCEPTED = svc.CommandOptions(response_mode=svc.RESPONSE_MODE_ACCEPTED)


def open_request(**options: object) -> svc.OpenPullRequestRequest:
    return svc.OpenPullRequestRequest(
        command=commands_pb2.OpenPullRequest(
            repository="acme/widgets",
            title="Add a widget",
            description="",
            author="ada",
            source_branch="feature/widget",
            target_branch="main",
        ),
        options=svc.CommandOptions(**options),  # type: ignore[arg-type]
    )


def open_pr(h: Harness) -> str:
    outcome = h.call("OpenPullRequest", open_request())
    assert outcome.code == grpc.StatusCode.OK, outcome.message
    pull_request_id: str = outcome.response.receipt.pull_request_id
    return pull_request_id


def test_open_completes_with_result_and_assigned_id(harness: Harness) -> None:
    outcome = harness.call("OpenPullRequest", open_request())
    assert outcome.code == grpc.StatusCode.OK
    receipt = outcome.response.receipt
    assert receipt.state == outcome_pb2.COMMAND_STATE_SUCCEEDED
    assert receipt.pull_request_id == f"pr-{receipt.command_id}"
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


def test_kafka_unreachable_is_unavailable_and_a_retry_can_succeed(harness: Harness) -> None:
    harness.sender.unavailable = True
    outcome = harness.call("OpenPullRequest", open_request(idempotency_key="k-3"))
    assert outcome.code == grpc.StatusCode.UNAVAILABLE
    assert "RetryInfo" in outcome.details
    harness.sender.unavailable = False
    retry = harness.call("OpenPullRequest", open_request(idempotency_key="k-3"))
    assert retry.code == grpc.StatusCode.OK
    assert len(harness.sender.sent) == 1


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
    """Read-your-writes in ACCEPTED mode: the approve waits for the open to complete."""
    h = make_harness()
    processor = h.processor
    h.sender.processor = None
    try:
        opened = h.call("OpenPullRequest", open_request(response_mode=svc.RESPONSE_MODE_ACCEPTED))
        assert opened.response.receipt.state == outcome_pb2.COMMAND_STATE_ACCEPTED
        (sent,) = h.sender.sent
        # The open's result arrives while the approve is already waiting on it.
        h.loop.loop.call_soon_threadsafe(
            lambda: h.loop.loop.call_later(0.2, h.results.publish, processor.process(sent))
        )
        h.sender.processor = processor
        approve = svc.ApprovePullRequestRequest(
            command=commands_pb2.ApprovePullRequest(
                pull_request_id=opened.response.receipt.pull_request_id, reviewer="bob"
            )
        )
        outcome = h.call("ApprovePullRequest", approve)
        assert outcome.code == grpc.StatusCode.OK, outcome.message
        assert outcome.response.receipt.result.version == 2
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
    from gateway.idempotency import command_id_for_key

    envelope = commands_pb2.CommandEnvelope(
        command_id=command_id_for_key("", "merge-once"), pull_request_id=pull_request_id
    )
    envelope.merge_pull_request.CopyFrom(merge.command)
    harness.loop.call(lambda: harness.results.publish(harness.processor.process(envelope)))
    sent_before = len(harness.sender.sent)
    outcome = harness.call("MergePullRequest", merge)
    assert outcome.code == grpc.StatusCode.OK, outcome.message
    assert outcome.response.receipt.state == outcome_pb2.COMMAND_STATE_SUCCEEDED
    assert outcome.response.receipt.command_id == envelope.command_id
    assert len(harness.sender.sent) == sent_before


def test_announced_version_ahead_of_the_read_model_skips_the_stale_dry_run() -> None:
    """Results can arrive before the snapshots they announce; the gateway must not refuse
    on the older state it still holds."""
    h = make_harness(pending_wait_s=0.2)
    try:
        pull_request_id = open_pr(h)
        # Elsewhere, bob approved (version 2); the processor knows, the read model does not,
        # and the approval's result announced version 2 (its events are not foldable here).
        approve = commands_pb2.CommandEnvelope(command_id="other", pull_request_id=pull_request_id)
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


def test_key_reused_for_another_command_elsewhere_is_already_exists(harness: Harness) -> None:
    """The first use of the key went through another gateway: known only by its result."""
    from gateway.idempotency import command_id_for_key

    first = open_pr(harness)
    other = commands_pb2.CommandEnvelope(
        command_id=command_id_for_key("", "shared-key"), pull_request_id=first
    )
    other.approve_pull_request.pull_request_id = first
    other.approve_pull_request.reviewer = "bob"
    harness.loop.call(lambda: harness.results.publish(harness.processor.process(other)))
    sent_before = len(harness.sender.sent)
    outcome = harness.call("OpenPullRequest", open_request(idempotency_key="shared-key"))
    assert outcome.code == grpc.StatusCode.ALREADY_EXISTS
    assert outcome.details["ErrorInfo"].reason == "IDEMPOTENCY_KEY_REUSED"
    assert len(harness.sender.sent) == sent_before
