"""Prometheus metrics of a running gateway, scraped over HTTP after real commands."""

from __future__ import annotations

import re
import urllib.request
import uuid

import grpc
import pytest
from helpers.kafka import free_port

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, query_service_pb2
from tests.e2e.stack import Stack


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text


def value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels} in:\n{text[:3000]}")


def test_gateway_metrics_count_commands_and_latency(stack: Stack) -> None:
    stack.processor()
    metrics_port = free_port()
    g = stack.gateway(free_port(), PRGATE_METRICS_LISTEN=f"127.0.0.1:{metrics_port}")
    opened = g.commands().OpenPullRequest(
        svc.OpenPullRequestRequest(
            command=commands_pb2.OpenPullRequest(
                repository="acme/widgets",
                title="t",
                author="ada",
                source_branch=f"f/{uuid.uuid4().hex[:6]}",
                target_branch="main",
            )
        ),
        timeout=20,
    )
    with pytest.raises(grpc.RpcError):
        g.commands().ApprovePullRequest(
            svc.ApprovePullRequestRequest(
                command=commands_pb2.ApprovePullRequest(
                    pull_request_id=opened.receipt.pull_request_id, reviewer="ada"
                )
            ),
            timeout=20,
        )
    text = scrape(metrics_port)
    assert (
        value(text, "prgate_gateway_commands_total", command="OpenPullRequest", outcome="succeeded")
        == 1
    )
    assert (
        value(
            text,
            "prgate_gateway_commands_total",
            command="ApprovePullRequest",
            outcome="failed_precondition",
        )
        == 1
    )
    assert value(text, "prgate_gateway_accept_seconds_count", command="OpenPullRequest") == 1
    assert value(text, "prgate_gateway_round_trip_seconds_count", command="OpenPullRequest") == 1
    assert value(text, "prgate_gateway_read_model_caught_up") == 1
    assert value(text, "prgate_gateway_waiting_calls") == 0
    assert value(text, "prgate_gateway_read_model_pull_requests") >= 1
    assert value(text, "prgate_gateway_kafka_producer_healthy") == 1


def test_state_store_memory_bounds_are_in_metrics(stack: Stack) -> None:
    """With a state directory, both processes export the RocksDB bounds they were given and a
    store that serves: an opened pull request is read back through the gateway's store."""
    gateway_port, processor_port = free_port(), free_port()
    state = {
        "PRGATE_STATE_DIR": str(stack.log_dir / "state"),
        "PRGATE_STATE_BLOCK_CACHE_MB": "8",
        "PRGATE_STATE_WRITE_BUFFER_MB": "4",
        "PRGATE_STATE_CACHE_ENTRIES": "123",
    }
    stack.processor(PRGATE_METRICS_LISTEN=f"127.0.0.1:{processor_port}", **state)
    g = stack.gateway(free_port(), PRGATE_METRICS_LISTEN=f"127.0.0.1:{gateway_port}", **state)
    opened = g.commands().OpenPullRequest(
        svc.OpenPullRequestRequest(
            command=commands_pb2.OpenPullRequest(
                repository="acme/widgets",
                title="t",
                author="ada",
                source_branch=f"f/{uuid.uuid4().hex[:6]}",
                target_branch="main",
            ),
            options=svc.CommandOptions(response_mode=svc.RESPONSE_MODE_COMPLETED),
        ),
        timeout=20,
    )
    assert opened.receipt.result.version == 1
    got = g.queries().GetPullRequest(
        query_service_pb2.GetPullRequestRequest(pull_request_id=opened.receipt.pull_request_id),
        timeout=20,
    )
    assert got.pull_request.version == 1
    for name, port in (
        ("prgate_gateway_state", gateway_port),
        ("prgate_processor_state", processor_port),
    ):
        text = scrape(port)
        assert value(text, name, kind="block_cache_capacity_bytes") == 8 << 20
        assert value(text, name, kind="write_buffer_capacity_bytes") == 4 << 20
        assert value(text, name, kind="entry_cache_capacity") == 123
        assert value(text, name, kind="block_cache_usage_bytes") >= 0
    assert (stack.log_dir / "state" / "gateway").is_dir()
    assert (stack.log_dir / "state" / "processor").is_dir()
