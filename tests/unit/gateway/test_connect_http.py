"""The pure parts of the Connect adapter (gateway/connect_*.py): status codes, error
details as Connect details with their JSON form, undecodable bodies, the router's limits.
Real HTTP, auth and Kafka: tests/e2e/test_connect_http.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_json_codec
from connectrpc.errors import ConnectError
from google.protobuf import json_format
from google.rpc import code_pb2, error_details_pb2
from protobuf import message_to_json_value

from gateway import connect_bridge, connect_errors, connect_http, errors, refusals
from prgate.v1 import (
    command_service_connect,
    command_service_pb2_grpc,
    query_service_connect,
    query_service_pb2_grpc,
)
from prgate.v1 import command_service_pb2 as svc


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c != grpc.StatusCode.OK])
def test_every_grpc_status_has_the_connect_code_of_its_name(code: grpc.StatusCode) -> None:
    connect = connect_errors.connect_code(code)
    expected = "canceled" if code == grpc.StatusCode.CANCELLED else code.name.lower()
    assert connect.value == expected


def test_google_rpc_details_keep_their_bytes_and_get_their_json_form() -> None:
    violation = error_details_pb2.BadRequest.FieldViolation(
        field="command.title", description="title must not be empty", reason="EMPTY_TITLE"
    )
    refusal = refusals.error(
        code_pb2.INVALID_ARGUMENT,
        "bad",
        error_details_pb2.BadRequest(field_violations=[violation]),
        refusals.error_info("FIELD_RULES", field="command.title"),
        refusals.retry_after(1.5),
    )
    error = connect_errors.refusal_error(refusal)
    assert error.code == Code.INVALID_ARGUMENT and error.message == "bad"
    by_type = {detail.type_name: detail for detail in error.details}
    assert set(by_type) == {"google.rpc.BadRequest", "google.rpc.ErrorInfo", "google.rpc.RetryInfo"}
    for packed in refusal.status.details:
        detail = by_type[packed.type_url.rpartition("/")[2]]
        assert detail.message_bytes == packed.value
        debug = detail.value()
        assert debug is not None
        # The JSON form is protobuf's JSON mapping of the same message.
        original = refusals.details_of(refusal.status)[packed.type_url.rpartition(".")[2]]
        assert message_to_json_value(debug) == json_format.MessageToDict(original)


def test_an_unknown_detail_type_keeps_its_bytes_without_json() -> None:
    status = refusals.error(code_pb2.INTERNAL, "x", svc.CommandReceipt(command_id="c")).status
    [detail] = connect_errors.error_details(status)
    assert detail.type_name == "prgate.v1.CommandReceipt"
    assert svc.CommandReceipt.FromString(detail.message_bytes).command_id == "c"
    assert detail.value() is None


def test_an_abort_carries_its_trailing_details() -> None:
    refusal = errors.invalid_argument("command.title", "EMPTY_TITLE", "empty")
    aborted = connect_errors.Aborted(
        grpc.StatusCode.INVALID_ARGUMENT, "empty", errors.trailing_metadata(refusal)
    )
    error = connect_errors.connect_error(aborted)
    assert error.code == Code.INVALID_ARGUMENT
    assert "google.rpc.BadRequest" in [d.type_name for d in error.details]


@pytest.mark.parametrize("body", [b"{not json", b'{"command": 7}', b'{"options": {"x": [}'])
def test_an_undecodable_json_body_is_invalid_argument_with_bad_request(body: bytes) -> None:
    codec = connect_errors.StrictCodec(google_protobuf_json_codec())
    with pytest.raises(ConnectError) as refused:
        codec.decode(body, svc.OpenPullRequestRequest)
    assert refused.value.code == Code.INVALID_ARGUMENT
    assert "prgate.v1.OpenPullRequestRequest" in refused.value.message
    [detail] = [d for d in refused.value.details if d.type_name == "google.rpc.BadRequest"]
    bad = error_details_pb2.BadRequest.FromString(detail.message_bytes)
    assert bad.field_violations[0].reason == "MALFORMED_REQUEST"


def test_codecs_round_trip_valid_messages() -> None:
    request = svc.WatchCommandRequest(command_id="abc")
    for codec in connect_errors.CODECS:
        assert codec.decode(codec.encode(request), svc.WatchCommandRequest) == request


class _HeldApp:
    """An ASGI app standing in for a service: holds each call until released."""

    path = "/prgate.v1.PullRequestCommandService"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.both_in = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.entered += 1
        if self.entered == 2:
            self.both_in.set()
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def test_router_limits_calls_at_once_and_answers_unknown_services() -> None:
    async def scenario() -> list[tuple[int, dict[str, Any] | None]]:
        app = _HeldApp()
        router = connect_http._Router([app], max_calls=2)
        answers: list[tuple[int, dict[str, Any] | None]] = []

        async def call(path: str) -> None:
            sent: list[dict[str, Any]] = []

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            await router({"type": "http", "path": path}, receive, send)
            body = sent[1]["body"]
            answers.append((sent[0]["status"], json.loads(body) if body else None))

        held = [asyncio.create_task(call(f"{app.path}/OpenPullRequest")) for _ in range(2)]
        await app.both_in.wait()
        await call(f"{app.path}/OpenPullRequest")  # the third at once: refused
        await call("/prgate.v1.NoSuchService/X")
        app.release.set()
        await asyncio.gather(*held)
        await call(f"{app.path}/OpenPullRequest")  # room again
        return answers

    answers = asyncio.run(scenario())
    assert answers[0] == (429, {"code": "resource_exhausted", "message": answers[0][1]["message"]})  # type: ignore[index]
    assert answers[1][0] == 404 and answers[1][1] is not None
    assert answers[1][1]["code"] == "unimplemented"
    assert [status for status, _ in answers[2:]] == [200, 200, 200]


def test_every_generated_connect_method_reaches_its_grpc_handler() -> None:
    """The bridge answers each method name of the generated Connect services (a new RPC in
    the protos needs no change here) with the gRPC handler of the same RPC."""
    servicers = [
        (
            command_service_pb2_grpc.add_PullRequestCommandServiceServicer_to_server,
            command_service_pb2_grpc.PullRequestCommandServiceServicer(),
        ),
        (
            query_service_pb2_grpc.add_PullRequestQueryServiceServicer_to_server,
            query_service_pb2_grpc.PullRequestQueryServiceServicer(),
        ),
    ]
    bridge = connect_bridge.GrpcBridge(servicers, interceptors=())
    names = [
        name
        for protocol in (
            command_service_connect.PullRequestCommandService,
            query_service_connect.PullRequestQueryService,
        )
        for name in vars(protocol)
        if not name.startswith("_")
    ]
    assert {"open_pull_request", "watch_command", "watch_pull_request"} <= set(names)
    for name in names:
        assert callable(getattr(bridge, name)), name
    with pytest.raises(AttributeError):
        bridge.no_such_method  # noqa: B018 - the attribute access is the test


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (200, b"{}", grpc.StatusCode.OK),
        (200, b"\x02\x00\x00\x00\x02{}", grpc.StatusCode.OK),
        (200, b'\x02\x00\x00\x00\x2a{"error": {"code": "resource_exhausted"}}',
         grpc.StatusCode.RESOURCE_EXHAUSTED),
        (400, b'{"code": "invalid_argument", "message": "x"}', grpc.StatusCode.INVALID_ARGUMENT),
        (408, b'{"code": "canceled"}', grpc.StatusCode.CANCELLED),
        (415, b"", grpc.StatusCode.UNKNOWN),
        (404, b"", grpc.StatusCode.UNIMPLEMENTED),
        (400, b"not json", grpc.StatusCode.INTERNAL),
    ],
)  # fmt: skip
def test_the_code_of_an_answer_the_library_gave(
    status: int, body: bytes, code: grpc.StatusCode
) -> None:
    assert connect_errors.connect_answer_code(status, body) == code
