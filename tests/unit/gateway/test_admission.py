"""Admission without gRPC: receipts and typed refusals, the call context, the hooks.

These drive gateway.admission.Admission directly on an event loop (the servicer tests drive it
through grpcio-testing); they pin what another transport would rely on.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import pytest
from google.rpc import code_pb2

from gateway.admission import Admission
from gateway.command_specs import SPECS
from gateway.refusals import Refusal, details_of
from gateway.settings import GatewaySettings
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, outcome_pb2, results_pb2
from tests.unit.gateway.conftest import open_request
from tests.unit.gateway.fakes import FakeProcessor, FakeResults, FakeSender, FakeView

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class RecordingCall:
    """A CallContext that writes down what admission asked, in order."""

    headers: dict[str, str] = field(default_factory=dict)
    remaining: float | None = 5.0
    name: str = "ada"
    asked: list[str] = field(default_factory=list)

    def caller(self) -> str:
        self.asked.append("caller")
        return self.name

    def header(self, name: str) -> str:
        self.asked.append(f"header:{name}")
        return self.headers.get(name, "")

    def time_remaining(self) -> float | None:
        self.asked.append("time_remaining")
        return self.remaining


@dataclass
class RecordingHooks:
    traceparent: str | None = TRACEPARENT
    acknowledged_ids: list[str] = field(default_factory=list)
    results: list[results_pb2.CommandResult] = field(default_factory=list)

    def acknowledged(self, envelope: commands_pb2.CommandEnvelope) -> None:
        self.acknowledged_ids.append(envelope.command_id)

    def result_arrived(self, result: results_pb2.CommandResult) -> None:
        self.results.append(result)


@dataclass
class Side:
    admission: Admission
    view: FakeView
    results: FakeResults
    sender: FakeSender


def run(test: Callable[[Side], Awaitable[None]], **settings: float) -> None:
    async def main() -> None:
        view, results = FakeView(), FakeResults()
        sender = FakeSender(results, FakeProcessor())
        admission = Admission(
            settings=replace(GatewaySettings(), **settings),
            results_topic="t.results",
            sender=sender,
            results=results,
            view=view,
        )
        await test(Side(admission, view, results, sender))

    asyncio.run(main())


def test_a_completed_command_is_a_receipt_and_the_hooks_see_ack_and_result() -> None:
    async def check(side: Side) -> None:
        hooks, call = RecordingHooks(), RecordingCall()
        receipt = await side.admission.admit(SPECS["OpenPullRequest"], open_request(), call, hooks)
        assert receipt.state == outcome_pb2.COMMAND_STATE_SUCCEEDED
        assert receipt.result.version == 1
        assert hooks.acknowledged_ids == [receipt.command_id]
        assert [r.command_id for r in hooks.results] == [receipt.command_id]
        ((envelope, reply_to, traceparent),) = side.sender.records
        assert (envelope.caller, reply_to, traceparent) == ("ada", "t.results", TRACEPARENT)
        # Asked in the order of the steps; no key in the options, so the header is asked.
        assert call.asked == ["caller", "header:idempotency-key", "time_remaining"]

    run(check)


def test_a_refusal_carries_the_google_rpc_code_message_and_details() -> None:
    async def check(side: Side) -> None:
        request = open_request()
        request.command.title = ""
        with pytest.raises(Refusal) as refused:
            await side.admission.admit(SPECS["OpenPullRequest"], request, RecordingCall())
        refusal = refused.value
        assert refusal.status.code == code_pb2.INVALID_ARGUMENT
        assert refusal.code_name == "INVALID_ARGUMENT"
        assert str(refusal) == refusal.status.message == "title is required"
        details = details_of(refusal.status)
        assert details["BadRequest"].field_violations[0].field == "command.title"  # type: ignore[attr-defined]
        assert set(refusal.ids()) == {"command_id", "pull_request_id"}
        assert side.sender.sent == []

    run(check)


def test_fields_this_version_does_not_know_never_reach_kafka() -> None:
    async def check(side: Side) -> None:
        request = open_request()
        # Field 99 of OpenPullRequest, 64 KiB long: unknown to this gateway, so unchecked.
        padding = b"\x9a\x06" + b"\x80\x80\x04" + b"x" * 65536
        request.command.MergeFromString(padding)
        assert request.command.ByteSize() > 65536  # kept by the parser, unseen by the rules
        receipt = await side.admission.admit(SPECS["OpenPullRequest"], request, RecordingCall())
        assert receipt.state == outcome_pb2.COMMAND_STATE_SUCCEEDED
        ((envelope, _reply_to, _traceparent),) = side.sender.records
        assert envelope.open_pull_request.title == "Add a widget"
        assert envelope.ByteSize() < 1024

    run(check)


def test_while_catching_up_the_call_context_is_not_read() -> None:
    async def check(side: Side) -> None:
        side.view.ready = False
        call = RecordingCall()
        with pytest.raises(Refusal) as refused:
            await side.admission.admit(SPECS["OpenPullRequest"], open_request(), call)
        assert refused.value.code_name == "UNAVAILABLE"
        assert call.asked == []

    run(check)


def test_the_key_header_is_used_when_the_options_carry_none() -> None:
    async def check(side: Side) -> None:
        spec = SPECS["OpenPullRequest"]
        from_header = RecordingCall(headers={"idempotency-key": "k"})
        first = await side.admission.admit(spec, open_request(), from_header)
        from_options = RecordingCall()
        again = await side.admission.admit(spec, open_request(idempotency_key="k"), from_options)
        assert again.command_id == first.command_id
        assert "header:idempotency-key" not in from_options.asked
        assert len(side.sender.sent) == 1

    run(check)


def test_accepted_mode_answers_after_the_ack_and_watch_follows_to_the_end() -> None:
    async def check(side: Side) -> None:
        hooks = RecordingHooks()
        request = open_request(response_mode=svc.RESPONSE_MODE_ACCEPTED)
        receipt = await side.admission.admit(
            SPECS["OpenPullRequest"], request, RecordingCall(), hooks
        )
        assert receipt.state == outcome_pb2.COMMAND_STATE_ACCEPTED
        assert hooks.results == []
        states = [r.state async for r in side.admission.watch(receipt.command_id, RecordingCall())]
        assert states == [outcome_pb2.COMMAND_STATE_ACCEPTED, outcome_pb2.COMMAND_STATE_SUCCEEDED]

    run(check)


def test_watch_of_an_unknown_command_is_a_not_found_refusal_within_the_call_time() -> None:
    async def check(side: Side) -> None:
        call = RecordingCall(remaining=0.2)
        with pytest.raises(Refusal) as refused:
            async for _ in side.admission.watch("nobody-knows", call):
                pytest.fail("nothing is known about this command")
        assert refused.value.code_name == "NOT_FOUND"
        assert call.asked == ["time_remaining"]

    run(check, unknown_command_wait_s=30.0)


def test_admission_imports_neither_grpc_nor_kafka() -> None:
    """Admission (and the telemetry every transport shares) can be served without gRPC."""
    code = textwrap.dedent(
        """
        import sys
        import gateway.admission, gateway.command_telemetry
        loaded = sorted(
            m for m in sys.modules if m.split(".")[0] in ("grpc", "grpc_status", "confluent_kafka")
        )
        assert not loaded, loaded
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
