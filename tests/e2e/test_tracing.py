"""Tracing between real processes: PRGATE_TRACING=console in gateway and processor, one call.

The console exporter writes each span as indented JSON on stdout, which the stack keeps in the
process's log file next to its JSON log lines; spans are flushed when a process stops.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

from helpers.kafka import free_port

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2
from tests.e2e.stack import Stack

SPAN_START = re.compile(r'^\{\n\s+"name": "prgate\.', re.MULTILINE)


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
