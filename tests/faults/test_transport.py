"""Hostile and broken clients at the transport: pings, held calls, old connections, revoked
tokens, dead peers. Real gateway processes (one processor, one gateway per connection policy)
on the session's broker; the clients are real gRPC channels.

- keepalive: a client that pings every second keeps its idle WatchPullRequest and gets the
  next update (it used to get GOAWAY ``too_many_pings`` after 3 s, a 10 s pinger after 30 s);
  pinging faster than the policy still closes the connection; a peer that stops answering the
  gateway's pings loses its streams.
- health ``Watch`` works through the whole interceptor stack with authentication on.
- calls without a token that send headers and no body are refused at once and hold no slot;
  one connection cannot open more than its share of streams.
- an old connection is asked to go away (max connection age); its unary calls never fail.
- a token removed from the token file ends the streams it opened with UNAUTHENTICATED.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from helpers.kafka import free_port

from gateway.errors import details_of
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc as svc_grpc
from prgate.v1 import commands_pb2, query_service_pb2, query_service_pb2_grpc
from tests.e2e.stack import GatewayProcess
from tests.faults.conftest import FaultStack, close_stack, open_stack
from tests.faults.summary import Row

ADA, BOB, CAROL = (f"{name}-{uuid.uuid4().hex}" for name in ("ada", "bob", "carol"))
TOKENS = [
    {"principal": "ada", "token": ADA},
    {"principal": "bob", "token": BOB},
    {"principal": "carol", "token": CAROL},
]
# A Python/C++ client configured like a Go or Java one, but ten times as eager.
PINGING_EVERY_SECOND = [
    ("grpc.keepalive_time_ms", 1000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
SLOTS = 16  # PRGATE_MAX_CONCURRENT_RPCS of the authenticating gateway
STREAMS_PER_CONNECTION = 4


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def write_tokens(path: Path, entries: list[dict[str, str]]) -> None:
    staging = path.with_name(path.name + ".new")
    staging.write_text(json.dumps({"tokens": entries}))
    staging.chmod(0o600)
    staging.replace(path)


@dataclass
class Transport:
    stack: FaultStack
    tokens: Path
    gateways: dict[str, GatewayProcess] = field(default_factory=dict)

    def gateway(self, name: str, **env: str) -> GatewayProcess:
        """The gateway of one connection policy, started on first use."""
        if name not in self.gateways:
            self.gateways[name] = self.stack.gateway(name=name, **env)
        return self.gateways[name]

    def authenticating(self) -> GatewayProcess:
        return self.gateway(
            "auth",
            PRGATE_AUTH_TOKEN_FILE=str(self.tokens),
            PRGATE_AUTH_RELOAD_INTERVAL_S="0.2",
            PRGATE_MAX_CONCURRENT_RPCS=str(SLOTS),
            PRGATE_MAX_STREAMS_PER_CONNECTION=str(STREAMS_PER_CONNECTION),
        )


@pytest.fixture(scope="module")
def transport(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Transport]:
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:12]}.", partitions=3
    )
    ensure_topics(kafka)
    directory = Path(tmp_path_factory.mktemp("transport"))
    stack = open_stack(kafka, directory)
    tokens = directory / "tokens.json"
    write_tokens(tokens, TOKENS)
    try:
        stack.processor()
        yield Transport(stack, tokens)
    finally:
        close_stack(stack)


def open_pull_request(gateway: GatewayProcess, token: str = "") -> str:
    """A new pull request, already in the gateway's read model (COMPLETED answer)."""
    with grpc.insecure_channel(gateway.target) as channel:
        reply = svc_grpc.PullRequestCommandServiceStub(channel).OpenPullRequest(
            svc.OpenPullRequestRequest(
                command=commands_pb2.OpenPullRequest(
                    repository="acme/widgets",
                    title="Transport widget",
                    author="ada",
                    source_branch=f"feature/{uuid.uuid4().hex[:8]}",
                    target_branch="main",
                ),
                options=svc.CommandOptions(response_mode=svc.RESPONSE_MODE_COMPLETED),
            ),
            metadata=bearer(token) if token else None,
            timeout=30,
        )
    return str(reply.receipt.pull_request_id)


def change_title(
    gateway: GatewayProcess, pull_request_id: str, title: str, token: str = ""
) -> None:
    with grpc.insecure_channel(gateway.target) as channel:
        svc_grpc.PullRequestCommandServiceStub(channel).ChangePullRequestTitle(
            svc.ChangePullRequestTitleRequest(
                command=commands_pb2.ChangePullRequestTitle(
                    pull_request_id=pull_request_id, title=title, changed_by="ada"
                ),
                options=svc.CommandOptions(response_mode=svc.RESPONSE_MODE_COMPLETED),
            ),
            metadata=bearer(token) if token else None,
            timeout=30,
        )


def watch_request(pull_request_id: str) -> query_service_pb2.WatchPullRequestRequest:
    return query_service_pb2.WatchPullRequestRequest(pull_request_id=pull_request_id)


def status_of(exc: grpc.RpcError) -> tuple[grpc.StatusCode, dict[str, Any]]:
    status = rpc_status.from_call(cast(Any, exc))
    code: grpc.StatusCode = cast(Any, exc).code()
    return code, (dict(details_of(status)) if status is not None else {})


# -- keepalive ---------------------------------------------------------------------------------


def test_a_client_pinging_every_second_keeps_its_idle_watch(
    transport: Transport, fault_row: Row
) -> None:
    gateway = transport.gateway("keepalive")
    pull_request_id = open_pull_request(gateway)
    with grpc.insecure_channel(gateway.target, options=PINGING_EVERY_SECOND) as channel:
        watch = query_service_pb2_grpc.PullRequestQueryServiceStub(channel).WatchPullRequest(
            watch_request(pull_request_id), timeout=60
        )
        assert next(watch).pull_request.version == 1
        # Idle for 8 pings: the old policy closed the connection on the third (after 3 s).
        time.sleep(8.0)
        fault_row.fault("keepalive ping every 1s on an idle watch")
        change_title(gateway, pull_request_id, "Renamed while watched")
        update = next(watch)
        assert update.pull_request.version == 2
        assert update.pull_request.title == "Renamed while watched"
        watch.cancel()
    fault_row.note("8 s idle with a ping per second: the watch got the next version")


def test_pings_faster_than_the_policy_still_close_the_connection(
    transport: Transport, fault_row: Row
) -> None:
    """The policy is enforced: with a 5 s minimum, a client pinging every second is told
    GOAWAY too_many_pings after three strikes, and its stream ends UNAVAILABLE."""
    gateway = transport.gateway("strict", PRGATE_KEEPALIVE_MIN_PING_INTERVAL_S="5")
    pull_request_id = open_pull_request(gateway)
    started = time.monotonic()
    with grpc.insecure_channel(gateway.target, options=PINGING_EVERY_SECOND) as channel:
        watch = query_service_pb2_grpc.PullRequestQueryServiceStub(channel).WatchPullRequest(
            watch_request(pull_request_id), timeout=30
        )
        next(watch)
        with pytest.raises(grpc.RpcError) as ended:
            next(watch)
    fault_row.fault("keepalive ping every 1s against a 5s minimum")
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value
    fault_row.note(f"closed after {time.monotonic() - started:.1f}s: {ended.value.details()}")


WATCHER = """
import sys, grpc
from prgate.v1 import query_service_pb2, query_service_pb2_grpc
channel = grpc.insecure_channel(sys.argv[1])
stub = query_service_pb2_grpc.PullRequestQueryServiceStub(channel)
request = query_service_pb2.WatchPullRequestRequest(pull_request_id=sys.argv[2])
watch = stub.WatchPullRequest(request)
next(watch)
print("watching", flush=True)
sys.stdin.read()
"""


def watchers(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as page:
        text = page.read().decode()
    found = re.search(r"^prgate_gateway_read_model_watchers (\S+)$", text, re.M)
    assert found, text[:2000]
    return float(found.group(1))


def test_a_peer_that_stops_answering_pings_loses_its_streams(
    transport: Transport, fault_row: Row
) -> None:
    metrics_port = free_port()
    gateway = transport.gateway(
        "dead-peer",
        PRGATE_KEEPALIVE_TIME_S="1",
        PRGATE_KEEPALIVE_TIMEOUT_S="1",
        PRGATE_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
    )
    pull_request_id = open_pull_request(gateway)
    client = subprocess.Popen(
        [sys.executable, "-c", WATCHER, gateway.target, pull_request_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "watching"
        assert watchers(metrics_port) == 1
        client.send_signal(signal.SIGSTOP)  # its TCP stack still answers, its gRPC does not
        fault_row.fault("SIGSTOP a watching client")
        stopped = time.monotonic()
        while watchers(metrics_port) != 0:
            assert time.monotonic() - stopped < 20, "the frozen client's watch is still held"
            time.sleep(0.2)
        fault_row.note(f"frozen client's watch released after {time.monotonic() - stopped:.1f}s")
    finally:
        client.kill()
        client.wait(10)


# -- the interceptor stack and held calls ------------------------------------------------------


def test_health_watch_through_every_interceptor(transport: Transport, fault_row: Row) -> None:
    """Health/Watch is what grpc-go's healthCheckConfig calls: it used to answer UNKNOWN."""
    gateway = transport.authenticating()
    with grpc.insecure_channel(gateway.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service="prgate.v1.PullRequestQueryService"), timeout=10
        )
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
    fault_row.fault("Health/Watch with authentication on")


async def _never() -> AsyncIterator[bytes]:
    await asyncio.Event().wait()
    yield b""  # pragma: no cover - never reached


async def _ended(call: Any) -> tuple[grpc.StatusCode, dict[str, Any]]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return status_of(exc)
    return grpc.StatusCode.OK, {}


def test_calls_without_token_and_body_hold_no_slot(transport: Transport, fault_row: Row) -> None:
    gateway = transport.authenticating()
    pull_request_id = open_pull_request(gateway, ADA)
    get = query_service_pb2.GetPullRequestRequest(pull_request_id=pull_request_id)
    method = "/prgate.v1.PullRequestQueryService/GetPullRequest"

    async def scenario() -> None:
        refused = 0
        # Headers, no body, no token: many more than there are slots, on several connections
        # (a few at a time: grpc core resets calls queued beyond the slots before any
        # interceptor sees them).
        own_connection = [("grpc.use_local_subchannel_pool", 1)]
        channels = [
            grpc.aio.insecure_channel(gateway.target, options=own_connection) for _ in range(4)
        ]
        try:
            for wave in range(3 * SLOTS):
                channel = channels[wave % len(channels)]
                calls = [
                    channel.stream_unary(method)(_never(), metadata=meta)
                    for meta in ((), bearer("not-a-token-of-the-file"))
                ]
                for call in calls:
                    code, details = await _ended(call)
                    assert code == grpc.StatusCode.UNAUTHENTICATED
                    assert details["ErrorInfo"].reason in {"MISSING_TOKEN", "INVALID_TOKEN"}
                    refused += 1
            stub = query_service_pb2_grpc.PullRequestQueryServiceStub(channels[0])
            got = await stub.GetPullRequest(get, metadata=bearer(BOB), timeout=10)
            assert got.pull_request.pull_request_id == pull_request_id
        finally:
            for channel in channels:
                await channel.close()
        fault_row.note(f"{refused} calls without token and body refused; then served")

    asyncio.run(scenario())
    fault_row.fault("calls with headers only, no token")


def test_one_connection_gets_its_share_of_streams(transport: Transport, fault_row: Row) -> None:
    gateway = transport.authenticating()
    pull_request_id = open_pull_request(gateway, ADA)
    get = query_service_pb2.GetPullRequestRequest(pull_request_id=pull_request_id)

    async def scenario() -> None:
        # Channels to one target share one connection unless each has its own pool.
        own_connection = [("grpc.use_local_subchannel_pool", 1)]
        async with (
            grpc.aio.insecure_channel(gateway.target, options=own_connection) as greedy,
            grpc.aio.insecure_channel(gateway.target, options=own_connection) as other,
        ):
            stub = query_service_pb2_grpc.PullRequestQueryServiceStub(greedy)
            await stub.GetPullRequest(get, metadata=bearer(ADA), timeout=10)  # SETTINGS known
            held = [
                stub.WatchPullRequest(watch_request(pull_request_id), metadata=bearer(ADA))
                for _ in range(STREAMS_PER_CONNECTION)
            ]
            for call in held:
                await call.read()
            # The connection's limit is reached: its next call waits in the client...
            with pytest.raises(grpc.aio.AioRpcError) as queued:
                await stub.GetPullRequest(get, metadata=bearer(ADA), timeout=1.5)
            assert queued.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # ...while another connection is served at once.
            served = query_service_pb2_grpc.PullRequestQueryServiceStub(other)
            await served.GetPullRequest(get, metadata=bearer(ADA), timeout=10)
            for call in held:
                call.cancel()

    asyncio.run(scenario())
    fault_row.fault(f"{STREAMS_PER_CONNECTION + 1} streams on one connection")


def test_old_connections_are_asked_to_go_away(transport: Transport, fault_row: Row) -> None:
    """Max connection age: a stream outliving age + grace ends UNAVAILABLE (clients reopen
    it, possibly elsewhere); unary calls on the same channel keep succeeding throughout."""
    gateway = transport.gateway(
        "aging", PRGATE_MAX_CONNECTION_AGE_S="2", PRGATE_MAX_CONNECTION_AGE_GRACE_S="1"
    )
    pull_request_id = open_pull_request(gateway)
    get = query_service_pb2.GetPullRequestRequest(pull_request_id=pull_request_id)
    with grpc.insecure_channel(gateway.target) as channel:
        stub = query_service_pb2_grpc.PullRequestQueryServiceStub(channel)
        watch = stub.WatchPullRequest(watch_request(pull_request_id), timeout=30)
        next(watch)
        opened = time.monotonic()
        calls = 0
        while time.monotonic() - opened < 6.0:  # two connection lifetimes
            stub.GetPullRequest(get, timeout=5)
            calls += 1
            time.sleep(0.1)
        with pytest.raises(grpc.RpcError) as ended:
            next(watch)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value
    fault_row.fault("connections older than 2s")
    fault_row.note(f"{calls} unary calls across connection ages, all OK; old watch UNAVAILABLE")


def test_a_removed_token_ends_its_streams(transport: Transport, fault_row: Row) -> None:
    gateway = transport.authenticating()
    pull_request_id = open_pull_request(gateway, ADA)
    with grpc.insecure_channel(gateway.target) as channel:
        stub = query_service_pb2_grpc.PullRequestQueryServiceStub(channel)
        commands = svc_grpc.PullRequestCommandServiceStub(channel)
        carols = stub.WatchPullRequest(
            watch_request(pull_request_id), metadata=bearer(CAROL), timeout=30
        )
        waiting = commands.WatchCommand(
            svc.WatchCommandRequest(command_id=f"never-{uuid.uuid4().hex}"),
            metadata=bearer(CAROL),
            timeout=30,
        )
        adas = stub.WatchPullRequest(watch_request(pull_request_id), metadata=bearer(ADA))
        next(carols)
        next(adas)
        try:
            write_tokens(transport.tokens, TOKENS[:2])  # carol's token is gone
            fault_row.fault("token removed from the token file")
            removed = time.monotonic()
            for call in (carols, waiting):
                with pytest.raises(grpc.RpcError) as ended:
                    next(call)
                code, details = status_of(ended.value)
                assert code == grpc.StatusCode.UNAUTHENTICATED, ended.value
                assert details["ErrorInfo"].reason == "TOKEN_REVOKED"
            fault_row.note(f"revoked streams ended {time.monotonic() - removed:.1f}s after")
            # Ada's stream goes on.
            change_title(gateway, pull_request_id, "After the revocation", ADA)
            assert next(adas).pull_request.title == "After the revocation"
            adas.cancel()
        finally:
            write_tokens(transport.tokens, TOKENS)
