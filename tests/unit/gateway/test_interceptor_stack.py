"""The gateway's whole interceptor stack (malformed bodies, bearer tokens, open streams) in a
real grpc.aio server, as ``gateway.server.new_server`` builds it, over the in-memory fakes.

Every kind of server-streaming handler must work through it: health ``Watch`` (a coroutine
that writes with ``context.write()``), the reflection stream (bidirectional, an async
generator) and our watches (async generators). Calls without a valid token are refused before
their request is read, streams end with a status when the gateway shuts down or their token is
revoked. tests/e2e/test_transport.py repeats the important cases against gateway processes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status

from gateway import auth
from gateway.auth_tokens import TokenStore
from gateway.command_service import CommandService
from gateway.errors import details_of
from gateway.lifecycle import COMMAND_SERVICE, QUERY_SERVICE, shutting_down
from gateway.query_service import QueryService
from gateway.reflection import HEALTH, SERVICE_NAMES, add_reflection
from gateway.security import build_security
from gateway.server import new_server
from gateway.settings import GatewaySettings
from gateway.streams import OpenStreams
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc as svc_grpc
from prgate.v1 import commands_pb2, query_service_pb2, query_service_pb2_grpc
from tests.unit.gateway.fakes import FakeProcessor, FakeResults, FakeSender, FakeView

ADA, BOB = "ada-token-0123456789", "bob-token-0123456789"
TOKENS = [{"principal": "ada", "token": ADA}, {"principal": "bob", "token": BOB}]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def write_tokens(path: Path, entries: list[dict[str, str]]) -> None:
    staging = path.with_name(path.name + ".new")
    staging.write_text(json.dumps({"tokens": entries}))
    staging.chmod(0o600)
    staging.replace(path)


@dataclass
class Served:
    channel: grpc.aio.Channel
    port: int
    health: health_aio.HealthServicer
    streams: OpenStreams
    view: FakeView
    sender: FakeSender
    tokens: TokenStore | None

    def commands(self) -> svc_grpc.PullRequestCommandServiceStub:
        return svc_grpc.PullRequestCommandServiceStub(self.channel)

    def queries(self) -> query_service_pb2_grpc.PullRequestQueryServiceStub:
        return query_service_pb2_grpc.PullRequestQueryServiceStub(self.channel)


@asynccontextmanager
async def served(settings: GatewaySettings) -> AsyncIterator[Served]:
    streams = OpenStreams(tag_of=auth.current_token_digest)
    security = build_security(settings, streams)
    server = new_server(settings, security, streams)
    view, results = FakeView(), FakeResults()
    sender = FakeSender(results, FakeProcessor())
    svc_grpc.add_PullRequestCommandServiceServicer_to_server(
        CommandService(
            settings=settings,
            results_topic="results",
            sender=sender,
            results=results,
            view=view,
            caller_of=security.caller_of,
        ),
        server,
    )
    query_service_pb2_grpc.add_PullRequestQueryServiceServicer_to_server(QueryService(view), server)
    health = health_aio.HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    add_reflection(server, (COMMAND_SERVICE, QUERY_SERVICE, HEALTH))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Served(channel, port, health, streams, view, sender, security.tokens)
    finally:
        await server.stop(None)


def run(
    settings: GatewaySettings, scenario: Callable[[Served], Awaitable[None]], timeout: float = 30
) -> None:
    async def main() -> None:
        async with served(settings) as s:
            await asyncio.wait_for(scenario(s), timeout)

    asyncio.run(main())


def with_tokens(tmp_path: Path, **changes: Any) -> GatewaySettings:
    path = tmp_path / "tokens.json"
    write_tokens(path, TOKENS)
    return replace(
        GatewaySettings(),
        auth_token_file=str(path),
        auth_reload_interval_s=0,
        unknown_command_wait_s=30.0,
        **changes,
    )


def status_of(exc: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, dict[str, Any]]:
    status = rpc_status.from_call(cast(Any, exc))
    return exc.code(), (dict(details_of(status)) if status is not None else {})


async def ended(call: Any) -> tuple[grpc.StatusCode, dict[str, Any]]:
    """Read ``call`` (a server stream) to its end; its status and details."""
    try:
        while await call.read() is not grpc.aio.EOF:
            pass
    except grpc.aio.AioRpcError as exc:
        return status_of(exc)
    return grpc.StatusCode.OK, {}


async def opened_pull_request(s: Served, token: str = ADA) -> str:
    reply = await s.commands().OpenPullRequest(
        svc.OpenPullRequestRequest(
            command=commands_pb2.OpenPullRequest(
                repository="acme/widgets",
                title="Add a widget",
                author="ada",
                source_branch="feature/widget",
                target_branch="main",
            )
        ),
        metadata=bearer(token),
    )
    return str(reply.receipt.pull_request_id)


# -- every streaming kind through every interceptor --------------------------------------------


@pytest.mark.parametrize("auth_on", [False, True], ids=["no-auth", "auth"])
def test_health_watch_works_through_the_interceptors(tmp_path: Path, auth_on: bool) -> None:
    """Health/Watch is a coroutine writing with context.write(): it used to answer UNKNOWN."""
    settings = with_tokens(tmp_path) if auth_on else GatewaySettings()

    async def scenario(s: Served) -> None:
        watch = health_pb2_grpc.HealthStub(s.channel).Watch(health_pb2.HealthCheckRequest())
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        await s.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        second = await watch.read()
        assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()

    run(settings, scenario)


def test_reflection_and_watches_work_through_the_interceptors(tmp_path: Path) -> None:
    async def scenario(s: Served) -> None:
        reflection = s.channel.stream_stream(
            f"/{SERVICE_NAMES[0]}/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        call = reflection(
            iter(
                [
                    reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="prgate.v1.PullRequestQueryService.ListPullRequests"
                    ),
                ]
            )
        )
        listed = await call.read()
        names = {one.name for one in listed.list_services_response.service}
        assert {COMMAND_SERVICE, QUERY_SERVICE, HEALTH, *SERVICE_NAMES} <= names
        found = await call.read()
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in found.file_descriptor_response.file_descriptor_proto
        ]
        assert files[0].name == "prgate/v1/query_service.proto"
        assert files[0].source_code_info.location, "comments (source info) were dropped"
        pull_request_id = await opened_pull_request(s)
        watch = s.queries().WatchPullRequest(
            query_service_pb2.WatchPullRequestRequest(pull_request_id=pull_request_id),
            metadata=bearer(BOB),
        )
        first = await watch.read()
        assert first.pull_request.pull_request_id == pull_request_id
        watch.cancel()

    run(with_tokens(tmp_path), scenario)


def test_malformed_bodies_are_still_refused_on_server_streams(tmp_path: Path) -> None:
    async def scenario(s: Served) -> None:
        raw = s.channel.unary_stream("/prgate.v1.PullRequestQueryService/WatchPullRequest")
        code, details = await ended(raw(b"\xff\xff\xff", metadata=bearer(ADA)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details["BadRequest"].field_violations[0].reason == "MALFORMED_REQUEST"

    run(with_tokens(tmp_path), scenario)


# -- calls without a token hold nothing ------------------------------------------------------


def test_calls_without_token_are_refused_before_their_body(tmp_path: Path) -> None:
    """Headers and no body, no token: refused at once, so they fill no concurrent-call slot."""
    slots = 4
    settings = with_tokens(tmp_path, max_concurrent_rpcs=slots)

    async def never() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""  # pragma: no cover - never reached

    async def scenario(s: Served) -> None:
        pull_request_id = await opened_pull_request(s)
        get = s.channel.stream_stream("/prgate.v1.PullRequestQueryService/GetPullRequest")
        request = query_service_pb2.GetPullRequestRequest(pull_request_id=pull_request_id)
        # Control: authenticated calls without a body do hold slots; beyond them, the limit.
        held = [get(never(), metadata=bearer(ADA)) for _ in range(slots)]
        await asyncio.sleep(0.3)
        with pytest.raises(grpc.aio.AioRpcError) as full:
            await s.queries().GetPullRequest(request, metadata=bearer(BOB))
        assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for call in held:
            call.cancel()
        await asyncio.sleep(0.3)
        # Many more calls without a valid token than there are slots (a few at a time: grpc
        # core resets calls queued beyond max_concurrent_rpcs before any handler sees them).
        for _wave in range(3 * slots):
            wave = [get(never(), metadata=meta) for meta in [(), bearer("no-such-token-at-all")]]
            for call in wave:
                code, details = await ended(call)
                assert code == grpc.StatusCode.UNAUTHENTICATED
                assert details["ErrorInfo"].reason in {"MISSING_TOKEN", "INVALID_TOKEN"}
        # No slot is held: an authenticated caller is served, not RESOURCE_EXHAUSTED.
        got = await s.queries().GetPullRequest(request, metadata=bearer(BOB))
        assert got.pull_request.pull_request_id == pull_request_id

    run(settings, scenario)


# -- ending streams from outside ---------------------------------------------------------------


def test_shutdown_ends_every_stream_with_unavailable_and_retry_info(tmp_path: Path) -> None:
    async def scenario(s: Served) -> None:
        pull_request_id = await opened_pull_request(s)
        watch = s.queries().WatchPullRequest(
            query_service_pb2.WatchPullRequestRequest(pull_request_id=pull_request_id)
        )
        await watch.read()
        health = health_pb2_grpc.HealthStub(s.channel).Watch(health_pb2.HealthCheckRequest())
        await health.read()
        waiting = s.commands().WatchCommand(svc.WatchCommandRequest(command_id="unknown-id"))
        for _ in range(500):  # the WatchCommand handler starts on its own
            if s.streams.count() == 3:
                break
            await asyncio.sleep(0.01)
        assert s.streams.end_all(shutting_down()) == 3
        for call in (watch, health, waiting):
            code, details = await ended(call)
            assert code == grpc.StatusCode.UNAVAILABLE
            assert details["ErrorInfo"].reason == "GATEWAY_SHUTTING_DOWN"
            assert details["RetryInfo"].retry_delay.ToNanoseconds() > 0
        # A stream that starts afterwards ends the same way at once.
        late = s.queries().WatchPullRequest(
            query_service_pb2.WatchPullRequestRequest(pull_request_id=pull_request_id)
        )
        code, _ = await ended(late)
        assert code == grpc.StatusCode.UNAVAILABLE
        assert s.streams.count() == 0

    run(GatewaySettings(), scenario)


def test_a_revoked_token_ends_the_streams_it_opened(tmp_path: Path) -> None:
    settings = with_tokens(tmp_path)

    async def scenario(s: Served) -> None:
        assert s.tokens is not None
        pull_request_id = await opened_pull_request(s)
        request = query_service_pb2.WatchPullRequestRequest(pull_request_id=pull_request_id)
        bobs = s.queries().WatchPullRequest(request, metadata=bearer(BOB))
        adas = s.queries().WatchPullRequest(request, metadata=bearer(ADA))
        await bobs.read()
        await adas.read()
        write_tokens(Path(settings.auth_token_file), [TOKENS[0]])  # bob's token is gone
        assert s.tokens.reload_if_changed()
        code, details = await ended(bobs)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert details["ErrorInfo"].reason == "TOKEN_REVOKED"
        # Ada's stream goes on and still gets updates.
        s.view.put(replace_title(s.view, pull_request_id))
        update = await adas.read()
        assert update.pull_request.title == "A new title"
        adas.cancel()

    run(settings, scenario)


def replace_title(view: FakeView, pull_request_id: str) -> Any:
    current = view.get(pull_request_id)
    assert current is not None
    newer = type(current)()
    newer.CopyFrom(current)
    newer.title = "A new title"
    newer.version += 1
    return newer
