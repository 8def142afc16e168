"""The bulk decoder (archive.bulk, what the archive writes with) makes exactly the rows of the
per-record definition (archive.decode.to_arrow), for good records and every kind of bad one
mixed in one batch."""

from __future__ import annotations

from typing import Any, cast

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from helpers.ids import bound_id

from archive import bulk, decode
from archive.decode import Consumed, table_codecs
from prgate.kafka import codec
from prgate.kafka.contract import Topics
from prgate.v1 import commands_pb2 as c
from prgate.v1 import events_pb2 as e
from prgate.v1 import outcome_pb2, pull_request_pb2, results_pb2

TOPICS = Topics("b.")
CODECS = table_codecs(TOPICS)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
WHEN_MS = 1_764_547_200_123
ISSUED = Timestamp(seconds=1_764_547_199, nanos=500_000_000)
UNKNOWN: Any = cast(Any, 77)  # an enum number this version has no name for


def _commands() -> list[c.CommandEnvelope]:
    pr = "pr-1"
    bodies: list[dict[str, Any]] = [
        {"open_pull_request": c.OpenPullRequest(repository="o/r", title="t", author="ann",
                                                source_branch="f", target_branch="main")},
        {"change_pull_request_title": c.ChangePullRequestTitle(pull_request_id=pr, title="t2",
                                                               changed_by="bob")},
        {"approve_pull_request": c.ApprovePullRequest(pull_request_id=pr, reviewer="rev")},
        {"record_check_result": c.RecordCheckResult(
            pull_request_id=pr, check_name="ci",
            conclusion=pull_request_pb2.CHECK_CONCLUSION_SUCCESS)},
        {"record_check_result": c.RecordCheckResult(pull_request_id=pr, conclusion=UNKNOWN)},
        {"merge_pull_request": c.MergePullRequest(pull_request_id=pr, merged_by_user="m")},
        {"merge_pull_request": c.MergePullRequest(merged_by_user="m",
                                                  commit_message_override="ship")},
        {"close_pull_request": c.ClosePullRequest(pull_request_id=pr, actor="x")},
        {"reopen_pull_request": c.ReopenPullRequest(pull_request_id=pr, actor="y")},
        {"revert_pull_request": c.RevertPullRequest(pull_request_id=pr, actor="z", reason="r")},
    ]  # fmt: skip
    out = []
    for n, body in enumerate(bodies):
        out.append(c.CommandEnvelope(command_id=bound_id(f"c-{n}", pr), pull_request_id=pr,
                                     issued_at=ISSUED, caller="svc" if n % 2 else "",
                                     expected_version=n if n % 3 else None, **body))  # fmt: skip
    return out


def _records() -> list[Consumed]:
    out: list[codec.Record] = []
    for envelope in _commands():
        out.append(codec.command_record(TOPICS.commands, envelope, reply_to="r",
                                        traceparent=TRACEPARENT))  # fmt: skip
    good = out[0]
    unbound = c.CommandEnvelope()
    unbound.CopyFrom(_commands()[5])
    unbound.command_id = "c-plain"
    no_pr = c.CommandEnvelope(command_id=bound_id("c-9", ""),
                              approve_pull_request=c.ApprovePullRequest())  # fmt: skip
    value = good.value or b""
    out += [
        codec.Record(TOPICS.commands, b"pr-other", good.value, good.headers),  # key differs
        codec.command_record(TOPICS.commands, unbound, reply_to="r"),
        codec.Record(TOPICS.commands, None, good.value, []),  # no key
        codec.Record(TOPICS.commands, b"pr-1", b"\xff\xfe not protobuf", []),
        codec.Record(TOPICS.commands, b"pr-1", b"", []),
        codec.Record(TOPICS.commands, b"pr-1",
                     c.CommandEnvelope(command_id="x").SerializeToString(), []),
        codec.Record(TOPICS.commands, b"", no_pr.SerializeToString(), []),
        codec.Record(TOPICS.commands, b"pr-1", good.value,
                     [("message-type", b"prgate.v1.EventEnvelope")]),
        codec.Record(TOPICS.commands, b"pr-1", value + b"\xa2\x06\x03new", []),  # unknown field
        codec.Record(TOPICS.commands, b"\xffkey", good.value,
                     [("traceparent", b"x"), ("traceparent", TRACEPARENT.encode()),
                      ("correlation-id", b"\xff\xfe"), ("message-type", None)]),
        codec.Record(TOPICS.commands, b"pr-1", b"\x0a\x02\xff\xfe", []),  # command id not UTF-8
    ]  # fmt: skip
    violation = outcome_pb2.Violation(kind=outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION,
                                      reason="NOT_APPROVED", subject="pr-1")  # fmt: skip
    events = [
        e.EventEnvelope(event_id="e-1", pull_request_id="pr-1", version=1, command_id="c-0",
                        occurred_at=ISSUED, pull_request_opened=e.PullRequestOpened(
                            repository="o/r", title="t", author="ann")),
        e.EventEnvelope(event_id="e-2", version=2,
                        pull_request_title_changed=e.PullRequestTitleChanged(
                            old_title="t", new_title="t2", changed_by="bob")),
        e.EventEnvelope(event_id="e-3", pull_request_approved=e.PullRequestApproved(reviewer="r")),
        e.EventEnvelope(event_id="e-4", check_result_recorded=e.CheckResultRecorded(
            check_name="ci", conclusion=pull_request_pb2.CHECK_CONCLUSION_FAILURE)),
        e.EventEnvelope(event_id="e-5", pull_request_status_changed=e.PullRequestStatusChanged(
            from_status=pull_request_pb2.PULL_REQUEST_STATUS_OPEN, to_status=UNKNOWN, actor="a")),
        e.EventEnvelope(event_id="e-6", pull_request_merged=e.PullRequestMerged(
            merged_by_user="m", commit_message="msg")),
        e.EventEnvelope(event_id="e-7", pull_request_closed=e.PullRequestClosed(actor="a")),
        e.EventEnvelope(event_id="e-8", pull_request_reopened=e.PullRequestReopened(actor="a")),
        e.EventEnvelope(event_id="e-9",
                        pull_request_reverted=e.PullRequestReverted(actor="a", reason="r")),
        e.EventEnvelope(pull_request_id="pr-1"),  # no event id
    ]  # fmt: skip
    for event in events:
        out.append(codec.event_record(TOPICS.events, event, traceparent=TRACEPARENT))
    results = [
        results_pb2.CommandResult(command_id="c-0", pull_request_id="pr-1", version=1,
                                  state=outcome_pb2.COMMAND_STATE_SUCCEEDED, events=events[:2],
                                  command_type="OpenPullRequest", completed_at=ISSUED),
        results_pb2.CommandResult(command_id="c-1", state=outcome_pb2.COMMAND_STATE_REJECTED,
                                  violations=[violation, violation], duplicate=True),
        results_pb2.CommandResult(command_id="c-2", state=outcome_pb2.COMMAND_STATE_FAILED,
                                  error_message="boom"),
        results_pb2.CommandResult(command_id="c-3",
                                  violations=[outcome_pb2.Violation(kind=UNKNOWN)]),
        results_pb2.CommandResult(command_id="c-4", state=UNKNOWN),
        results_pb2.CommandResult(pull_request_id="pr-1"),  # no command id
    ]  # fmt: skip
    for result in results:
        out.append(codec.result_record(TOPICS.results, result, result.command_id or "x"))
    return [
        Consumed(r.topic, n % 3, 10 + n, WHEN_MS + n * 60_000_000, r.key, r.value,
                 None if n % 7 == 6 else list(r.headers))
        for n, r in enumerate(out)
    ]  # fmt: skip


@pytest.mark.parametrize("topic", [TOPICS.commands, TOPICS.results, TOPICS.events])
def test_bulk_rows_equal_the_per_record_rows(topic: str) -> None:
    records = [r for r in _records() if r.topic == topic]
    expected = decode.to_arrow(CODECS[topic], records, archived_at_us=5).to_pylist()
    got = bulk.to_arrow(CODECS[topic], records, archived_at_us=5)

    assert got.schema == CODECS[topic].spec.schema
    assert len(expected) == len(records) > 5
    for want, have in zip(expected, got.to_pylist(), strict=True):
        assert have == want
    # The batch really mixes both paths.
    errors = [row["decode_error"] for row in expected]
    assert any(errors) and not all(errors)


def test_an_empty_batch_is_an_empty_table() -> None:
    assert bulk.to_arrow(CODECS[TOPICS.events], [], archived_at_us=0).num_rows == 0
