"""The HTTP/JSON (Connect) port attacked as an outsider would, against a real gateway process:
malformed bodies and headers, wrong content types and methods, oversize bodies (declared and
chunked), bodies and headers that never finish, huge headers, a client that never reads its
stream. Each gets a clear HTTP status
and Connect code (or, for a connection that never sends a request, the connection closed),
and the gateway keeps serving. gateway/http_guard.py holds the bounds."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.kafka import free_port

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2
from tests.e2e.connect_http_calls import OPEN, WATCH_COMMAND, curl, open_body, post_json
from tests.e2e.stack import Stack
from tests.e2e.test_workers import scrape, total, wait_for

TIMEOUT_S = 2  # PRGATE_HTTP_TIMEOUT_S of this file's gateway
LIMIT = 1024 * 1024  # the e2e stack's PRGATE_MAX_MESSAGE_BYTES


@pytest.fixture
def port(stack: Stack) -> Iterator[int]:
    """A gateway serving Connect with a short PRGATE_HTTP_TIMEOUT_S; its HTTP port."""
    stack.processor()
    http_port = free_port()
    gateway = stack.gateway(
        free_port(),
        PRGATE_HTTP_LISTEN=f"127.0.0.1:{http_port}",
        PRGATE_HTTP_TIMEOUT_S=str(TIMEOUT_S),
        PRGATE_MAX_MESSAGE_BYTES=str(LIMIT),
    )
    yield http_port
    # Whatever was thrown at it, it still answers a proper call.
    status, answer = post_json(f"http://127.0.0.1:{http_port}", OPEN, open_body())
    assert status == 200 and answer["receipt"]["state"] == "COMMAND_STATE_SUCCEEDED", answer
    assert gateway.alive(), gateway.log_tail()


def request(path: str, body: bytes, content_type: str = "application/json", *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: gateway", f"Content-Type: {content_type}"]
    head += [f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Answer:
    """One HTTP/1.1 response read off a socket: status, headers, body (chunks joined)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock, self._buffer = sock, b""
        head = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        self.status = int(head[0].split(" ")[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        if "content-length" in self.headers:
            self.body = self._exactly(int(self.headers["content-length"]))
        elif self.headers.get("transfer-encoding") == "chunked":
            chunks = []
            while size := int(self._until(b"\r\n"), 16):
                chunks.append(self._exactly(size))
                self._until(b"\r\n")
            self._until(b"\r\n")
            self.body = b"".join(chunks)
        else:
            self.body = b""

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        assert chunk, f"connection closed mid-response: {self._buffer!r}"
        self._buffer += chunk

    def _until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            self._fill()
        line, _, self._buffer = self._buffer.partition(marker)
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def json(self) -> Any:
        return json.loads(self.body)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    return sock


def exchange(port: int, data: bytes) -> Answer:
    with connect(port) as sock:
        sock.sendall(data)
        return Answer(sock)


def closed_by_server(sock: socket.socket) -> bool:
    """Reads until the server closes the connection (bounded by the socket's timeout)."""
    while True:
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True


def test_malformed_requests_get_clear_codes(port: int) -> None:
    cases: list[tuple[str, bytes, int, str | None]] = [
        ("malformed JSON", request(OPEN, b'{"command": {'), 400, "invalid_argument"),
        ("a JSON array", request(OPEN, b"[1, 2]"), 400, "invalid_argument"),
        ("deeply nested JSON", request(OPEN, b'{"a":' * 5000 + b"1" + b"}" * 5000), 400,
         "invalid_argument"),
        ("protobuf garbage", request(OPEN, b"\x0a\xff\xff", "application/proto"), 400,
         "invalid_argument"),
        ("bad connect-timeout-ms", request(OPEN, b"{}", "application/json",
                                            "connect-timeout-ms: soon"), 400, "invalid_argument"),
        ("unknown compression", request(OPEN, b"{}", "application/json",
                                         "content-encoding: br"), 501, "unimplemented"),
        ("not gzip", request(OPEN, b"{}", "application/json", "content-encoding: gzip"), 400,
         "invalid_argument"),
        ("unknown service", request("/prgate.v1.Nope/Open", b"{}"), 404, "unimplemented"),
        ("unknown method", request("/prgate.v1.PullRequestCommandService/Nope", b"{}"), 404,
         "unimplemented"),
        # The library's answers to the wrong content type and method: HTTP-level, no JSON.
        ("text/plain", request(OPEN, b"{}", "text/plain"), 415, None),
        ("form data", request(OPEN, b"a=1", "application/x-www-form-urlencoded"), 415, None),
    ]  # fmt: skip
    for name, data, status, code in cases:
        got = exchange(port, data)
        assert got.status == status, (name, got.status, got.body)
        if code is not None:
            assert got.json()["code"] == code, (name, got.body)
    got = exchange(port, f"GET {OPEN} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode())
    assert (got.status, got.headers["allow"]) == (405, "POST"), got.body
    missing = request(OPEN, b"{}").replace(b"Content-Type: application/json\r\n", b"")
    assert exchange(port, missing).status == 415
    # A stream request whose envelope claims 4 GiB: the end frame says resource_exhausted.
    got = exchange(
        port, request(WATCH_COMMAND, b"\x00\xff\xff\xff\xff", "application/connect+json")
    )
    assert got.status == 200, got.body
    end = json.loads(got.body[5:])
    assert got.body[0] == 0x02 and end["error"]["code"] == "resource_exhausted", got.body
    # Field names that are not the message's: INVALID_ARGUMENT naming the message.
    got = exchange(port, request(OPEN, b'{"command": {"bogus": 1}}'))
    assert (got.status, got.json()["code"]) == (400, "invalid_argument"), got.body


def test_huge_headers_are_431(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(request(OPEN, b"{}", "application/json", "X-Big: " + "a" * 100_000))
        assert Answer(sock).status == 431
    # Many small headers arriving at once: the port's own bound, with a Connect code.
    many = [f"X-H{i}: {'b' * 100}" for i in range(400)]
    got = exchange(port, request(OPEN, b"{}", "application/json", *many))
    assert (got.status, got.json()["code"]) == (431, "resource_exhausted"), got.body


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_oversize_bodies_are_read_and_refused_resource_exhausted(port: int, declared: bool) -> None:
    """curl uploading 3 MiB over a 1 MiB limit reads the refusal (exit 0), never a reset
    mid-upload (exit 55), and the connection stays usable."""
    body = json.dumps(open_body(title="x" * (3 * LIMIT)))
    chunked = [] if declared else ["-H", "Transfer-Encoding: chunked"]
    for _ in range(3):
        done = subprocess.run(
            [
                *(curl(), "-sS", "-o", "-", "-w", "\n%{http_code}", *chunked),
                *("-H", "Content-Type: application/json", "--data-binary", "@-"),
                f"http://127.0.0.1:{port}{OPEN}",
            ],
            input=body,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        text, _, status = done.stdout.rpartition("\n")
        assert int(status) == 429, done.stdout[:300]
        error = json.loads(text)
        assert error["code"] == "resource_exhausted" and str(LIMIT) in error["message"], error
    # On one connection: the refused upload, then a proper call, both answered.
    with connect(port) as sock:
        sock.sendall(request(OPEN, body.encode()))
        refused = Answer(sock)
        assert (refused.status, refused.json()["code"]) == (429, "resource_exhausted")
        sock.sendall(request(OPEN, json.dumps(open_body()).encode()))
        answered = Answer(sock)
        assert answered.status == 200, answered.body


def test_a_body_that_never_ends_is_408_deadline_exceeded(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(request(OPEN, b"{" * 100)[:-60])  # 60 bytes short of its Content-Length
        got = Answer(sock)
        assert (got.status, got.json()["code"]) == (408, "deadline_exceeded"), got.body
        assert "PRGATE_HTTP_TIMEOUT_S" in got.json()["message"]
        assert got.headers["connection"] == "close"
        assert closed_by_server(sock)
    # A chunked body that stops after its first chunk: the same.
    with connect(port) as sock:
        head = f"POST {OPEN} HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
        sock.sendall((head + "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n").encode())
        got = Answer(sock)
        assert (got.status, got.json()["code"]) == (408, "deadline_exceeded"), got.body


def test_headers_that_never_end_and_silent_connections_are_closed(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(f"POST {OPEN} HTTP/1.1\r\nHost: g\r\n".encode())  # no blank line, ever
        assert closed_by_server(sock)
    with connect(port) as sock:  # connects and says nothing
        assert closed_by_server(sock)


def test_a_client_that_never_reads_its_watch_has_it_ended(stack: Stack) -> None:
    """A WatchPullRequest whose client never reads (a small receive buffer, nothing read):
    once the versions fill the buffers, a message not taken within PRGATE_HTTP_TIMEOUT_S ends
    the call, and the gateway's watcher of the pull request goes away while the connection is
    still open."""
    stack.processor()
    http_port, metrics = free_port(), free_port()
    gateway = stack.gateway(
        free_port(),
        PRGATE_HTTP_LISTEN=f"127.0.0.1:{http_port}",
        PRGATE_HTTP_TIMEOUT_S=str(TIMEOUT_S),
        PRGATE_METRICS_LISTEN=f"127.0.0.1:{metrics}",
    )
    opened = gateway.commands().OpenPullRequest(
        svc.OpenPullRequestRequest(
            command=commands_pb2.OpenPullRequest(
                repository="acme/widgets",
                title="big",
                description="d" * 60_000,  # every version's frame carries it
                author="ada",
                source_branch="feature/big",
                target_branch="main",
            )
        ),
        timeout=30,
    )
    pr = opened.receipt.pull_request_id
    message = json.dumps({"pullRequestId": pr}).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", http_port))
    try:
        sock.sendall(
            request(
                "/prgate.v1.PullRequestQueryService/WatchPullRequest",
                struct.pack(">BI", 0, len(message)) + message,
                "application/connect+json",
            )
        )

        def watchers() -> float:
            return total(scrape(metrics), "prgate_gateway_read_model_watchers")

        wait_for(lambda: watchers() == 1, "the watch is open")
        for n in range(200):  # ~12 MB of frames, far more than the socket buffers hold
            gateway.commands().ChangePullRequestTitle(
                svc.ChangePullRequestTitleRequest(
                    command=commands_pb2.ChangePullRequestTitle(
                        pull_request_id=pr, title=f"big {n}", changed_by="ada"
                    )
                ),
                timeout=30,
            )
            if n % 20 == 19 and watchers() == 0:
                break
        wait_for(lambda: watchers() == 0, "the unread watch was ended")
        assert "http_client_not_reading" in gateway.log_path.read_text()
    finally:
        sock.close()
