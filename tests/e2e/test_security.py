"""TLS, mutual TLS, bearer tokens and roles against real gateway processes and channels.

No processor runs here: every command is sent in ACCEPTED mode, and what reached Kafka is read
back from the commands topic, so the CommandEnvelope's ``caller`` is checked where it matters.
The stack's own wait helper speaks plaintext, so TLS gateways are started and awaited here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from helpers.certs import CertificateAuthority, KeyPair, make_ca
from helpers.kafka import consume_all, free_port

from gateway.errors import details_of
from prgate.kafka.settings import KafkaSettings
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc as svc_grpc
from prgate.v1 import commands_pb2, query_service_pb2, query_service_pb2_grpc
from tests.e2e.stack import GatewayProcess, Stack, base_env

ADA, BOB, OPS, CAROL = (
    f"{name}-{uuid.uuid4().hex}" for name in ("ada-token", "bob-token", "ops-token", "carol-token")
)
ACCEPTED = svc.CommandOptions(response_mode=svc.RESPONSE_MODE_ACCEPTED)
NO_SUCH_PR = "pr-does-not-exist"


def write_tokens(path: Path, *entries: tuple[str, str, list[str]]) -> None:
    """Replace the token file atomically (new inode, as a secret volume update does)."""
    staging = path.with_name(path.name + ".new")
    staging.write_text(
        json.dumps({"tokens": [{"principal": p, "token": t, "roles": r} for p, t, r in entries]})
    )
    staging.chmod(0o600)
    os.replace(staging, path)


def start_gateway(stack: Stack, name: str, **env: str) -> GatewayProcess:
    """Like Stack.gateway, without its plaintext health wait."""
    port = free_port()
    merged = base_env(stack.kafka)
    merged.update({"PRGATE_LISTEN": f"127.0.0.1:{port}", **env})
    service = GatewayProcess(
        f"gateway-{name}", "gateway", merged, stack.log_dir / f"gateway-{name}.log", port=port
    )
    service.start()
    stack.services.append(service)
    return service


def health_status(channel: grpc.Channel, timeout: float = 2.0) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout).status)


def wait_serving(
    g: GatewayProcess, credentials: grpc.ChannelCredentials, timeout: float = 60
) -> None:
    """Health SERVING over TLS, without a token: health stays open when auth is on."""
    deadline, last = time.monotonic() + timeout, "no answer"
    with grpc.secure_channel(g.target, credentials) as channel:
        while time.monotonic() < deadline:
            if not g.alive():
                raise AssertionError(f"{g.name} exited:\n{g.log_tail()}")
            try:
                if health_status(channel, 1.0) == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = "NOT_SERVING"
            except grpc.RpcError as exc:
                last = exc.code().name
            time.sleep(0.1)
    raise AssertionError(f"{g.name} not SERVING after {timeout}s ({last}):\n{g.log_tail()}")


def refusal(call: Callable[[], Any]) -> tuple[grpc.StatusCode, dict[str, Any]]:
    try:
        call()
    except grpc.RpcError as exc:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
        return exc.code(), (dict(details_of(status)) if status is not None else {})
    raise AssertionError("the call succeeded")


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def open_as(author: str, key: str = "") -> svc.OpenPullRequestRequest:
    return svc.OpenPullRequestRequest(
        command=commands_pb2.OpenPullRequest(
            repository="acme/widgets",
            title="Secure widget",
            author=author,
            source_branch=f"feature/{uuid.uuid4().hex[:8]}",
            target_branch="main",
        ),
        options=svc.CommandOptions(response_mode=ACCEPTED.response_mode, idempotency_key=key),
    )


def list_prs(channel: grpc.Channel, token: str) -> Any:
    stub = query_service_pb2_grpc.PullRequestQueryServiceStub(channel)
    return stub.ListPullRequests(
        query_service_pb2.ListPullRequestsRequest(), metadata=bearer(token), timeout=5
    )


def token_loads(gateway: GatewayProcess) -> int:
    """The gateway's ``auth_tokens_loaded`` log lines: one at start, one per reload."""
    count = 0
    for line in gateway.log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # grpc core's own stderr lines share the file
        count += isinstance(entry, dict) and entry.get("event") == "auth_tokens_loaded"
    return count


def wait_token_loads(gateway: GatewayProcess, count: int, timeout: float = 10.0) -> None:
    """Wait (bounded) until the gateway logged ``count`` token file loads."""
    deadline = time.monotonic() + timeout
    while token_loads(gateway) < count:
        assert time.monotonic() < deadline, f"{token_loads(gateway)} token loads, want {count}"
        time.sleep(0.05)


def eventually_authenticated(channel: grpc.Channel, token: str, timeout: float = 10.0) -> float:
    """Seconds until ``token`` is accepted (AssertionError when it never is)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            list_prs(channel, token)
            return time.monotonic() - start
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, exc
        time.sleep(0.1)
    raise AssertionError(f"token not accepted within {timeout}s")


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[tuple[CertificateAuthority, KeyPair]]:
    ca = make_ca(tmp_path / "pki")
    yield ca, ca.issue("server", server=True)


def test_tls_tokens_roles_and_reload(
    stack: Stack,
    kafka_settings: KafkaSettings,
    pki: tuple[CertificateAuthority, KeyPair],
    tmp_path: Path,
) -> None:
    ca, server = pki
    tokens = tmp_path / "tokens.json"
    write_tokens(tokens, ("ada", ADA, []), ("bob", BOB, []), ("ops", OPS, ["admin"]))
    g = start_gateway(
        stack,
        "tls",
        PRGATE_TLS_CERT_FILE=str(server.cert),
        PRGATE_TLS_KEY_FILE=str(server.key),
        PRGATE_AUTH_TOKEN_FILE=str(tokens),
    )
    trusted = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem())
    wait_serving(g, trusted)

    # Plaintext, and TLS that does not trust our CA, never reach the services.
    with grpc.insecure_channel(g.target) as plain:
        code, _ = refusal(lambda: health_status(plain))
        assert code == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(g.target, grpc.ssl_channel_credentials()) as untrusting:
        code, _ = refusal(lambda: health_status(untrusting))
        assert code == grpc.StatusCode.UNAVAILABLE

    with grpc.secure_channel(g.target, trusted) as channel:
        commands = svc_grpc.PullRequestCommandServiceStub(channel)
        queries = query_service_pb2_grpc.PullRequestQueryServiceStub(channel)

        # Reflection is open: list the services without a token.
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        (answer,) = list(
            reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
        )
        names = {s.name for s in answer.list_services_response.service}
        assert "prgate.v1.PullRequestCommandService" in names
        assert "prgate.v1.PullRequestQueryService" in names

        # No token, a wrong token, a wrong scheme: UNAUTHENTICATED with ErrorInfo.
        for metadata, reason in (
            ((), "MISSING_TOKEN"),
            (bearer("x" * 40), "INVALID_TOKEN"),
            ((("authorization", f"Basic {ADA}"),), "MALFORMED_AUTHORIZATION"),
        ):
            code, details = refusal(
                partial(commands.OpenPullRequest, open_as("ada"), metadata=metadata, timeout=5)
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED
            assert details["ErrorInfo"].reason == reason
            code, details = refusal(
                partial(
                    queries.GetPullRequest,
                    query_service_pb2.GetPullRequestRequest(pull_request_id=NO_SUCH_PR),
                    metadata=metadata,
                    timeout=5,
                )
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED
            assert details["ErrorInfo"].reason == reason

        # Any valid token may query: NOT_FOUND means the call got past authentication.
        code, _ = refusal(
            lambda: queries.GetPullRequest(
                query_service_pb2.GetPullRequestRequest(pull_request_id=NO_SUCH_PR),
                metadata=bearer(BOB),
                timeout=5,
            )
        )
        assert code == grpc.StatusCode.NOT_FOUND

        # Acting for someone else needs a role.
        code, details = refusal(
            lambda: commands.OpenPullRequest(open_as("bob"), metadata=bearer(ADA), timeout=5)
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert details["ErrorInfo"].reason == "ACTOR_NOT_CALLER"
        assert details["ErrorInfo"].metadata["field"] == "command.author"
        approve = svc.ApprovePullRequestRequest(
            command=commands_pb2.ApprovePullRequest(pull_request_id=NO_SUCH_PR, reviewer="ada")
        )
        code, _ = refusal(lambda: commands.ApprovePullRequest(approve, metadata=bearer(BOB)))
        assert code == grpc.StatusCode.PERMISSION_DENIED

        # Acting as oneself, and the admin acting for bob, are accepted; the same idempotency
        # key from two callers is two commands.
        own = commands.OpenPullRequest(open_as("ada", "same-key"), metadata=bearer(ADA), timeout=10)
        for_bob = commands.OpenPullRequest(
            open_as("bob", "same-key"), metadata=bearer(OPS), timeout=10
        )
        assert own.receipt.command_id != for_bob.receipt.command_id
        records = consume_all(kafka_settings, kafka_settings.topics.commands, expected=2)
        envelopes = [commands_pb2.CommandEnvelope.FromString(r.value()) for r in records]
        seen = {(e.caller, e.open_pull_request.author, e.command_id) for e in envelopes}
        assert seen == {
            ("ada", "ada", own.receipt.command_id),
            ("ops", "bob", for_bob.receipt.command_id),
        }

        # Reload without restart: carol's new token works, ada's removed token stops working.
        write_tokens(tokens, ("carol", CAROL, []), ("ops", OPS, ["admin"]))
        eventually_authenticated(channel, CAROL)
        code, _ = refusal(lambda: list_prs(channel, ADA))
        assert code == grpc.StatusCode.UNAUTHENTICATED

    log = g.log_path.read_text()
    assert "auth_tokens_loaded" in log
    for token in (ADA, BOB, OPS, CAROL):
        assert token not in log, "a token reached the gateway's log"


def test_mutual_tls_and_reload_on_sighup(
    stack: Stack, pki: tuple[CertificateAuthority, KeyPair], tmp_path: Path
) -> None:
    ca, server = pki
    client = ca.issue("ada-client", server=False)
    rogue_ca = make_ca(tmp_path / "rogue", "rogue-ca")
    rogue = rogue_ca.issue("mallory", server=False)
    tokens = tmp_path / "tokens.json"
    write_tokens(tokens, ("ada", ADA, []))
    g = start_gateway(
        stack,
        "mtls",
        PRGATE_TLS_CERT_FILE=str(server.cert),
        PRGATE_TLS_KEY_FILE=str(server.key),
        PRGATE_TLS_CLIENT_CA_FILE=str(ca.cert),
        PRGATE_AUTH_TOKEN_FILE=str(tokens),
        PRGATE_AUTH_RELOAD_INTERVAL_S="0",  # only SIGHUP reloads
    )
    with_cert = grpc.ssl_channel_credentials(ca.cert_pem(), client.key_pem(), client.cert_pem())
    wait_serving(g, with_cert)

    for name, credentials in (
        ("no client certificate", grpc.ssl_channel_credentials(ca.cert_pem())),
        (
            "certificate of another CA",
            grpc.ssl_channel_credentials(ca.cert_pem(), rogue.key_pem(), rogue.cert_pem()),
        ),
    ):
        with grpc.secure_channel(g.target, credentials) as channel:
            code, _ = refusal(partial(health_status, channel))
            assert code == grpc.StatusCode.UNAVAILABLE, name

    with grpc.secure_channel(g.target, with_cert) as channel:
        assert list(list_prs(channel, ADA).pull_requests) == []
        assert token_loads(g) == 1  # the load at start
        write_tokens(tokens, ("ada", ADA, []), ("carol", CAROL, []))
        # The file changed (size and mtime): a call is where a due check would reload it,
        # and with interval 0 none is due, so the new token is refused and nothing loaded.
        code, _ = refusal(lambda: list_prs(channel, CAROL))
        assert code == grpc.StatusCode.UNAUTHENTICATED, "no reload without SIGHUP (interval 0)"
        assert token_loads(g) == 1, "the token file was reloaded without SIGHUP"
        assert g.process is not None
        g.process.send_signal(signal.SIGHUP)
        wait_token_loads(g, 2)  # the SIGHUP's reload, and only it
        eventually_authenticated(channel, CAROL)
        assert token_loads(g) == 2
        assert g.alive(), "SIGHUP reloads tokens; it must not stop the gateway"


def test_config_file_and_cli_tls_names_distinct_from_the_gateway_s(
    stack: Stack, pki: tuple[CertificateAuthority, KeyPair], tmp_path: Path
) -> None:
    """A gateway configured by a TOML file alone (PRGATE_CONFIG_FILE), with mutual TLS; the CLI
    reaches it with PRGATE_CLIENT_TLS_* from a shell where the gateway's PRGATE_TLS_CERT_FILE
    and _KEY_FILE (the server's certificate) are set too, and ignores those."""
    ca, server = pki
    client = ca.issue("cli-client", server=False)
    port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'listen = "127.0.0.1:{port}"\n'
        f'tls_cert_file = "{server.cert}"\n'
        f'tls_key_file = "{server.key}"\n'
        f'tls_client_ca_file = "{ca.cert}"\n'
        "max_concurrent_rpcs = 64\n"
        "instance_id = 'a processor setting: ignored by the gateway'\n"
    )
    merged = base_env(stack.kafka)
    merged.pop("PRGATE_LISTEN", None)
    merged["PRGATE_CONFIG_FILE"] = str(config)
    g = GatewayProcess(
        "gateway-toml", "gateway", merged, stack.log_dir / "gateway-toml.log", port=port
    )
    g.start()
    stack.services.append(g)
    with_cert = grpc.ssl_channel_credentials(ca.cert_pem(), client.key_pem(), client.cert_pem())
    wait_serving(g, with_cert)

    shell = {
        **os.environ,
        "PRGATE_TARGET": g.target,
        # What an operator's shell holds for the gateway: the server's own certificate.
        "PRGATE_TLS_CERT_FILE": str(server.cert),
        "PRGATE_TLS_KEY_FILE": str(server.key),
        "PRGATE_CLIENT_TLS_CA_FILE": str(ca.cert),
        "PRGATE_CLIENT_TLS_CERT_FILE": str(client.cert),
        "PRGATE_CLIENT_TLS_KEY_FILE": str(client.key),
        "PRGATE_RETRIES": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "prgate.cli", "pr", "get", NO_SUCH_PR],
        env=shell,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # NOT_FOUND is the gateway's answer: TLS and the client certificate were accepted.
    assert done.returncode == 1, done.stderr
    assert f"prgate: NOT_FOUND: pull request {NO_SUCH_PR} does not exist" in done.stderr
    without_client_cert = {
        k: v for k, v in shell.items() if not k.startswith("PRGATE_CLIENT_TLS_CERT")
    }
    without_client_cert.pop("PRGATE_CLIENT_TLS_KEY_FILE")
    refused = subprocess.run(
        [sys.executable, "-m", "prgate.cli", "pr", "get", NO_SUCH_PR],
        env=without_client_cert,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 3, refused.stderr  # mutual TLS: no client certificate
    assert "UNAVAILABLE" in refused.stderr
