"""Tracing between real processes: PRGATE_TRACING=console in gateway and processor, one call.

The console exporter writes each span as indented JSON on stdout, which the stack keeps in the
process's log file next to its JSON log lines; spans are flushed when a process stops.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers.kafka import free_port, produce

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, query_service_pb2_grpc
from prgate.v1 import query_service_pb2 as q
from tests.e2e.connect_http_calls import post_json
from tests.e2e.stack import Stack

SPAN_START = re.compile(r'^\{\n\s+"name": "(prgate|grpc)\.', re.MULTILINE)


def spans_in(log: Path) -> list[dict[str, Any]]:
    text = log.read_text(errors="replace")
    decoder = json.JSONDecoder()
    return [decoder.raw_decode(text, match.start())[0] for match in SPAN_START.finditer(text)]


def test_a_call_and_its_command_share_one_trace_across_processes(stack: Stack) -> None:
    processor = stack.processor(PRGATE_TRACING="console")
    gateway = stack.gateway(free_port(), PRGATE_TRACING="console")
    caller_trace = uuid.uuid4().hex
    response = gateway.commands().OpenPullRequest(
        svc.OpenPullRequestRequest(
            command=commands_pb2.OpenPullRequest(
                repository="acme/widgets",
                title="trace me",
                author="ada",
                source_branch=f"f/{uuid.uuid4().hex[:6]}",
                target_branch="main",
            )
        ),
        metadata=(("traceparent", f"00-{caller_trace}-00f067aa0ba902b7-01"),),
        timeout=30,
    )
    assert gateway.stop() == 0 and processor.stop() == 0  # flushes the spans

    service = "prgate.v1.PullRequestCommandService"
    (call,) = [s for s in spans_in(gateway.log_path) if s["name"].startswith(f"{service}/")]
    (command,) = [s for s in spans_in(processor.log_path) if s["name"].startswith("prgate.")]
    assert call["name"] == f"{service}/OpenPullRequest"
    assert call["kind"] == "SpanKind.SERVER"
    assert {k: call["attributes"][k] for k in ("rpc.system", "rpc.service", "rpc.method")} == {
        "rpc.system": "grpc",
        "rpc.service": service,
        "rpc.method": "OpenPullRequest",
    }
    assert call["attributes"]["rpc.grpc.status_code"] == 0
    assert call["context"]["trace_id"] == f"0x{caller_trace}"
    assert call["parent_id"] == "0x00f067aa0ba902b7"
    assert call["attributes"]["command_id"] == response.receipt.command_id
    assert call["attributes"]["outcome"] == "succeeded"
    assert call["resource"]["attributes"]["service.name"] == "prgate-gateway"

    assert command["name"] == "prgate.processor/OpenPullRequest"
    assert command["context"]["trace_id"] == f"0x{caller_trace}"
    assert command["parent_id"] == call["context"]["span_id"]
    assert command["attributes"]["outcome"] == "succeeded"
    assert command["attributes"]["events"] == 1
    assert command["resource"]["attributes"]["service.name"] == "prgate-processor"

    # The outcome lines of both processes carry their span's ids (JSON log fields).
    for log_path, span in ((gateway.log_path, call), (processor.log_path, command)):
        lines = log_path.read_text(errors="replace").splitlines()
        outcomes = [json.loads(line) for line in lines if '"event": "command_outcome"' in line]
        assert [(o["trace_id"], o["span_id"]) for o in outcomes] == [
            (caller_trace, span["context"]["span_id"].removeprefix("0x"))
        ], outcomes


def json_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith('{"ts"'):
            lines.append(json.loads(line))
    return lines


def test_every_rpc_has_a_span_and_lines_inside_it_carry_its_ids(
    stack: Stack, tmp_path: Path
) -> None:
    """Queries, health and refused calls get SERVER spans by the RPC conventions (gRPC and
    Connect); a log line written inside a call that is not its outcome line (the refused
    call's ``call_refused``) and the processor's dead-letter line carry the span's ids."""
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"principal": "ada", "token": "t" * 32}]}))
    processor = stack.processor(PRGATE_TRACING="console")
    http_port = free_port()
    gateway = stack.gateway(
        free_port(),
        PRGATE_TRACING="console",
        PRGATE_AUTH_TOKEN_FILE=str(tokens),
        PRGATE_HTTP_LISTEN=f"127.0.0.1:{http_port}",
    )
    refused_trace, query_trace, connect_trace, record_trace = (uuid.uuid4().hex for _ in "1234")
    with grpc.insecure_channel(gateway.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == 1
        queries = query_service_pb2_grpc.PullRequestQueryServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            queries.GetPullRequest(
                q.GetPullRequestRequest(pull_request_id="pr-x"),
                metadata=(("traceparent", f"00-{refused_trace}-00f067aa0ba902b7-01"),),
                timeout=10,
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as missing:
            queries.GetPullRequest(
                q.GetPullRequestRequest(pull_request_id="pr-none"),
                metadata=(
                    ("traceparent", f"00-{query_trace}-00f067aa0ba902b7-01"),
                    ("authorization", "Bearer " + "t" * 32),
                ),
                timeout=10,
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    status, answer = post_json(
        f"http://127.0.0.1:{http_port}",
        "/prgate.v1.PullRequestQueryService/GetPullRequest",
        {"pullRequestId": "pr-none"},
        f"traceparent: 00-{connect_trace}-00f067aa0ba902b7-01",
        "authorization: Bearer " + "t" * 32,
    )
    assert (status, answer["code"]) == (404, "not_found"), answer
    # A command record the processor cannot decode: dead-lettered inside its span.
    produce(
        stack.kafka,
        stack.kafka.topics.commands,
        [("pr-x", b"\xff\xff", [("traceparent", f"00-{record_trace}-00f067aa0ba902b7-01")])],
    )
    deadline = time.monotonic() + 60
    while "command_dead_lettered" not in processor.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, processor.log_tail(40)
        time.sleep(0.2)
    assert gateway.stop() == 0 and processor.stop() == 0  # flushes the spans

    spans = {s["context"]["trace_id"].removeprefix("0x"): s for s in spans_in(gateway.log_path)}
    query = "prgate.v1.PullRequestQueryService"
    for trace, system, code in (
        (refused_trace, "grpc", 16),
        (query_trace, "grpc", 5),
        (connect_trace, "connect_rpc", 5),
    ):
        span = spans[trace]
        assert span["name"] == f"{query}/GetPullRequest", span
        assert span["kind"] == "SpanKind.SERVER"
        assert span["attributes"]["rpc.system"] == system, span
        assert span["attributes"]["rpc.service"] == query
        assert span["attributes"]["rpc.method"] == "GetPullRequest"
        assert span["attributes"]["rpc.grpc.status_code"] == code, span
        assert span["status"]["status_code"] == "UNSET", span  # the caller's error, not ours
    assert spans[connect_trace]["attributes"]["rpc.connect_rpc.error_code"] == "not_found"
    checks = [s for s in spans.values() if s["name"] == "grpc.health.v1.Health/Check"]
    assert checks and checks[0]["attributes"]["rpc.grpc.status_code"] == 0, checks
    # The refusal's own line (not an outcome line) carries the refused call's span ids.
    (line,) = [e for e in json_lines(gateway.log_path) if e["event"] == "call_refused"]
    assert (line["trace_id"], line["span_id"]) == (
        refused_trace,
        spans[refused_trace]["context"]["span_id"].removeprefix("0x"),
    ), line
    (dead,) = [e for e in json_lines(processor.log_path) if e["event"] == "command_dead_lettered"]
    assert dead["trace_id"] == record_trace, dead
    assert dead["span_id"] != "00f067aa0ba902b7", dead  # the processor's own span
