"""Refusals admission decides itself go to the refusal log (best effort), others do not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from gateway.admission import Admission
from gateway.command_specs import SPECS
from gateway.refusal_log import CLIPPED_TEXT_BYTES, MAX_RECORD_BYTES, KafkaRefusalLog, clipped
from gateway.refusals import Refusal
from gateway.settings import GatewaySettings
from prgate.kafka import codec, command_ids
from prgate.kafka.settings import KafkaSettings
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, outcome_pb2
from prgate.v1.refusals_pb2 import CommandRefusal
from tests.unit.gateway.conftest import open_request
from tests.unit.gateway.fakes import FakeProcessor, FakeResults, FakeSender, FakeView
from tests.unit.gateway.test_admission import TRACEPARENT, RecordingCall, RecordingHooks

NOW = 1_764_547_200.25


@dataclass
class RecordingLog:
    records: list[tuple[CommandRefusal, str | None]] = field(default_factory=list)

    def record(self, refusal: CommandRefusal, traceparent: str | None) -> None:
        self.records.append((refusal, traceparent))


def run(test: Callable[[Admission, RecordingLog, FakeSender], Awaitable[None]]) -> None:
    async def main() -> None:
        log, results = RecordingLog(), FakeResults()
        sender = FakeSender(results, FakeProcessor())
        admission = Admission(
            settings=GatewaySettings(), results_topic="t.results", sender=sender,
            results=results, view=FakeView(), refusal_log=log, clock=lambda: NOW,
        )  # fmt: skip
        await test(admission, log, sender)

    asyncio.run(main())


async def refused(admission: Admission, rpc: str, request: object) -> Refusal:
    with pytest.raises(Refusal) as caught:
        await admission.admit(SPECS[rpc], request, RecordingCall(name="eve"), RecordingHooks())  # type: ignore[arg-type]
    return caught.value


def test_a_field_rule_refusal_is_recorded_with_command_code_and_trace() -> None:
    async def check(admission: Admission, log: RecordingLog, sender: FakeSender) -> None:
        request = open_request()
        request.command.title = ""
        refusal = await refused(admission, "OpenPullRequest", request)

        ((record, traceparent),) = log.records
        assert traceparent == TRACEPARENT
        assert record.command.open_pull_request.author == request.command.author
        assert record.command.caller == "eve"
        assert record.command.command_id == refusal.ids()["command_id"]
        # The id the command would have had on the commands topic: bound to its pull request.
        assert command_ids.binds(record.command.command_id, record.command.pull_request_id)
        assert record.command.pull_request_id == refusal.ids()["pull_request_id"]
        assert (record.code, record.code_name) == (3, "INVALID_ARGUMENT")
        assert record.message == "title is required"
        assert record.reason == record.violations[0].reason
        assert record.violations[0].field == "command.title"
        assert record.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert record.refused_at.ToNanoseconds() == int(NOW * 1e9)
        assert sender.sent == []

    run(check)


def test_a_dry_run_rejection_is_recorded_an_accepted_command_is_not() -> None:
    async def check(admission: Admission, log: RecordingLog, sender: FakeSender) -> None:
        opened = await admission.admit(SPECS["OpenPullRequest"], open_request(), RecordingCall())
        assert log.records == []
        pr = opened.pull_request_id
        merge = svc.MergePullRequestRequest(
            command=commands_pb2.MergePullRequest(pull_request_id=pr, merged_by_user="eve")
        )
        rejection = await refused(admission, "MergePullRequest", merge)

        ((record, _),) = log.records
        assert record.code_name == rejection.code_name == "FAILED_PRECONDITION"
        assert record.command.merge_pull_request.merged_by_user == "eve"
        assert record.command.pull_request_id == pr
        assert command_ids.binds(record.command.command_id, pr)
        assert {v.kind for v in record.violations} == {
            outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION
        }
        assert len(sender.sent) == 1  # only the open

    run(check)


def test_a_key_reused_for_another_command_is_recorded() -> None:
    async def check(admission: Admission, log: RecordingLog, sender: FakeSender) -> None:
        first = open_request(idempotency_key="k1")  # the key is per caller: eve again
        await admission.admit(SPECS["OpenPullRequest"], first, RecordingCall(name="eve"))
        other = open_request(idempotency_key="k1")
        other.command.title = "Something else"
        refusal = await refused(admission, "OpenPullRequest", other)

        ((record, _),) = log.records
        assert record.code_name == refusal.code_name == "ALREADY_EXISTS"
        assert record.command.open_pull_request.title == "Something else"
        assert record.reason and not record.violations
        assert record.command.command_id == refusal.ids()["command_id"]
        assert command_ids.binds(record.command.command_id, record.command.pull_request_id)

    run(check)


def test_the_kafka_refusal_log_never_blocks_or_raises_and_counts_what_it_drops() -> None:
    log = KafkaRefusalLog(KafkaSettings(bootstrap_servers="127.0.0.1:1"), queue_max_records=1)
    refusal = CommandRefusal(code=9, command=commands_pb2.CommandEnvelope(command_id="c"))
    log.record(refusal, None)  # before start: dropped, not raised
    log.start()
    try:
        started = time.monotonic()
        for _ in range(5):
            log.record(refusal, TRACEPARENT)
        # Blocking would take the 30 s delivery timeout; 2 s leaves room for a busy machine.
        assert time.monotonic() - started < 2.0
        assert log.dropped >= 5  # one queued at most; the rest found the queue full
        assert log.recorded == 0
    finally:
        log.close(timeout=0.1)
    assert log.dropped == 6  # the queued one was not delivered either


def oversized_refusal() -> CommandRefusal:
    """The refusal of an OpenPullRequest whose title (1,000,000 bytes of UTF-8) broke the rules,
    as a request within the gateway's max_message_bytes can carry."""
    command = commands_pb2.OpenPullRequest(title="é" * 500_000, author="eve", repository="r")
    envelope = commands_pb2.CommandEnvelope(
        command_id=command_ids.bind(command_ids.new_base(), "pr-1"), pull_request_id="pr-1",
        caller="eve", open_pull_request=command,
    )  # fmt: skip
    violation = outcome_pb2.Violation(
        kind=outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT, reason="TITLE_TOO_LONG",
        field="command.title", description="title is too long",
    )  # fmt: skip
    # A field of a later version (number 100, a string), kept by the parser as unknown.
    value = envelope.SerializeToString() + b"\xa2\x06\x03new"
    return CommandRefusal(
        command=commands_pb2.CommandEnvelope.FromString(value), code=3,
        code_name="INVALID_ARGUMENT", reason="TITLE_TOO_LONG", violations=[violation],
    )  # fmt: skip


def test_a_refusal_too_large_for_a_record_keeps_every_text_clipped() -> None:
    refusal = oversized_refusal()
    assert codec.record_size(codec.refusal_record("t", refusal)) > MAX_RECORD_BYTES

    kept = clipped(refusal)

    title = kept.command.open_pull_request.title
    assert title == "é" * (CLIPPED_TEXT_BYTES // 2)  # cut between characters, never inside one
    assert (kept.command.open_pull_request.author, kept.command.caller) == ("eve", "eve")
    assert kept.command.command_id == refusal.command.command_id
    assert (kept.reason, list(kept.violations)) == (refusal.reason, list(refusal.violations))
    assert b"new" not in kept.SerializeToString()  # the unknown field is left out
    assert codec.record_size(codec.refusal_record("t", kept)) < MAX_RECORD_BYTES // 10
    assert len(refusal.command.open_pull_request.title) == 500_000  # the original is untouched


def test_the_kafka_refusal_log_queues_a_clipped_copy_of_a_refusal_too_large_for_a_record() -> None:
    log = KafkaRefusalLog(KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    log.start()
    try:
        log.record(oversized_refusal(), TRACEPARENT)
        assert log.dropped == 0  # queued (librdkafka refuses a record that is too large at once)
    finally:
        log.close(timeout=0.1)
    assert log.dropped == 1  # no broker: not delivered


def test_a_record_librdkafka_refuses_is_dropped_and_counted_not_raised() -> None:
    kafka = KafkaSettings(
        bootstrap_servers="127.0.0.1:1", kafka_properties={"message.max.bytes": "2000"}
    )
    log = KafkaRefusalLog(kafka)
    log.start()
    try:
        log.record(oversized_refusal(), None)  # clipped, yet still over 2000 bytes
        assert log.dropped == 1
    finally:
        log.close(timeout=0.1)
    assert (log.dropped, log.recorded) == (1, 0)
