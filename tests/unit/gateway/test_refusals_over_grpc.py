"""A refusal over a real grpc.aio server: ended without raising (``errors.refuse``), the client
gets exactly what ``context.abort`` gives it (code, message, ``grpc-status-details-bin``), and
the interceptors that watch every call count it with its code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.rpc import code_pb2, status_pb2
from prometheus_client import CollectorRegistry

from gateway import auth, errors
from gateway.command_service import CommandService
from gateway.errors import details_of
from gateway.refusals import Refusal, error, error_info, from_violations, retry_after
from gateway.rpc_metrics import GrpcServerMetrics
from gateway.security import build_security
from gateway.server import new_server
from gateway.settings import GatewaySettings
from gateway.streams import OpenStreams
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc as svc_grpc
from prgate.v1 import commands_pb2, outcome_pb2
from tests.unit.gateway.fakes import FakeProcessor, FakeResults, FakeSender, FakeView

DETAILS_KEY = "grpc-status-details-bin"
REFUSALS = {
    "with_violations": from_violations(
        [
            outcome_pb2.Violation(
                kind=outcome_pb2.VIOLATION_KIND_FAILED_PRECONDITION,
                reason="NOT_APPROVED",
                description="needs 1 approval — ünïcode too",
            )
        ],
        command_id="c-1",
        pull_request_id="pr-1",
    ),
    "retry": error(code_pb2.UNAVAILABLE, "later", error_info("X"), retry_after(1.5)),
}


def _ended(call: Callable[[], Awaitable[Any]]) -> Awaitable[grpc.aio.AioRpcError]:
    async def run() -> grpc.aio.AioRpcError:
        try:
            await call()
        except grpc.aio.AioRpcError as exc:
            return exc
        raise AssertionError("the call was not refused")

    return run()


def test_refuse_gives_the_client_exactly_what_abort_gives() -> None:
    async def by_abort(request: bytes, context: Any) -> bytes:
        await errors.abort(context, REFUSALS[request.decode()])

    async def by_refuse(request: bytes, context: Any) -> bytes | None:
        errors.refuse(context, REFUSALS[request.decode()])
        return None

    async def main() -> None:
        server = grpc.aio.server()
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(behavior)
            for name, behavior in (("Abort", by_abort), ("Refuse", by_refuse))
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                for name, refusal in REFUSALS.items():
                    ended = {}
                    for method in ("Abort", "Refuse"):
                        call = channel.unary_unary(f"/t.T/{method}")
                        ended[method] = await _ended(lambda c=call, n=name: c(n.encode()))
                    aborted, refused = ended["Abort"], ended["Refuse"]
                    assert refused.code() == aborted.code() == errors.grpc_code(refusal.status.code)
                    assert refused.details() == aborted.details() == refusal.status.message
                    assert tuple(refused.trailing_metadata()) == tuple(aborted.trailing_metadata())
                    sent = dict(refused.trailing_metadata())[DETAILS_KEY]
                    assert status_pb2.Status.FromString(sent) == refusal.status
        finally:
            await server.stop(None)

    asyncio.run(main())


def test_a_refused_command_ends_with_its_details_and_is_counted_with_its_code() -> None:
    registry = CollectorRegistry()
    settings = GatewaySettings()
    streams = OpenStreams(tag_of=auth.current_token_digest)
    security = build_security(settings, streams)

    async def main() -> None:
        server = new_server(settings, security, streams, [GrpcServerMetrics(registry)])
        view, results = FakeView(), FakeResults()
        servicer = CommandService(
            settings=settings,
            results_topic="results",
            sender=FakeSender(results, FakeProcessor()),
            results=results,
            view=view,
        )
        svc_grpc.add_PullRequestCommandServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = svc_grpc.PullRequestCommandServiceStub(channel)
                opened = await stub.OpenPullRequest(
                    svc.OpenPullRequestRequest(
                        command=commands_pb2.OpenPullRequest(
                            repository="acme/widgets",
                            title="Add a widget",
                            author="ada",
                            source_branch="feature/widget",
                            target_branch="main",
                        )
                    )
                )
                pull_request_id = opened.receipt.pull_request_id
                merge = svc.MergePullRequestRequest(
                    command=commands_pb2.MergePullRequest(
                        pull_request_id=pull_request_id, merged_by_user="bob"
                    )
                )
                refused = await _ended(lambda: stub.MergePullRequest(merge))
        finally:
            await server.stop(None)
        assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        status = status_pb2.Status.FromString(dict(refused.trailing_metadata())[DETAILS_KEY])
        assert (status.code, status.message) == (code_pb2.FAILED_PRECONDITION, refused.details())
        details = details_of(status)
        assert details["ErrorInfo"].metadata["pull_request_id"] == pull_request_id  # type: ignore[attr-defined]
        assert "PreconditionFailure" in details
        labels = {
            "grpc_type": "unary",
            "grpc_service": "prgate.v1.PullRequestCommandService",
            "grpc_method": "MergePullRequest",
        }
        assert (
            registry.get_sample_value(
                "grpc_server_handled_total", labels | {"grpc_code": "FailedPrecondition"}
            )
            == 1.0
        )
        assert (
            registry.get_sample_value("grpc_server_handled_total", labels | {"grpc_code": "OK"})
            is None
        )

    asyncio.run(main())


def test_refusal_keeps_its_error_info_without_unpacking() -> None:
    refusal = REFUSALS["with_violations"]
    assert refusal.info is not None
    assert refusal.ids() == {"command_id": "c-1", "pull_request_id": "pr-1"}
    # A refusal made from a status alone finds the same ErrorInfo in its details.
    assert Refusal(refusal.status).info == refusal.info
    assert Refusal(status_pb2.Status(code=code_pb2.INTERNAL, message="x")).info is None
