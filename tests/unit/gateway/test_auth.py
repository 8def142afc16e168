"""Authentication and authorization: bearer metadata, actor rules, and the interceptor in a
real grpc.aio server (grpcio-testing does not run interceptors) over the in-memory fakes.

The end-to-end tests (tests/e2e/test_security.py) repeat the important cases against real
gateway processes with TLS.
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
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from gateway import auth
from gateway.auth_tokens import Principal, TokenStore
from gateway.command_service import CommandService
from gateway.errors import GatewayError, details_of
from gateway.query_service import QueryService
from gateway.settings import GatewaySettings
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc as svc_grpc
from prgate.v1 import commands_pb2, query_service_pb2, query_service_pb2_grpc
from tests.unit.gateway.fakes import FakeProcessor, FakeResults, FakeSender, FakeView

ADA, BOB, OPS, BOT = (f"{name}-token-0123456789" for name in ("ada", "bob", "ops", "bot"))
TOKENS = {
    "tokens": [
        {"principal": "ada", "token": ADA},
        {"principal": "bob", "token": BOB},
        {"principal": "ops", "token": OPS, "roles": ["admin"]},
        {"principal": "merge-bot", "token": BOT, "roles": ["act-as-any"]},
    ]
}
PR = "pr-1"
ADA_P, OPS_P, BOT_P = (
    Principal("ada"),
    Principal("ops", frozenset({"admin"})),
    Principal("merge-bot", frozenset({"act-as-any"})),
)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


# -- bearer metadata -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ((), "MISSING_TOKEN"),
        ((("x-other", "1"),), "MISSING_TOKEN"),
        ((("authorization", f"Basic {ADA}"),), "MALFORMED_AUTHORIZATION"),
        ((("authorization", "Bearer "),), "MALFORMED_AUTHORIZATION"),
        ((("authorization", f"Bearer {ADA}"), ("authorization", f"Bearer {BOB}")), "MALFORMED"),
    ],
)
def test_bad_authorization_metadata_is_unauthenticated(
    metadata: tuple[tuple[str, str], ...], reason: str
) -> None:
    with pytest.raises(GatewayError) as caught:
        auth.bearer_token(metadata)
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    info: Any = details_of(caught.value.status)["ErrorInfo"]
    assert info.reason.startswith(reason)
    assert ADA not in str(caught.value) and ADA not in str(caught.value.status)


def test_bearer_scheme_is_case_insensitive_and_bytes_are_accepted() -> None:
    assert auth.bearer_token((("authorization", f"bearer {ADA}"),)) == ADA
    assert auth.bearer_token((("Authorization", f"BEARER  {ADA} ".encode()),)) == ADA


# -- authorization of actor fields -------------------------------------------------------------


def requests_acting_as(user: str) -> list[Any]:
    """One request of every command RPC with an actor field, acting as ``user``."""
    return [
        svc.OpenPullRequestRequest(command=commands_pb2.OpenPullRequest(author=user)),
        svc.ChangePullRequestTitleRequest(
            command=commands_pb2.ChangePullRequestTitle(pull_request_id=PR, changed_by=user)
        ),
        svc.ApprovePullRequestRequest(
            command=commands_pb2.ApprovePullRequest(pull_request_id=PR, reviewer=user)
        ),
        svc.MergePullRequestRequest(
            command=commands_pb2.MergePullRequest(pull_request_id=PR, merged_by_user=user)
        ),
        svc.ClosePullRequestRequest(
            command=commands_pb2.ClosePullRequest(pull_request_id=PR, actor=user)
        ),
        svc.ReopenPullRequestRequest(
            command=commands_pb2.ReopenPullRequest(pull_request_id=PR, actor=user)
        ),
        svc.RevertPullRequestRequest(
            command=commands_pb2.RevertPullRequest(pull_request_id=PR, actor=user)
        ),
    ]


def test_each_actor_field_must_be_the_caller() -> None:
    for request in requests_acting_as("ada"):
        auth.authorize(ADA_P, request)  # acting as oneself: allowed
    fields = []
    for request in requests_acting_as("bob") + requests_acting_as(""):
        with pytest.raises(GatewayError) as caught:
            auth.authorize(ADA_P, request)
        assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
        info: Any = details_of(caught.value.status)["ErrorInfo"]
        assert info.reason == "ACTOR_NOT_CALLER"
        assert info.metadata["principal"] == "ada"
        fields.append(info.metadata["field"])
    assert set(fields) == {f"command.{name}" for name in auth.ACTOR_FIELDS}


def test_act_as_any_and_admin_may_act_for_others() -> None:
    for principal in (OPS_P, BOT_P):
        for request in requests_acting_as("bob"):
            auth.authorize(principal, request)


def test_requests_without_actor_need_only_authentication() -> None:
    for request in (
        svc.WatchCommandRequest(command_id="c1"),
        query_service_pb2.GetPullRequestRequest(pull_request_id=PR),
        query_service_pb2.ListPullRequestsRequest(),
    ):
        auth.authorize(ADA_P, request)


def test_check_results_need_the_checks_or_admin_role() -> None:
    """Whoever records check results decides what can merge: not any authenticated user."""
    check = svc.RecordCheckResultRequest(
        command=commands_pb2.RecordCheckResult(pull_request_id=PR, check_name="ci")
    )
    with pytest.raises(GatewayError) as denied:
        auth.authorize(ADA_P, check)
    assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
    info = details_of(denied.value.status)["ErrorInfo"]
    assert info.reason == "ROLE_REQUIRED"  # type: ignore[attr-defined]
    for roles in ({"checks"}, {"admin"}):
        auth.authorize(Principal("ci-bot", frozenset(roles)), check)
    with pytest.raises(GatewayError):
        auth.authorize(Principal("relay", frozenset({"act-as-any"})), check)


def test_caller_of_refuses_a_call_without_principal() -> None:
    with pytest.raises(RuntimeError):
        auth.caller_of(None)


# -- the interceptor in a real server ----------------------------------------------------------


@dataclass
class Served:
    channel: grpc.aio.Channel
    sender: FakeSender
    view: FakeView
    tokens: TokenStore

    def commands(self) -> svc_grpc.PullRequestCommandServiceStub:
        return svc_grpc.PullRequestCommandServiceStub(self.channel)

    def queries(self) -> query_service_pb2_grpc.PullRequestQueryServiceStub:
        return query_service_pb2_grpc.PullRequestQueryServiceStub(self.channel)


@asynccontextmanager
async def served(tokens: TokenStore) -> AsyncIterator[Served]:
    settings = replace(GatewaySettings(), unknown_command_wait_s=0.2, pending_wait_s=0.5)
    view, results, processor = FakeView(), FakeResults(), FakeProcessor()
    sender = FakeSender(results, processor)
    server = grpc.aio.server(interceptors=[auth.AuthInterceptor(tokens)])
    svc_grpc.add_PullRequestCommandServiceServicer_to_server(
        CommandService(
            settings=settings,
            results_topic="results",
            sender=sender,
            results=results,
            view=view,
            caller_of=auth.caller_of,
        ),
        server,
    )
    query_service_pb2_grpc.add_PullRequestQueryServiceServicer_to_server(QueryService(view), server)
    health = health_aio.HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Served(channel, sender, view, tokens)
    finally:
        await server.stop(None)


def run(tmp_path: Path, scenario: Callable[[Served], Awaitable[None]]) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(TOKENS))
    path.chmod(0o600)
    tokens = TokenStore(path, check_interval_s=0)

    async def main() -> None:
        async with served(tokens) as s:
            await asyncio.wait_for(scenario(s), 30)

    asyncio.run(main())


async def refused(call: Awaitable[Any]) -> tuple[grpc.StatusCode, dict[str, Any]]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        status = rpc_status.from_call(cast(Any, exc))
        details = dict(details_of(status)) if status is not None else {}
        return exc.code(), details
    raise AssertionError("the call succeeded")


def open_as(author: str, key: str = "") -> svc.OpenPullRequestRequest:
    return svc.OpenPullRequestRequest(
        command=commands_pb2.OpenPullRequest(
            repository="acme/widgets",
            title="Add a widget",
            author=author,
            source_branch="feature/widget",
            target_branch="main",
        ),
        options=svc.CommandOptions(idempotency_key=key),
    )


def test_calls_without_valid_token_are_unauthenticated_with_details(tmp_path: Path) -> None:
    async def scenario(s: Served) -> None:
        for metadata in ((), bearer("not-a-valid-token-at-all"), (("authorization", ADA),)):
            code, details = await refused(
                s.commands().OpenPullRequest(open_as("ada"), metadata=metadata)
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED
            assert details["ErrorInfo"].domain == "prgate.v1"
            code, _ = await refused(
                s.queries().GetPullRequest(
                    query_service_pb2.GetPullRequestRequest(pull_request_id=PR), metadata=metadata
                )
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED
            stream = s.commands().WatchCommand(
                svc.WatchCommandRequest(command_id="c1"), metadata=metadata
            )
            code, _ = await refused(stream.read())
            assert code == grpc.StatusCode.UNAUTHENTICATED
        assert s.sender.sent == []

    run(tmp_path, scenario)


def test_health_needs_no_token(tmp_path: Path) -> None:
    async def scenario(s: Served) -> None:
        health = health_pb2_grpc.HealthStub(s.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    run(tmp_path, scenario)


def test_principal_becomes_envelope_caller_and_scopes_idempotency(tmp_path: Path) -> None:
    async def scenario(s: Served) -> None:
        mine = await s.commands().OpenPullRequest(open_as("ada", "k1"), metadata=bearer(ADA))
        # The admin opens "the same" command for ada with the same key: another caller's key.
        admins = await s.commands().OpenPullRequest(open_as("ada", "k1"), metadata=bearer(OPS))
        assert mine.receipt.command_id != admins.receipt.command_id
        again = await s.commands().OpenPullRequest(open_as("ada", "k1"), metadata=bearer(ADA))
        assert again.receipt.command_id == mine.receipt.command_id
        assert [e.caller for e in s.sender.sent] == ["ada", "ops"]

    run(tmp_path, scenario)


def test_acting_for_someone_else_is_permission_denied(tmp_path: Path) -> None:
    async def scenario(s: Served) -> None:
        code, details = await refused(
            s.commands().OpenPullRequest(open_as("bob"), metadata=bearer(ADA))
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert details["ErrorInfo"].metadata["field"] == "command.author"
        assert s.sender.sent == []
        opened = await s.commands().OpenPullRequest(open_as("bob"), metadata=bearer(BOT))
        approve = svc.ApprovePullRequestRequest(
            command=commands_pb2.ApprovePullRequest(
                pull_request_id=opened.receipt.pull_request_id, reviewer="ada"
            )
        )
        code, _ = await refused(s.commands().ApprovePullRequest(approve, metadata=bearer(BOB)))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        approved = await s.commands().ApprovePullRequest(approve, metadata=bearer(ADA))
        assert approved.receipt.result.version == 2
        assert [e.caller for e in s.sender.sent] == ["merge-bot", "ada"]

    run(tmp_path, scenario)


def test_any_valid_token_may_query_and_watch(tmp_path: Path) -> None:
    async def scenario(s: Served) -> None:
        opened = await s.commands().OpenPullRequest(open_as("ada"), metadata=bearer(ADA))
        got = await s.queries().GetPullRequest(
            query_service_pb2.GetPullRequestRequest(pull_request_id=opened.receipt.pull_request_id),
            metadata=bearer(BOB),
        )
        assert got.pull_request.author == "ada"
        stream = s.commands().WatchCommand(
            svc.WatchCommandRequest(command_id=opened.receipt.command_id), metadata=bearer(BOB)
        )
        states = [item.receipt.state async for item in stream]
        assert len(states) == 2

    run(tmp_path, scenario)
