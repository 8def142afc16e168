"""Prometheus metrics of a running gateway, scraped over HTTP after real commands."""

from __future__ import annotations

import re
import urllib.request
import uuid

import grpc
import pytest
from helpers.kafka import free_port

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2
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
    assert value(text, "prgate_gateway_read_model", kind="entities") >= 1
    assert value(text, "prgate_gateway_kafka_producer_healthy") == 1
