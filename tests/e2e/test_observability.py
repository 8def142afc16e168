"""Logs, metrics and their conventions, on real gateway and processor processes.

Every log line a process writes (off a terminal) is one JSON object with its fields, librdkafka's
lines included and their repeats bounded; ``/metrics`` carries the standard per-RPC, process and
librdkafka metrics with the types and labels Prometheus' conventions ask, and ``promtool check
metrics`` (installed by ``make tools``) finds nothing to say about it.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from helpers.kafka import free_port
from helpers.logs import log_events
from prometheus_client.parser import text_string_to_metric_families

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2
from tests.e2e.stack import GatewayProcess, Stack, base_env

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = "prgate.v1.PullRequestCommandService"


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text


def families(text: str) -> dict[str, Any]:
    """name → family, parsed strictly by prometheus_client's own parser."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Any, name: str | None = None) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for s in family.samples if name is None or s.name == name]


def scraped_until(port: int, ready: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> str:
    """Scrape until ``ready`` holds for the parsed page (e.g. librdkafka's first statistics,
    every 5 s); returns the page's text."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(port)
        if ready(families(text)) or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")
    assert Path(promtool).exists(), "promtool is missing: run `make tools`"
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


def open_request() -> svc.OpenPullRequestRequest:
    return svc.OpenPullRequestRequest(
        command=commands_pb2.OpenPullRequest(
            repository="acme/widgets",
            title="observed",
            author="ada",
            source_branch=f"f/{uuid.uuid4().hex[:6]}",
            target_branch="main",
        )
    )


def test_metrics_of_real_processes_follow_the_conventions_and_pass_promtool(
    stack: Stack,
) -> None:
    processor_port, gateway_port = free_port(), free_port()
    processor = stack.processor(PRGATE_METRICS_LISTEN=f"127.0.0.1:{processor_port}")
    gateway = stack.gateway(free_port(), PRGATE_METRICS_LISTEN=f"127.0.0.1:{gateway_port}")
    opened = gateway.commands().OpenPullRequest(open_request(), timeout=20)
    with pytest.raises(grpc.RpcError) as refused:
        gateway.commands().ApprovePullRequest(
            svc.ApprovePullRequestRequest(
                command=commands_pb2.ApprovePullRequest(
                    pull_request_id=opened.receipt.pull_request_id, reviewer="ada"
                )
            ),
            timeout=20,
        )
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION

    def has_kafka_statistics(found: dict[str, Any]) -> bool:
        return bool(samples(found["prgate_kafka_broker_rtt_seconds"]))

    gateway_text = scraped_until(gateway_port, has_kafka_statistics)
    processor_text = scraped_until(
        processor_port,
        lambda found: (
            has_kafka_statistics(found)
            and any(v > 0 for _, v in samples(found["prgate_kafka_produced_messages"]))
            and any(
                labels["topic"] == stack.kafka.topics.commands
                for labels, _ in samples(found["prgate_kafka_consumer_lag"])
            )
        ),
    )
    for text in (gateway_text, processor_text):
        promtool_check(text)
        found = families(text)
        # Process and platform collectors, and the build info.
        assert found["process_cpu_seconds"].type == "counter"
        assert found["process_resident_memory_bytes"].type == "gauge"
        assert found["python_info"].type == "gauge"
        ((build, one),) = samples(found["prgate_build_info"])
        assert found["prgate_build_info"].type == "gauge" and one == 1.0
        assert set(build) == {
            "version",
            "python_version",
            "grpc_version",
            "confluent_kafka_version",
            "librdkafka_version",
        }
        assert build["version"] != "" and build["librdkafka_version"][0].isdigit()
        # librdkafka's statistics: round trips and errors per broker node.
        rtt = samples(found["prgate_kafka_broker_rtt_seconds"])
        assert rtt and all(set(labels) == {"client", "broker"} for labels, _ in rtt)
        assert all(0 <= seconds < 5 for _, seconds in rtt), rtt
        assert all(labels["broker"].isdigit() for labels, _ in rtt)
        for name in ("transmit_errors", "receive_errors", "request_timeouts", "retries"):
            assert found[f"prgate_kafka_broker_{name}"].type == "counter"

    g = families(gateway_text)
    # The standard per-RPC server metrics (go-grpc-prometheus names and labels).
    rpc = {"grpc_type": "unary", "grpc_service": COMMANDS}
    assert g["grpc_server_started"].type == "counter"
    assert g["grpc_server_handled"].type == "counter"
    assert g["grpc_server_handling_seconds"].type == "histogram"
    handled = {
        (labels["grpc_method"], labels["grpc_code"]): value
        for labels, value in samples(g["grpc_server_handled"], "grpc_server_handled_total")
        if labels["grpc_service"] == COMMANDS
    }
    assert handled == {
        ("OpenPullRequest", "OK"): 1.0,
        ("ApprovePullRequest", "FailedPrecondition"): 1.0,
    }
    started = samples(g["grpc_server_started"], "grpc_server_started_total")
    assert ({**rpc, "grpc_method": "OpenPullRequest"}, 1.0) in started
    counts = samples(g["grpc_server_handling_seconds"], "grpc_server_handling_seconds_count")
    assert ({**rpc, "grpc_method": "OpenPullRequest"}, 1.0) in counts
    # The health checks the stack made are counted too (another service, same metrics).
    assert any(labels["grpc_service"] == "grpc.health.v1.Health" for labels, _ in started), started
    # Running totals are counters, current values gauges.
    assert g["prgate_gateway_read_model_records"].type == "counter"
    assert g["prgate_gateway_results"].type == "counter"
    assert g["prgate_gateway_result_cache_evictions"].type == "counter"
    assert g["prgate_gateway_refusals_recorded"].type == "counter"
    assert g["prgate_gateway_read_model_pull_requests"].type == "gauge"
    assert samples(g["prgate_gateway_read_model_pull_requests"])[0][1] >= 1
    assert samples(g["prgate_gateway_results"], "prgate_gateway_results_total")[0][1] >= 1
    assert "prgate_gateway_read_model" not in g and "prgate_gateway_replies" not in g

    p = families(processor_text)
    lag = samples(p["prgate_kafka_consumer_lag"])
    assert p["prgate_kafka_consumer_lag"].type == "gauge"
    assert all(set(labels) == {"client", "topic", "partition"} for labels, _ in lag)
    commands_lag = [v for labels, v in lag if labels["topic"] == stack.kafka.topics.commands]
    assert commands_lag and all(v == 0 for v in commands_lag), lag  # all consumed
    produced = samples(p["prgate_kafka_produced_messages"], "prgate_kafka_produced_messages_total")
    assert sum(value for _, value in produced) >= 1  # the events, snapshot and result
    states = samples(p["prgate_kafka_producer_transaction_state"])
    assert states and all(value == 1.0 for _, value in states)

    assert gateway.stop() == 0 and processor.stop() == 0
    for service in (gateway, processor):
        events = log_events(service.log_path.read_text(errors="replace"))  # every line JSON
        assert all({"ts", "level", "logger", "event"} <= set(e) for e in events)
        assert "msg" not in {k for e in events for k in e}
    gateway_events = log_events(gateway.log_path.read_text(errors="replace"))
    outcomes = [e for e in gateway_events if e["event"] == "command_outcome"]
    assert [(e["rpc"], e["outcome"], e["logger"]) for e in outcomes] == [
        ("OpenPullRequest", "succeeded", "gateway.command_telemetry"),
        ("ApprovePullRequest", "failed_precondition", "gateway.command_telemetry"),
    ]
    assert outcomes[0]["command_id"] == opened.receipt.command_id
    assert isinstance(outcomes[0]["duration_ms"], float)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_with_kafka_unreachable_every_line_is_json_and_librdkafka_repeats_are_bounded(
    stack: Stack, tmp_path: Path
) -> None:
    env = base_env(stack.kafka)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed_port()}",
        PRGATE_LISTEN=f"127.0.0.1:{free_port()}",
    )
    gateway = GatewayProcess("gateway-alone", "gateway", env, tmp_path / "alone.log", port=0)
    gateway.start()
    stack.services.append(gateway)

    def librdkafka_lines() -> list[dict[str, Any]]:
        text = gateway.log_path.read_text(errors="replace")
        complete = text[: text.rfind("\n") + 1]  # the line being written may be partial
        return [e for e in log_events(complete) if e["event"] == "librdkafka"]

    # librdkafka retries each connection with a backoff from 100 ms up to 10 s: watch 12 s
    # (the issue counted 833 raw lines in 16 s), well inside the 30 s repeat window.
    deadline = time.monotonic() + 12.0
    while time.monotonic() < deadline:
        assert gateway.alive(), gateway.log_tail()
        time.sleep(0.5)
    assert gateway.stop() == 0

    lines = librdkafka_lines()
    assert lines, gateway.log_tail()
    for line in lines:
        assert {"facility", "client", "detail", "level", "logger"} <= set(line), line
        assert line["logger"] == "prgate.observability.logs"
        assert re.fullmatch(r"prgate-gateway-[a-z-]+#(producer|consumer)-\d+", line["client"]), line
    kinds = Counter(
        (e["level"], e["facility"], e["client"], re.sub(r"\d+", "#", e["detail"])) for e in lines
    )
    assert max(kinds.values()) == 1, kinds.most_common(3)  # no repeat within the window
    assert any(e["facility"] == "FAIL" and "Connection refused" in e["detail"] for e in lines)
    text = gateway.log_path.read_text(errors="replace")
    assert "%3|" not in text and "|FAIL|" not in text  # nothing raw from librdkafka
    # The gateway's own error callback repeats as often as librdkafka does: bounded alike.
    errors = [e for e in log_events(text) if e["event"] == "producer_error"]
    assert errors, gateway.log_tail()
    error_kinds = Counter((e["code"], re.sub(r"\d+", "#", e["error"])) for e in errors)
    assert max(error_kinds.values()) == 1, error_kinds.most_common(3)
    # 1,107 lines in 16 s before these were bounded (833 raw librdkafka lines).
    assert len(text.splitlines()) < 50, len(text.splitlines())
