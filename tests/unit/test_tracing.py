"""Tracing from the gRPC call through the command record into the processor and back.

The real command servicer runs under grpcio-testing; its sender hands each command record (with
the headers the gateway's producer writes) to the real processor path in-process: the
CommandHandler with tracing, then the observability hook the loop calls once the transaction
committed, which ends the command's span. Spans go to an in-memory exporter.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import grpc
import grpc_testing
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.command_service import CommandService
from gateway.settings import GatewaySettings
from prgate.domain import Policy
from prgate.kafka import codec
from prgate.kafka.codec import Record, header
from prgate.kafka.contract import HEADER_CORRELATION_ID, HEADER_TRACEPARENT, Topics
from prgate.observability import tracing as prgate_tracing
from prgate.observability.tracing import Tracing, TracingError
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2
from processor.handler import CommandHandler
from processor.observability import ProcessorObservability
from processor.settings import ProcessorSettings
from processor.state_store import MemoryPartition, PartitionStates
from tests.unit.gateway.aio_bridge import LoopThread, sync_servicer
from tests.unit.gateway.fakes import FakeResults, FakeView

TOPICS = Topics("t.")
COMMANDS = svc.DESCRIPTOR.services_by_name["PullRequestCommandService"]


class InProcessProcessor:
    """A CommandSender that runs the processor's handler and commit hook on each record."""

    def __init__(self, results: FakeResults, tracing: Tracing | None) -> None:
        self.results = results
        self.states = PartitionStates()
        self.states.put_partition(0, MemoryPartition({}))
        self.handler = CommandHandler(TOPICS, Policy(), tracing=tracing)
        self.observe = ProcessorObservability(None, tracing)
        self.sent: list[tuple[commands_pb2.CommandEnvelope, str | None]] = []
        self.outgoing: list[Record] = []

    async def send(
        self,
        envelope: commands_pb2.CommandEnvelope,
        *,
        reply_to: str,
        timeout: float,
        traceparent: str | None = None,
    ) -> None:
        self.sent.append((envelope, traceparent))
        # The record gateway.producer.CommandProducer writes.
        sent = codec.command_record(
            TOPICS.commands, envelope, reply_to=reply_to, traceparent=traceparent
        )
        record = Message(
            topic=sent.topic,
            partition=0,
            offset=len(self.sent) - 1,
            key=sent.key,
            value=sent.value,
            headers=sent.headers,
            timestamp=(TIMESTAMP_CREATE_TIME, int(time.time() * 1000)),
        )
        staged = self.states.begin()
        started = time.monotonic()
        handled = self.handler.handle(record, staged)
        staged.apply()  # as after commit_transaction
        self.observe.committed([handled], started)
        self.outgoing.extend(handled.outgoing)
        (answer,) = [o for o in handled.outgoing if o.topic == reply_to]
        result = codec.decode_result(answer.value, answer.headers)
        asyncio.get_running_loop().call_soon(self.results.publish, result)


@dataclass
class Traced:
    loop: LoopThread
    server: Any
    processor: InProcessProcessor
    exporter: InMemorySpanExporter

    def call(self, method: str, request: Any, metadata: Any = ()) -> tuple[Any, grpc.StatusCode]:
        rpc = self.server.invoke_unary_unary(
            COMMANDS.methods_by_name[method], metadata, request, 5.0
        )
        response, _trailing, code, _message = rpc.termination()
        return response, code

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]


def make_traced(*, tracing_on: bool) -> Traced:
    exporter = InMemorySpanExporter()
    # Gateway and processor are separate processes in production: separate providers here.
    gateway_tracing = prgate_tracing.with_exporter(exporter, "gw") if tracing_on else None
    processor_tracing = prgate_tracing.with_exporter(exporter, "proc") if tracing_on else None
    loop = LoopThread()
    settings = replace(GatewaySettings(), pending_wait_s=1.0)
    view, results = FakeView(), FakeResults()
    processor = InProcessProcessor(results, processor_tracing)

    def build() -> CommandService:
        return CommandService(
            settings=settings,
            results_topic=TOPICS.results,
            sender=processor,
            results=results,
            view=view,
            tracing=gateway_tracing,
        )

    servicer = loop.call(build)
    server = grpc_testing.server_from_dictionary(
        {COMMANDS: sync_servicer(servicer, COMMANDS, loop)}, grpc_testing.strict_real_time()
    )
    return Traced(loop, server, processor, exporter)


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = make_traced(tracing_on=True)
    yield t
    t.loop.close()


def open_request(author: str = "ada") -> svc.OpenPullRequestRequest:
    return svc.OpenPullRequestRequest(
        command=commands_pb2.OpenPullRequest(
            repository="acme/widgets",
            title="Add tracing",
            author=author,
            source_branch="feature/tracing",
            target_branch="main",
        )
    )


def attributes(span: ReadableSpan) -> set[tuple[str, Any]]:
    return set(dict(span.attributes or {}).items())


def traceparent_of(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    assert ctx is not None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def test_processor_span_is_child_of_gateway_span_and_results_carry_it(traced: Traced) -> None:
    response, code = traced.call("OpenPullRequest", open_request())
    assert code == grpc.StatusCode.OK
    receipt = response.receipt

    (gateway,) = traced.spans("prgate.v1.PullRequestCommandService/OpenPullRequest")
    (command,) = traced.spans("prgate.processor/OpenPullRequest")
    gateway_ctx, command_ctx = gateway.get_span_context(), command.get_span_context()
    assert gateway_ctx is not None and command_ctx is not None
    assert command_ctx.trace_id == gateway_ctx.trace_id
    assert command.parent is not None and command.parent.span_id == gateway_ctx.span_id
    assert gateway.parent is None  # the caller sent no traceparent
    assert gateway.kind is SpanKind.SERVER and command.kind is SpanKind.CONSUMER

    # OpenTelemetry's RPC semantic conventions (span name "<service>/<method>", rpc.*).
    assert attributes(gateway) >= {
        ("rpc.system", "grpc"),
        ("rpc.service", "prgate.v1.PullRequestCommandService"),
        ("rpc.method", "OpenPullRequest"),
        ("rpc.grpc.status_code", 0),
        ("command_id", receipt.command_id),
        ("pull_request_id", receipt.pull_request_id),
        ("outcome", "succeeded"),
    }
    assert [e.name for e in gateway.events] == ["result"]
    assert attributes(command) >= {
        ("command_id", receipt.command_id),
        ("command_type", "OpenPullRequest"),
        ("outcome", "succeeded"),
        ("events", 1),
    }
    # The processor span ended after the commit hook, i.e. before the call got its result.
    assert command.end_time is not None and gateway.end_time is not None
    assert command.end_time <= gateway.end_time

    # On the command record: the gateway span's traceparent (docs/contract.md, `traceparent`).
    ((_envelope, sent_traceparent),) = traced.processor.sent
    assert sent_traceparent == traceparent_of(gateway)
    # On every record the command caused: the processor span's, same trace id.
    caused = traced.processor.outgoing
    assert {o.topic for o in caused} == {TOPICS.events, TOPICS.pull_requests, TOPICS.results}
    for record in caused:
        assert header(record.headers, HEADER_TRACEPARENT) == traceparent_of(command)
    result_tp = header(
        next(o for o in caused if o.topic == TOPICS.results).headers, HEADER_TRACEPARENT
    )
    assert result_tp is not None and result_tp.split("-")[1] == f"{gateway_ctx.trace_id:032x}"


def test_processor_rejection_and_gateway_refusal_are_traced(traced: Traced) -> None:
    opened, _ = traced.call("OpenPullRequest", open_request())
    pr = opened.receipt.pull_request_id
    # The author approving: the gateway refuses on its read model; nothing reaches Kafka.
    _, code = traced.call(
        "ApprovePullRequest",
        svc.ApprovePullRequestRequest(
            command=commands_pb2.ApprovePullRequest(pull_request_id=pr, reviewer="ada")
        ),
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    (refused,) = traced.spans("prgate.v1.PullRequestCommandService/ApprovePullRequest")
    assert (refused.attributes or {})["outcome"] == "failed_precondition"
    assert (refused.attributes or {})[
        "rpc.grpc.status_code"
    ] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert refused.status.status_code is not StatusCode.ERROR  # the caller's fault
    assert traced.spans("prgate.processor/ApprovePullRequest") == []
    assert len(traced.processor.sent) == 1


def test_gateway_span_joins_the_callers_trace() -> None:
    t = make_traced(tracing_on=True)
    try:
        caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        _, code = t.call("OpenPullRequest", open_request(), metadata=(("traceparent", caller),))
        assert code == grpc.StatusCode.OK
        (gateway,) = t.spans("prgate.v1.PullRequestCommandService/OpenPullRequest")
        ctx = gateway.get_span_context()
        assert ctx is not None and f"{ctx.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
        assert gateway.parent is not None and f"{gateway.parent.span_id:016x}" == (
            "b7ad6b7169203331"
        )
        (command,) = t.spans("prgate.processor/OpenPullRequest")
        assert command.get_span_context().trace_id == ctx.trace_id  # type: ignore[union-attr]
    finally:
        t.loop.close()


def test_aborted_transaction_ends_command_spans_in_error() -> None:
    exporter = InMemorySpanExporter()
    tracing = prgate_tracing.with_exporter(exporter, "proc")
    handler = CommandHandler(TOPICS, Policy(), tracing=tracing)
    states = PartitionStates()
    states.put_partition(0, MemoryPartition({}))
    record = Message(
        topic=TOPICS.commands,
        partition=0,
        offset=0,
        key=b"pr-1",
        value=b"\xff not a command",
        headers=[(HEADER_CORRELATION_ID, b"c-1")],
        timestamp=(TIMESTAMP_CREATE_TIME, 1),
    )
    handled = handler.handle(record, states.begin())
    assert exporter.get_finished_spans() == ()  # open until the transaction ends
    ProcessorObservability(None, tracing).aborted([handled], "broker went away")
    (span,) = exporter.get_finished_spans()
    assert span.name == "prgate.processor/undecodable"
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["outcome"] == "dead_letter"
    assert (span.attributes or {})["transaction"] == "aborted"


def test_tracing_off_writes_no_traceparent_anywhere() -> None:
    t = make_traced(tracing_on=False)
    try:
        _, code = t.call("OpenPullRequest", open_request())
        assert code == grpc.StatusCode.OK
        ((_envelope, sent_traceparent),) = t.processor.sent
        assert sent_traceparent is None
        assert t.processor.outgoing
        for record in t.processor.outgoing:
            assert header(record.headers, HEADER_TRACEPARENT) is None
    finally:
        t.loop.close()


def test_tracing_off_imports_no_opentelemetry() -> None:
    """With tracing off, starting gateway and processor code never loads OpenTelemetry."""
    code = textwrap.dedent(
        """
        import sys
        import gateway.server, gateway.command_service
        import processor.app, processor.loop
        from prgate.observability import tracing
        from processor.observability import ProcessorObservability
        from processor.settings import ProcessorSettings
        assert tracing.setup("off", "x") is None
        observe = ProcessorObservability.from_settings(ProcessorSettings(metrics_listen="x:1"))
        assert observe.tracing is None and observe.metrics is not None
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        assert not loaded, loaded
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_unknown_mode_and_missing_packages_are_start_up_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(TracingError, match="one of off, console, otlp"):
        prgate_tracing.setup("jaeger", "x")
    with pytest.raises(ValueError, match="tracing must be one of"):
        ProcessorSettings(tracing="jaeger")
    for name in ("opentelemetry", "opentelemetry.trace", "opentelemetry.sdk.trace"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(TracingError, match=r"pip install 'prgate\[tracing\]'"):
        prgate_tracing.setup("console", "x")
