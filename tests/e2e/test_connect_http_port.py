"""The gateway's HTTP/JSON (Connect) port as a real process serves it, against a real broker:
bearer-token refusals, mutual TLS, ``--workers`` sharing the port, a taken port, and a client
that goes away in the middle of a watch. The calls themselves (README examples, commands,
errors, watches, the Python client, shutdown): tests/e2e/test_connect_http.py."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import uuid
from pathlib import Path

import grpc
from helpers.certs import CertificateAuthority, KeyPair, make_ca
from helpers.kafka import free_port
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.connect_http_calls import (
    END_STREAM,
    OPEN,
    WATCH_COMMAND,
    curl,
    debug_of,
    open_body,
    post_json,
    post_raw,
    stream_json,
)
from tests.e2e.stack import Stack
from tests.e2e.test_security import start_gateway, wait_serving
from tests.e2e.test_workers import CONNECTIONS, free_port_pair, scrape, total, wait_for
from tests.unit.gateway.test_tls_reload import install


def test_curl_auth_refusal(stack: Stack, tmp_path: Path) -> None:
    token = f"ada-{uuid.uuid4().hex}"
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"principal": "ada", "token": token, "roles": []}]}))
    stack.processor()
    http_port = free_port()
    stack.gateway(
        free_port(),
        PRGATE_HTTP_LISTEN=f"127.0.0.1:{http_port}",
        PRGATE_AUTH_TOKEN_FILE=str(tokens),
    )
    base = f"http://127.0.0.1:{http_port}"
    status, error = post_json(base, OPEN, open_body())
    assert status == 401, error
    assert error["code"] == "unauthenticated", error
    assert debug_of(error, "google.rpc.ErrorInfo")["reason"] == "MISSING_TOKEN", error
    status, error = post_json(base, OPEN, open_body(), "Authorization: Bearer wrong")
    assert (status, error["code"]) == (401, "unauthenticated"), error
    # A valid token, acting for someone else: the same authorization as over gRPC.
    status, error = post_json(base, OPEN, open_body(author="bob"), f"Authorization: Bearer {token}")
    assert (status, error["code"]) == (403, "permission_denied"), error
    assert debug_of(error, "google.rpc.ErrorInfo")["reason"] == "ACTOR_NOT_CALLER", error
    status, answer = post_json(base, OPEN, open_body(), f"Authorization: Bearer {token}")
    assert status == 200, answer
    assert answer["receipt"]["state"] == "COMMAND_STATE_SUCCEEDED", answer
    # Streams are refused the same way.
    refused = stream_json(base, WATCH_COMMAND, {"commandId": "x"})
    assert refused[-1][0] == END_STREAM, refused
    assert refused[-1][1]["error"]["code"] == "unauthenticated", refused


def test_mutual_tls_on_the_http_port(stack: Stack, tmp_path: Path) -> None:
    """With TLS on, the Connect port serves HTTPS with the gateway's files and requires a
    client certificate of PRGATE_TLS_CLIENT_CA_FILE's CA, as the gRPC port does."""
    ca = make_ca(tmp_path / "pki")
    server = ca.issue("server", server=True)
    client = ca.issue("ada-client", server=False)
    stack.processor()
    http_port = free_port()
    gateway = start_gateway(
        stack,
        "mtls-http",
        PRGATE_TLS_CERT_FILE=str(server.cert),
        PRGATE_TLS_KEY_FILE=str(server.key),
        PRGATE_TLS_CLIENT_CA_FILE=str(ca.cert),
        PRGATE_HTTP_LISTEN=f"127.0.0.1:{http_port}",
    )
    wait_serving(
        gateway,
        grpc.ssl_channel_credentials(ca.cert_pem(), client.key_pem(), client.cert_pem()),
    )
    url = f"https://127.0.0.1:{http_port}{OPEN}"
    body = json.dumps(open_body())
    plain = ["-sS", "-H", "Content-Type: application/json", "--data-binary", body]
    answered = subprocess.run(
        [
            *(curl(), *plain, "--cacert", str(ca.cert)),
            *("--cert", str(client.cert), "--key", str(client.key), url),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(answered.stdout)["receipt"]["state"] == "COMMAND_STATE_SUCCEEDED"
    for name, extra in (
        ("no client certificate", ["--cacert", str(ca.cert), url]),
        ("plaintext", [url.replace("https://", "http://")]),
    ):
        refused = subprocess.run(
            [curl(), *plain, *extra], capture_output=True, text=True, timeout=60, check=False
        )
        assert refused.returncode != 0, (name, refused)  # the connection, not a call, fails
        assert "receipt" not in refused.stdout, (name, refused)


def test_gateway_workers_share_the_http_port(stack: Stack) -> None:
    """``--workers 2``: both workers serve the Connect port (SO_REUSEPORT, as the gRPC port);
    each curl is a new connection, and the workers' own command counters see them."""
    stack.processor()
    metrics, http_port = free_port_pair(), free_port()
    gateway = stack.gateway(
        free_port(),
        PRGATE_GATEWAY_WORKERS="2",
        PRGATE_METRICS_LISTEN=f"127.0.0.1:{metrics}",
        PRGATE_HTTP_LISTEN=f"127.0.0.1:{http_port}",
    )
    ports = (metrics, metrics + 1)

    def caught_up() -> bool:
        try:
            return all(total(scrape(p), "prgate_gateway_read_model_caught_up") == 1 for p in ports)
        except OSError:  # a worker's metrics port is not open yet
            return False

    wait_for(caught_up, "both workers caught up")
    wait_for(
        lambda: gateway.log_path.read_text().count("connect_http_started") == 2,
        "both workers listening on the HTTP port",
    )
    base = f"http://127.0.0.1:{http_port}"
    for _ in range(CONNECTIONS):
        body = {"command": {"pullRequestId": f"pr-missing-{uuid.uuid4().hex}", "reviewer": "ada"}}
        status, error = post_json(
            base, "/prgate.v1.PullRequestCommandService/ApprovePullRequest", body
        )
        assert (status, error["code"]) == (404, "not_found"), error
    counts = [total(scrape(p), "prgate_gateway_commands_total") for p in ports]
    assert sum(counts) == CONNECTIONS, counts
    assert all(count > 0 for count in counts), f"calls did not land on both workers: {counts}"


def test_a_taken_http_port_is_one_line_and_exit_3(stack: Stack) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        gateway = start_gateway(stack, "http-taken", PRGATE_HTTP_LISTEN=taken)
        assert gateway.process is not None
        assert gateway.process.wait(timeout=60) == 3, gateway.log_tail()
    lines = [line for line in gateway.log_path.read_text().splitlines() if "gateway_exit" in line]
    assert len(lines) == 1, lines
    assert "--http-listen" in lines[0] and taken in lines[0], lines


def test_a_client_that_goes_away_leaves_no_watcher(stack: Stack) -> None:
    """curl killed in the middle of a WatchPullRequest: the gateway ends the watch (its read
    model's watcher count goes back to 0) and keeps serving."""
    stack.processor()
    metrics, http_port = free_port(), free_port()
    stack.gateway(
        free_port(),
        PRGATE_METRICS_LISTEN=f"127.0.0.1:{metrics}",
        PRGATE_HTTP_LISTEN=f"127.0.0.1:{http_port}",
    )
    base = f"http://127.0.0.1:{http_port}"
    status, answer = post_json(base, OPEN, open_body())
    assert status == 200, answer
    message = json.dumps({"pullRequestId": answer["receipt"]["pullRequestId"]}).encode()

    def watchers() -> float:
        return total(scrape(metrics), "prgate_gateway_read_model_watchers")

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
            assert len(watch.stdout.read(5)) == 5  # the snapshot's frame: the watch is open
            assert watchers() == 1
        finally:
            watch.kill()
    wait_for(lambda: watchers() == 0, "the watch of the client that went away ended")
    status, answer = post_json(base, OPEN, open_body())
    assert status == 200, answer
    # Connect calls are counted in the standard per-RPC metrics, with the gRPC code.
    status, _ = post_json(base, OPEN, open_body(title=""))
    assert status == 400
    # Answered by the library itself (the handlers never see them): counted too, by code.
    assert post_raw(base, OPEN, "{not json", "application/json")[0] == 400
    unsupported = subprocess.run(
        [
            *(curl(), "-sS", "-o", "/dev/null", "-w", "%{http_code}"),
            *("-H", "Content-Type: text/plain", "--data-binary", "x", base + OPEN),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert unsupported.stdout == "415"
    nope = post_raw(base, OPEN.replace("OpenPullRequest", "Nope"), "{}", "application/json")
    assert (nope[0], nope[1]["code"]) == (404, "unimplemented"), nope
    text = scrape(metrics)
    commands, queries = "prgate.v1.PullRequestCommandService", "prgate.v1.PullRequestQueryService"
    assert handled(text, commands, "OpenPullRequest", "OK") == 2, text
    assert handled(text, commands, "OpenPullRequest", "InvalidArgument") == 2, text
    assert handled(text, commands, "OpenPullRequest", "Unknown") == 1, text  # the 415
    assert 'grpc_method="Nope"' not in text  # paths that are no method are not labels
    assert handled(text, queries, "WatchPullRequest", "Canceled") == 1, text
    assert sample(text, "grpc_server_msg_sent_total", grpc_method="WatchPullRequest") >= 1, text
    assert sample(text, "grpc_server_handling_seconds_count", grpc_method="OpenPullRequest") == 5


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def handled(text: str, service: str, method: str, code: str) -> float:
    return sample(
        text,
        "grpc_server_handled_total",
        grpc_service=service,
        grpc_method=method,
        grpc_code=code,
    )


def test_the_http_port_reloads_its_certificates_like_the_grpc_port(
    stack: Stack, tmp_path: Path
) -> None:
    """New certificate files are served on both ports without a restart: new connections of
    either port get them, whichever port saw the change first."""
    one, two = make_ca(tmp_path / "ca1", "ca-one"), make_ca(tmp_path / "ca2", "ca-two")
    live = KeyPair(tmp_path / "tls.crt", tmp_path / "tls.key")
    install(one.issue("first", server=True), live)
    http_port = free_port()
    gateway = start_gateway(
        stack,
        "tls-reload-http",
        PRGATE_TLS_CERT_FILE=str(live.cert),
        PRGATE_TLS_KEY_FILE=str(live.key),
        PRGATE_HTTP_LISTEN=f"127.0.0.1:{http_port}",
    )
    wait_serving(gateway, grpc.ssl_channel_credentials(one.cert_pem()))
    url = f"https://127.0.0.1:{http_port}/prgate.v1.PullRequestQueryService/GetPullRequest"

    def https_trusting(ca: CertificateAuthority) -> int:
        """curl's exit code for a call over a new connection trusting only ``ca``."""
        return subprocess.run(
            [
                *(curl(), "-sS", "-o", "/dev/null", "--cacert", str(ca.cert)),
                *("-H", "Content-Type: application/json", "--data-binary", "{}", url),
            ],
            capture_output=True,
            timeout=60,
            check=False,
        ).returncode

    assert https_trusting(one) == 0
    assert https_trusting(two) == 60  # curl: the peer's certificate is not trusted
    install(two.issue("second", server=True), live)
    assert https_trusting(two) == 0  # the HTTP port saw the change first
    assert https_trusting(one) == 60
    wait_serving(gateway, grpc.ssl_channel_credentials(two.cert_pem()), timeout=10)
    install(one.issue("third", server=True), live)
    wait_serving(gateway, grpc.ssl_channel_credentials(one.cert_pem()), timeout=10)
    assert https_trusting(one) == 0  # the gRPC port saw this change first
    assert https_trusting(two) == 60
    reloads = [
        line
        for line in gateway.log_path.read_text().splitlines()
        if "tls_certificates_reloaded" in line
    ]
    assert len(reloads) == 2, reloads
