"""Security settings: TLS credentials from files, fail-fast configuration errors, and no Kafka
secret (PRGATE_KAFKA_PROPERTIES) in the startup log lines of the gateway and the processor."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from helpers.certs import make_ca

import gateway.server
import processor.app
from gateway.auth import AuthInterceptor, caller_of
from gateway.security import SecurityConfigError, build_security, server_credentials
from gateway.settings import GatewaySettings
from prgate.kafka.topic_checks import TopicContractError

SECRETS = {
    "sasl.password": "sasl-pw-SECRET-1",
    "ssl.key.password": "key-pw-SECRET-2",
    "ssl.keystore.password": "keystore-pw-SECRET-3",
    "sasl.oauthbearer.client.secret": "oauth-SECRET-4",
}
KAFKA_PROPERTIES = ",".join(
    [
        "security.protocol=SASL_SSL",
        "sasl.mechanism=SCRAM-SHA-512",
        "sasl.username=prgate-svc",
        *(f"{k}={v}" for k, v in SECRETS.items()),
    ]
)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The entry points replace the root handlers; give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_no_tls_settings_means_plaintext_and_no_auth() -> None:
    security = build_security(GatewaySettings())
    assert security.credentials is None and security.tokens is None
    assert security.interceptors == [] and security.caller_of is None


def test_tls_from_pem_files_with_and_without_client_ca(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki")
    server = ca.issue("server", server=True)
    settings = replace(
        GatewaySettings(), tls_cert_file=str(server.cert), tls_key_file=str(server.key)
    )
    assert server_credentials(settings) is not None
    mutual = replace(settings, tls_client_ca_file=str(ca.cert))
    assert build_security(mutual).mode == "tls"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tls_cert_file": "CERT"}, "both --tls-cert-file and --tls-key-file"),
        ({"tls_key_file": "KEY"}, "both --tls-cert-file and --tls-key-file"),
        ({"tls_client_ca_file": "CERT"}, "needs --tls-cert-file"),
        ({"tls_cert_file": "CERT", "tls_key_file": "missing"}, "No such file"),
        ({"tls_cert_file": "KEY", "tls_key_file": "KEY"}, "not a PEM file with CERTIFICATE"),
        ({"tls_cert_file": "CERT", "tls_key_file": "CERT"}, "not a PEM file with PRIVATE KEY"),
        ({"auth_token_file": "missing"}, "token file"),
    ],
)
def test_unusable_security_settings_stop_the_gateway(
    tmp_path: Path, fields: dict[str, str], message: str
) -> None:
    ca = make_ca(tmp_path / "pki")
    server = ca.issue("server", server=True)
    paths = {"CERT": str(server.cert), "KEY": str(server.key), "missing": str(tmp_path / "nope")}
    settings = replace(GatewaySettings(), **{k: paths[v] for k, v in fields.items()})
    with pytest.raises(SecurityConfigError, match=message):
        build_security(settings)


def test_token_file_turns_on_the_interceptor_and_the_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": [{"principal": "ada", "token": "t" * 20}]}))
    path.chmod(0o600)
    with caplog.at_level(logging.INFO):
        security = build_security(
            replace(GatewaySettings(), auth_token_file=str(path), listen="0.0.0.0:50051")
        )
    assert isinstance(security.interceptors[0], AuthInterceptor)
    assert security.caller_of is caller_of
    assert security.tokens is not None
    assert "auth_without_tls" in caplog.text, "tokens over plaintext on a public address"
    assert "t" * 20 not in caplog.text


def test_gateway_startup_log_hides_kafka_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    async def no_serve(*args: object, **kwargs: object) -> None:
        return None

    monkeypatch.setenv("PRGATE_KAFKA_PROPERTIES", KAFKA_PROPERTIES)
    monkeypatch.setattr(gateway.server, "serve", no_serve)
    assert gateway.server.main([]) == 0
    logged = capsys.readouterr().err
    (line,) = [entry for entry in logged.splitlines() if "gateway_config" in entry]
    assert "SASL_SSL" in line and "prgate-svc" in line, "non-secret properties stay visible"
    for key, secret in SECRETS.items():
        assert secret not in logged
        assert key in line
    assert line.count("***") >= len(SECRETS)


def test_processor_startup_log_hides_kafka_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    def refuse(settings: object) -> None:
        raise TopicContractError(["stop here: no broker in a unit test"])

    monkeypatch.setenv("PRGATE_KAFKA_PROPERTIES", KAFKA_PROPERTIES)
    monkeypatch.setattr(processor.app, "check_topics", refuse)
    assert processor.app.main([]) == processor.app.EXIT_CONFIG
    logged = capsys.readouterr().err
    (line,) = [entry for entry in logged.splitlines() if '"event": "settings"' in entry]
    assert "SASL_SSL" in line and "prgate-svc" in line
    for secret in SECRETS.values():
        assert secret not in logged
    assert line.count("***") >= len(SECRETS)
