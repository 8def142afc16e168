"""Several processes from one command: ``--workers N`` gateways and ``--instances N`` processors.

Real processes on the session's broker: a gateway started with two workers serves calls from
both (each worker's own /metrics counts the calls it took), SIGTERM drains both (every new
connection during the drain window is answered NOT_SERVING by whichever worker takes it) and
the command exits 0; a processor started with two instances splits the command partitions
between them, and commands still complete.
"""

from __future__ import annotations

import re
import signal
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers.kafka import free_port
from helpers.logs import log_events

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc, commands_pb2
from tests.e2e.stack import Stack

CONNECTIONS = 24  # SO_REUSEPORT hashes each connection: all on one of 2 workers is 2^-23


def free_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1 (per-worker metrics addresses)."""
    for _ in range(100):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two consecutive free ports")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text


def total(text: str, name: str) -> float:
    """The sum of every sample of ``name`` (all label sets)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if re.match(rf"{re.escape(name)}(\{{| )", line)
    )


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` until true; a metrics port not open yet (OSError) counts as false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass  # the worker has not opened its metrics port yet
        time.sleep(0.2)
    raise AssertionError(f"not true after {timeout}s: {what}")


def fresh_connection(target: str) -> grpc.Channel:
    # A channel of its own, not a shared subchannel: one new TCP connection each.
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def test_two_gateway_workers_share_the_port_and_both_drain(stack: Stack) -> None:
    stack.processor()
    metrics = free_port_pair()
    g = stack.gateway(
        free_port(),
        PRGATE_GATEWAY_WORKERS="2",
        PRGATE_METRICS_LISTEN=f"127.0.0.1:{metrics}",
        PRGATE_DRAIN_S="30",
    )
    ports = (metrics, metrics + 1)
    wait_for(
        lambda: all(total(scrape(p), "prgate_gateway_read_model_caught_up") == 1 for p in ports),
        "both workers caught up",
    )

    for n in range(CONNECTIONS):
        with fresh_connection(g.target) as channel:
            stub = command_service_pb2_grpc.PullRequestCommandServiceStub(channel)
            try:
                stub.ApprovePullRequest(
                    svc.ApprovePullRequestRequest(
                        command=commands_pb2.ApprovePullRequest(
                            pull_request_id=f"pr-missing-{uuid.uuid4().hex}", reviewer="ada"
                        )
                    ),
                    timeout=20,
                )
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
            else:
                raise AssertionError(f"call {n}: an approval of a missing pull request passed")

    counts = [total(scrape(p), "prgate_gateway_commands_total") for p in ports]
    assert sum(counts) == CONNECTIONS, counts
    assert all(count > 0 for count in counts), f"calls did not land on both workers: {counts}"
    log = g.log_path.read_text()
    pids = {e["pid"] for e in log_events(log) if e["event"] == "gateway_worker"}
    assert len(pids) == 2, log[-3000:]

    assert g.process is not None
    g.process.send_signal(signal.SIGTERM)

    def all_draining() -> bool:
        # During the drain every new connection is served, NOT_SERVING, by either worker.
        statuses = []
        for _ in range(CONNECTIONS):
            with fresh_connection(g.target) as channel:
                check = health_pb2_grpc.HealthStub(channel).Check
                statuses.append(check(health_pb2.HealthCheckRequest(), timeout=5).status)
        return all(s == health_pb2.HealthCheckResponse.NOT_SERVING for s in statuses)

    wait_for(all_draining, "every connection NOT_SERVING during the drain", timeout=20)
    assert g.process.poll() is None, "the gateway exited before its 30 s drain"
    g.process.send_signal(signal.SIGINT)  # a second signal ends the drain, as for one process
    assert g.process.wait(timeout=30) == 0, g.log_tail(60)
    log = g.log_path.read_text()
    assert log.count("gateway_stopping") == 2, log[-3000:]
    assert log.count("gateway_stopped") == 2, log[-3000:]
    exited = [
        (e["workers"], e["code"], e["stopping"])
        for e in log_events(log)
        if e["event"] == "worker_exited"
    ]
    assert exited == [("gateway", 0, True)] * 2, exited


def test_two_processor_instances_split_the_partitions(stack: Stack) -> None:
    metrics = free_port_pair()
    p = stack.processor(
        "pair", PRGATE_PROCESSOR_INSTANCES="2", PRGATE_METRICS_LISTEN=f"127.0.0.1:{metrics}"
    )
    ports = (metrics, metrics + 1)
    partitions = stack.kafka.partitions

    def split() -> bool:
        try:
            held = [total(scrape(port), "prgate_processor_assigned_partitions") for port in ports]
        except OSError:
            return False
        return sum(held) == partitions and all(h > 0 for h in held)

    wait_for(split, f"{partitions} partitions split between two instances", timeout=90)
    g = stack.gateway(free_port())
    for n in range(6):  # pull requests land on every partition; all complete
        opened = g.commands().OpenPullRequest(
            svc.OpenPullRequestRequest(
                command=commands_pb2.OpenPullRequest(
                    repository="acme/widgets",
                    title=f"t{n}",
                    author="ada",
                    source_branch=f"f/{uuid.uuid4().hex[:6]}",
                    target_branch="main",
                )
            ),
            timeout=30,
        )
        assert opened.receipt.pull_request_id
    log = p.log_path.read_text()
    instances = {e.get("instance_id") for e in log_events(log)}
    assert {"pair-0", "pair-1"} <= instances, log[-3000:]
    assert p.stop() == 0, p.log_tail(60)
