"""A refusal that echoes huge client input still reaches the client as itself: its status is
bounded (gateway.refusals.bounded) before it becomes trailers, which gRPC clients refuse past
their metadata limit with RESOURCE_EXHAUSTED ("received metadata size exceeds hard limit").
Over a real grpc.aio server, with grpc_status's reader, for both ways a call ends (refuse and
abort)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import grpc
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway import auth, errors
from gateway.command_service import CommandService
from gateway.errors import details_of
from gateway.refusals import (
    MAX_DETAIL_CHARS,
    MAX_MESSAGE_BYTES,
    MAX_STATUS_BYTES,
    bounded,
    error,
    error_info,
    from_violations,
    retry_after,
)
from gateway.security import build_security
from gateway.server import new_server
from gateway.settings import GatewaySettings
from gateway.streams import OpenStreams
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc as svc_grpc
from prgate.v1 import commands_pb2, outcome_pb2
from tests.unit.gateway.fakes import FakeProcessor, FakeResults, FakeSender, FakeView
from tests.unit.gateway.test_refusals_over_grpc import REFUSALS, _ended

HUGE = "é" * 60_000  # 120,000 bytes: within the request size limit, far past the trailers'


def test_a_small_status_is_sent_as_it_is() -> None:
    for refusal in REFUSALS.values():
        assert bounded(refusal.status) is refusal.status


def test_a_huge_status_is_cut_keeping_its_code_types_and_error_info() -> None:
    violations = [
        outcome_pb2.Violation(
            kind=outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT,
            reason=f"R{i}",
            field=f"f{i}",
            description=HUGE[:150],
        )
        for i in range(100)
    ]
    refusal = from_violations(violations, command_id=HUGE, pull_request_id="pr-1")
    cut = bounded(refusal.status)
    assert cut.code == code_pb2.INVALID_ARGUMENT
    assert len(cut.message.encode()) <= MAX_MESSAGE_BYTES and cut.message.endswith("…")
    assert cut.ByteSize() <= MAX_STATUS_BYTES
    # A hundred cut violations still weigh too much: ErrorInfo stays, BadRequest goes.
    details = details_of(cut)
    assert set(details) == {"ErrorInfo"}
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "R0" and info.metadata["pull_request_id"] == "pr-1"
    assert len(info.metadata["command_id"]) == MAX_DETAIL_CHARS
    # One huge string: cut, every detail kept.
    big = error(code_pb2.UNAVAILABLE, "later", error_info("X", id=HUGE), retry_after(2))
    one = bounded(big.status)
    assert set(details_of(one)) == {"ErrorInfo", "RetryInfo"}
    assert one.message == "later"


def _trailer_bytes(status: status_pb2.Status) -> int:
    """What ``status`` weighs as gRPC trailers at most: grpc-message percent-encoded (every
    byte outside printable ASCII, and "%", as 3) plus grpc-status-details-bin in base64."""
    message = sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in status.message.encode())
    return message + len(base64.b64encode(status.SerializeToString()))


def test_bounded_statuses_stay_under_the_clients_soft_metadata_limit() -> None:
    """gRPC clients may refuse trailers past 8 KiB (at random up to the 16 KiB hard limit):
    bounded, the worst inputs (2- and 4-byte characters everywhere) stay well under it."""
    for char in ("é", "😀", "%", "a"):
        huge = char * 60_000
        statuses = [
            error(code_pb2.NOT_FOUND, huge, error_info("Y", id=huge)),
            error(
                code_pb2.UNAVAILABLE, huge, error_info(huge, **{huge[:300]: huge}), retry_after(2)
            ),
            error(
                code_pb2.INVALID_ARGUMENT,
                huge,
                error_info("Z", **{f"{char * 10}{i}": huge for i in range(200)}),
            ),
            from_violations(
                [
                    outcome_pb2.Violation(
                        kind=outcome_pb2.VIOLATION_KIND_INVALID_ARGUMENT,
                        reason=huge,
                        field=huge,
                        description=huge,
                    )
                    for _ in range(50)
                ],
                command_id=huge,
                pull_request_id=huge,
            ),
        ]
        for refusal in statuses:
            cut = bounded(refusal.status)
            assert cut.code == refusal.status.code
            assert _trailer_bytes(cut) <= 6 * 1024, (char, _trailer_bytes(cut))


def test_refusals_echoing_huge_input_reach_the_client_with_their_code_and_details() -> None:
    settings = GatewaySettings()
    streams = OpenStreams(tag_of=auth.current_token_digest)

    async def by_abort(request: bytes, context: Any) -> bytes:
        await errors.abort(context, error(code_pb2.NOT_FOUND, HUGE, error_info("Y", id=HUGE)))

    async def main() -> list[grpc.aio.AioRpcError]:
        server = new_server(settings, build_security(settings, streams), streams, [])
        results = FakeResults()
        servicer = CommandService(
            settings=settings,
            results_topic="results",
            sender=FakeSender(results, FakeProcessor()),
            results=results,
            view=FakeView(),
        )
        svc_grpc.add_PullRequestCommandServiceServicer_to_server(servicer, server)
        handlers = {"Abort": grpc.unary_unary_rpc_method_handler(by_abort)}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", handlers),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = svc_grpc.PullRequestCommandServiceStub(channel)
                merge = svc.MergePullRequestRequest(
                    command=commands_pb2.MergePullRequest(pull_request_id=HUGE, merged_by_user=HUGE)
                )
                opened = svc.OpenPullRequestRequest(
                    command=commands_pb2.OpenPullRequest(
                        repository=HUGE,
                        title=HUGE,
                        author=HUGE,
                        source_branch=HUGE,
                        target_branch=HUGE,
                        description=HUGE,
                    )
                )
                aborted = channel.unary_unary("/t.T/Abort")
                return [
                    await _ended(lambda: stub.MergePullRequest(merge)),
                    await _ended(lambda: stub.OpenPullRequest(opened)),
                    await _ended(lambda: aborted(b"")),
                ]
        finally:
            await server.stop(None)

    merge, opened, aborted = asyncio.run(main())
    for ended in (merge, opened):
        assert ended.code() == grpc.StatusCode.INVALID_ARGUMENT, ended.details()
        status = rpc_status.from_call(ended)  # type: ignore[arg-type]
        assert status is not None and status.code == code_pb2.INVALID_ARGUMENT
        details = details_of(status)
        assert "BadRequest" in details and "ErrorInfo" in details
        assert status.ByteSize() <= MAX_STATUS_BYTES
    assert aborted.code() == grpc.StatusCode.NOT_FOUND
    status = rpc_status.from_call(aborted)  # type: ignore[arg-type]
    assert status is not None and details_of(status)["ErrorInfo"].reason == "Y"  # type: ignore[attr-defined]
