"""Servicer harness: the real servicers under grpcio-testing, with in-memory fakes behind them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import grpc
import grpc_testing
import pytest
from google.rpc import status_pb2

from gateway.command_service import CommandService
from gateway.errors import details_of
from gateway.query_service import QueryService
from gateway.settings import GatewaySettings
from prgate.v1 import command_service_pb2, commands_pb2, query_service_pb2
from tests.unit.gateway.aio_bridge import LoopThread, sync_servicer
from tests.unit.gateway.fakes import FakeProcessor, FakeResults, FakeSender, FakeView

COMMANDS = command_service_pb2.DESCRIPTOR.services_by_name["PullRequestCommandService"]
QUERIES = query_service_pb2.DESCRIPTOR.services_by_name["PullRequestQueryService"]


@dataclass
class Outcome:
    response: Any
    code: grpc.StatusCode
    message: str
    details: dict[str, Any]


def _decode(trailing: Any, code: grpc.StatusCode, message: str) -> dict[str, Any]:
    for key, value in trailing or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            assert status.code == code.value[0], "details status code must match the call's"
            assert status.message == message
            return dict(details_of(status))
    return {}


@dataclass
class Harness:
    loop: LoopThread
    server: Any
    view: FakeView
    results: FakeResults
    sender: FakeSender
    processor: FakeProcessor
    commands: CommandService | None = None

    def call(
        self, method: str, request: Any, *, timeout: float = 5.0, metadata: Any = ()
    ) -> Outcome:
        service = COMMANDS if method in COMMANDS.methods_by_name else QUERIES
        rpc = self.server.invoke_unary_unary(
            service.methods_by_name[method], metadata, request, timeout
        )
        response, trailing, code, message = rpc.termination()
        return Outcome(response, code, message, _decode(trailing, code, message))

    def open_stream(self, method: str, request: Any, *, timeout: float = 5.0) -> Any:
        service = COMMANDS if method in COMMANDS.methods_by_name else QUERIES
        return self.server.invoke_unary_stream(
            service.methods_by_name[method], (), request, timeout
        )

    def ended(self, rpc: Any) -> Outcome:
        trailing, code, message = rpc.termination()
        return Outcome(None, code, message, _decode(trailing, code, message))


def make_harness(**overrides: Any) -> Harness:
    loop = LoopThread()
    defaults: dict[str, Any] = {"unknown_command_wait_s": 0.3, "pending_wait_s": 1.0}
    settings = replace(GatewaySettings(), **(defaults | overrides))
    view, results, processor = FakeView(), FakeResults(settings.max_waiting), FakeProcessor()
    sender = FakeSender(results, processor)

    def build() -> tuple[CommandService, QueryService]:
        return (
            CommandService(
                settings=settings,
                results_topic="prgate.command-results",
                sender=sender,
                results=results,
                view=view,
            ),
            QueryService(view, settings),
        )

    commands, queries = loop.call(build)
    server = grpc_testing.server_from_dictionary(
        {
            COMMANDS: sync_servicer(commands, COMMANDS, loop),
            QUERIES: sync_servicer(queries, QUERIES, loop),
        },
        grpc_testing.strict_real_time(),
    )
    return Harness(loop, server, view, results, sender, processor, commands)


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = make_harness()
    yield h
    h.loop.close()


def open_request(**options: object) -> command_service_pb2.OpenPullRequestRequest:
    return command_service_pb2.OpenPullRequestRequest(
        command=commands_pb2.OpenPullRequest(
            repository="acme/widgets",
            title="Add a widget",
            description="",
            author="ada",
            source_branch="feature/widget",
            target_branch="main",
        ),
        options=command_service_pb2.CommandOptions(**options),  # type: ignore[arg-type]
    )


def open_pr(h: Harness) -> str:
    outcome = h.call("OpenPullRequest", open_request())
    assert outcome.code == grpc.StatusCode.OK, outcome.message
    pull_request_id: str = outcome.response.receipt.pull_request_id
    return pull_request_id
