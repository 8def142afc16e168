"""The API over HTTP/JSON (Connect, gateway/connect_http.py) against a real gateway process and
a real broker: the README's curl lines as written, curl for commands, errors, refusals and
the server-streaming watches, shutdown, and the connectrpc library's own Python client. The
port's security and process behaviour (auth, mTLS, workers, a taken port, a client that goes
away): test_connect_http_port.py; the curl helpers: connect_http_calls.py."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.rpc import error_details_pb2
from helpers.kafka import free_port

from prgate.v1 import command_service_connect, commands_pb2, query_service_connect
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import query_service_pb2 as q
from tests.e2e.connect_http_calls import (
    END_STREAM,
    OPEN,
    WATCH_COMMAND,
    curl,
    debug_of,
    frames,
    open_body,
    post_json,
    post_raw,
    stream_json,
)
from tests.e2e.stack import GatewayProcess, Stack

ROOT = Path(__file__).resolve().parents[2]
README_HTTP = "http://127.0.0.1:8080"


@pytest.fixture
def http_gateway(stack: Stack) -> tuple[GatewayProcess, str]:
    """One processor and a gateway serving Connect on a second port; (gateway, base URL)."""
    stack.processor()
    http_port = free_port()
    gateway = stack.gateway(free_port(), PRGATE_HTTP_LISTEN=f"127.0.0.1:{http_port}")
    return gateway, f"http://127.0.0.1:{http_port}"


def readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- connect-examples:begin -->\n```sh\n(.*?)```\n<!-- connect-examples:end -->",
        text,
        re.S,
    )
    assert block, "README lost its Connect examples block"
    lines = block.group(1).strip().splitlines()
    assert len(lines) == 3, lines
    return lines


def test_readme_curl_examples_run_as_written(http_gateway: tuple[GatewayProcess, str]) -> None:
    _gateway, base = http_gateway
    opened, refused, watch = (line.replace(README_HTTP, base) for line in readme_examples())
    receipt = json.loads(
        subprocess.run(
            ["bash", "-c", opened], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )["receipt"]
    assert receipt["state"] == "COMMAND_STATE_SUCCEEDED", receipt
    pr = receipt["pullRequestId"]
    error = json.loads(
        subprocess.run(
            ["bash", "-c", refused], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )
    assert error["code"] == "invalid_argument", error
    fields = {v["field"] for v in debug_of(error, "google.rpc.BadRequest")["fieldViolations"]}
    assert "command.title" in fields, error
    # The watch never ends by itself: read until the pull request's snapshot frame arrives.
    with subprocess.Popen(
        ["bash", "-c", watch.replace("$PR", pr)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # bash and curl in one process group, ended together
    ) as process:
        try:
            assert process.stdout is not None
            header = process.stdout.read(5)
            assert len(header) == 5, process.stderr.read() if process.stderr else header
            flags, length = struct.unpack(">BI", header)
            first = json.loads(process.stdout.read(length))
        finally:
            os.killpg(process.pid, signal.SIGTERM)
    assert flags == 0, first
    assert json.dumps(first).count(pr) >= 1, first
    assert "PULL_REQUEST_STATUS_OPEN" in json.dumps(first), first


def test_curl_command_error_and_watch_command(http_gateway: tuple[GatewayProcess, str]) -> None:
    gateway, base = http_gateway
    body = open_body()
    body["command"]["sourceBranch"] = "feature/curl"
    status, answer = post_json(base, OPEN, body, "idempotency-key: curl-open-1")
    assert status == 200, answer
    receipt = answer["receipt"]
    assert receipt["state"] == "COMMAND_STATE_SUCCEEDED", receipt
    # The same idempotency key over gRPC answers the same command: one admission table.
    again = gateway.commands().OpenPullRequest(
        svc.OpenPullRequestRequest(
            command=commands_pb2.OpenPullRequest(
                repository="acme/widgets",
                title="Add a widget",
                author="ada",
                source_branch="feature/curl",
                target_branch="main",
            )
        ),
        metadata=[("idempotency-key", "curl-open-1")],
        timeout=30,
    )
    assert again.receipt.command_id == receipt["commandId"]
    # A refusal: Connect's code and HTTP status, the google.rpc details as JSON.
    bad = open_body(title="")
    bad["command"]["sourceBranch"] = bad["command"]["targetBranch"] = "a"
    status, error = post_json(base, OPEN, bad)
    assert status == 400, error
    assert error["code"] == "invalid_argument", error
    violations = debug_of(error, "google.rpc.BadRequest")["fieldViolations"]
    assert {"command.title", "command.target_branch"} <= {v["field"] for v in violations}, error
    # WatchCommand as a Connect server stream: ACCEPTED, SUCCEEDED, then the end frame.
    watched = stream_json(base, WATCH_COMMAND, {"commandId": receipt["commandId"]})
    states = [message["receipt"]["state"] for flags, message in watched if flags == 0]
    assert states == ["COMMAND_STATE_ACCEPTED", "COMMAND_STATE_SUCCEEDED"], watched
    assert watched[-1] == (END_STREAM, {}), watched
    # A body that is not the request message: INVALID_ARGUMENT with BadRequest, as over gRPC.
    for body, content_type in (
        ("{not json", "application/json"),
        ("\x0a\xff", "application/proto"),
    ):
        status, error = post_raw(base, OPEN, body, content_type)
        assert (status, error["code"]) == (400, "invalid_argument"), error
        [violation] = debug_of(error, "google.rpc.BadRequest")["fieldViolations"]
        assert violation["reason"] == "MALFORMED_REQUEST", error
        assert "prgate.v1.OpenPullRequestRequest" in error["message"], error
    # An unknown command, with connect-timeout-ms as the deadline: the gateway waits for its
    # result until just before the deadline (not its 30 s unknown_command_wait_s), then the
    # end frame carries NOT_FOUND with its ErrorInfo.
    started = time.monotonic()
    unknown = stream_json(
        base, WATCH_COMMAND, {"commandId": "no-such-command"}, "connect-timeout-ms: 1500"
    )
    elapsed = time.monotonic() - started
    flags, end = unknown[-1]
    assert flags == END_STREAM, unknown
    assert end["error"]["code"] == "not_found", end
    assert debug_of(end["error"], "google.rpc.ErrorInfo")["reason"] == "UNKNOWN_COMMAND", end
    assert elapsed < 15, elapsed  # the 1.5 s deadline, with a generous margin; not 30 s
    # A request body over the gRPC receive limit (PRGATE_MAX_MESSAGE_BYTES, 4 MiB default).
    huge = open_body(title="x" * (5 * 1024 * 1024))
    status, error = post_json(base, OPEN, huge)
    assert error["code"] == "resource_exhausted", (status, error)


def test_connect_python_client(http_gateway: tuple[GatewayProcess, str]) -> None:
    """The connectrpc library's generated client (binary protobuf by default) and JSON."""
    _gateway, base = http_gateway

    async def calls() -> None:
        commands = command_service_connect.PullRequestCommandServiceClient(base)
        queries = query_service_connect.PullRequestQueryServiceClient(base)
        command = commands_pb2.OpenPullRequest(
            repository="acme/widgets",
            title="From the Connect client",
            author="ada",
            source_branch="feature/connect",
            target_branch="main",
        )
        response = await commands.open_pull_request(
            svc.OpenPullRequestRequest(command=command), timeout_ms=30_000
        )
        receipt = response.receipt
        assert receipt.pull_request_id, receipt
        got = await queries.get_pull_request(
            q.GetPullRequestRequest(
                pull_request_id=receipt.pull_request_id,
                consistency_token=receipt.consistency_token,
            ),
            timeout_ms=30_000,
        )
        assert got.pull_request.title == "From the Connect client", got
        states = [
            item.receipt.state
            async for item in commands.watch_command(
                svc.WatchCommandRequest(command_id=receipt.command_id), timeout_ms=30_000
            )
        ]
        assert len(states) == 2 and states[-1] == receipt.state, states
        bad = svc.OpenPullRequestRequest(
            command=commands_pb2.OpenPullRequest(repository="acme/widgets", author="ada")
        )
        with pytest.raises(ConnectError) as refused:
            await commands.open_pull_request(bad, timeout_ms=30_000)
        assert refused.value.code == Code.INVALID_ARGUMENT
        violations = [
            error_details_pb2.BadRequest.FromString(d.message_bytes)
            for d in refused.value.details
            if d.type_name == "google.rpc.BadRequest"
        ]
        assert violations and violations[0].field_violations, refused.value.details

    asyncio.run(calls())


def test_sigterm_ends_connect_watch_unavailable(http_gateway: tuple[GatewayProcess, str]) -> None:
    """Shutdown over Connect as over gRPC: an open watch ends UNAVAILABLE with a RetryInfo
    (GATEWAY_SHUTTING_DOWN) after the drain window, and the gateway exits 0."""
    gateway, base = http_gateway
    status, answer = post_json(base, OPEN, open_body())
    assert status == 200, answer
    pr = answer["receipt"]["pullRequestId"]
    message = json.dumps({"pullRequestId": pr}).encode()
    with subprocess.Popen(
        [
            *(curl(), "-sS", "-N", "--output", "-", "-H", "Content-Type: application/connect+json"),
            *("--data-binary", "@-", base + "/prgate.v1.PullRequestQueryService/WatchPullRequest"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as watch:
        try:
            assert watch.stdin is not None and watch.stdout is not None
            watch.stdin.write(struct.pack(">BI", 0, len(message)) + message)
            watch.stdin.close()
            flags, length = struct.unpack(">BI", watch.stdout.read(5))
            snapshot = json.loads(watch.stdout.read(length))
            assert flags == 0 and pr in json.dumps(snapshot), snapshot
            assert gateway.stop() == 0, gateway.log_tail()
            rest = frames(watch.stdout.read())
            assert watch.wait(timeout=30) == 0
        finally:
            if watch.poll() is None:  # only when an assertion above failed
                watch.kill()
    flags, end = rest[-1]
    assert flags == END_STREAM, rest
    assert end["error"]["code"] == "unavailable", end
    info = debug_of(end["error"], "google.rpc.ErrorInfo")
    assert info["reason"] == "GATEWAY_SHUTTING_DOWN", end
    assert debug_of(end["error"], "google.rpc.RetryInfo")["retryDelay"], end


def test_readme_python_client_example_runs_as_written(
    http_gateway: tuple[GatewayProcess, str],
) -> None:
    _gateway, base = http_gateway
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- connect-python:begin -->\n```python\n(.*?)```\n<!-- connect-python:end -->",
        text,
        re.S,
    )
    assert block, "README lost its Connect Python example"
    done = subprocess.run(
        [sys.executable, "-c", block.group(1).replace(README_HTTP, base)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("opened pr-"), lines
    assert lines[1:3] == ["state COMMAND_STATE_ACCEPTED", "state COMMAND_STATE_SUCCEEDED"], lines
    assert lines[3].startswith("refused invalid_argument ["), lines
    assert "'google.rpc.BadRequest'" in lines[3], lines
