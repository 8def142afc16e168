"""The gateway's TLS files reload without a restart, through real TLS handshakes of real gRPC
channels against a gRPC server using :class:`gateway.security.ServerCertificates`; an expired
certificate stops a real gateway process at start with one line and exit code 2."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from helpers.certs import CertificateAuthority, KeyPair, make_ca
from helpers.kafka import free_port

from gateway.security import SecurityConfigError, ServerCertificates
from prgate.observability import logs

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime.now(UTC)


def install(pair: KeyPair, live: KeyPair) -> None:
    """Replace the served files as a secret volume update does (a new inode each)."""
    for source, target in ((pair.cert, live.cert), (pair.key, live.key)):
        staging = target.with_name(target.name + ".new")
        shutil.copyfile(source, staging)
        os.replace(staging, target)


def health_of(port: int, ca: CertificateAuthority) -> grpc.StatusCode:
    """A new channel (its own connection and handshake) trusting only ``ca``."""
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem())
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options) as channel:
        return call(channel)


def call(channel: grpc.Channel) -> grpc.StatusCode:
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.fixture
def pki(tmp_path: Path) -> tuple[CertificateAuthority, CertificateAuthority]:
    return make_ca(tmp_path / "ca1", "ca-one"), make_ca(tmp_path / "ca2", "ca-two")


@pytest.fixture
def live(tmp_path: Path, pki: tuple[CertificateAuthority, CertificateAuthority]) -> KeyPair:
    """The files the server is configured with, first a certificate of CA one."""
    directory = tmp_path / "live"
    directory.mkdir()
    pair = KeyPair(directory / "tls.crt", directory / "tls.key")
    install(pki[0].issue("first", server=True), pair)
    return pair


@pytest.fixture
def served(live: KeyPair) -> Iterator[tuple[int, ServerCertificates]]:
    certificates = ServerCertificates(str(live.cert), str(live.key), "")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_secure_port(f"127.0.0.1:{free_port()}", certificates.credentials())
    server.start()
    yield port, certificates
    server.stop(None)


def test_new_certificates_are_served_without_a_restart(
    served: tuple[int, ServerCertificates],
    live: KeyPair,
    pki: tuple[CertificateAuthority, CertificateAuthority],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port, certificates = served
    one, two = pki
    options = [("grpc.use_local_subchannel_pool", 1)]
    trusting_one = grpc.ssl_channel_credentials(root_certificates=one.cert_pem())
    with grpc.secure_channel(f"127.0.0.1:{port}", trusting_one, options) as kept:
        assert call(kept) == grpc.StatusCode.OK
        assert health_of(port, two) == grpc.StatusCode.UNAVAILABLE

        install(two.issue("second", server=True), live)
        with caplog.at_level(logging.INFO, logger="gateway.security"):
            assert health_of(port, two) == grpc.StatusCode.OK  # the new certificate
            assert health_of(port, one) == grpc.StatusCode.UNAVAILABLE
        assert certificates.reloads == 1
        assert "tls_certificates_reloaded" in caplog.text
        assert call(kept) == grpc.StatusCode.OK  # its connection keeps the old certificate

        # Refused reloads keep the current certificate, each logged once with its reason.
        for refused, reason in (
            (one.issue_dated("old", NOW - timedelta(days=9), NOW - timedelta(days=1)), "expired"),
            (one.issue_dated("early", NOW + timedelta(days=1), NOW + timedelta(days=9)), "before"),
            (one.issue_dated("mixed", NOW, NOW + timedelta(days=1), key_of=live), "belong"),
        ):
            caplog.clear()
            install(refused, live)
            with caplog.at_level(logging.WARNING, logger="gateway.security"):
                assert health_of(port, two) == grpc.StatusCode.OK
                assert health_of(port, one) == grpc.StatusCode.UNAVAILABLE
            (warning,) = [logs.LogfmtFormatter().format(r) for r in caplog.records]
            assert "tls_reload_refused" in warning and reason in warning, warning
        assert certificates.reloads == 1

        install(one.issue("third", server=True), live)
        assert health_of(port, one) == grpc.StatusCode.OK
        assert certificates.reloads == 2


@pytest.mark.parametrize(
    ("offsets", "message"),
    [
        ((-9, -1), "expired at"),
        ((1, 9), "is not valid before"),
    ],
)
def test_a_certificate_outside_its_validity_is_refused_at_start(
    pki: tuple[CertificateAuthority, CertificateAuthority],
    offsets: tuple[int, int],
    message: str,
) -> None:
    start, end = (NOW + timedelta(days=d) for d in offsets)
    dated = pki[0].issue_dated("dated", start, end)
    with pytest.raises(SecurityConfigError, match=message):
        ServerCertificates(str(dated.cert), str(dated.key), "")


def test_an_expired_certificate_stops_the_gateway_with_one_line_and_exit_2(
    pki: tuple[CertificateAuthority, CertificateAuthority], tmp_path: Path
) -> None:
    expired = pki[0].issue_dated("expired", NOW - timedelta(days=9), NOW - timedelta(days=1))
    env = {
        **os.environ,
        "PRGATE_TLS_CERT_FILE": str(expired.cert),
        "PRGATE_TLS_KEY_FILE": str(expired.key),
        "PRGATE_LISTEN": f"127.0.0.1:{free_port()}",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # never reached: refused before Kafka
    }
    done = subprocess.run(
        [sys.executable, "-m", "gateway"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    (error,) = [e for e in entries if e["level"] == "error"]  # one line says why
    assert f"TLS certificate {expired.cert} expired at" in json.dumps(error)
    assert "Traceback" not in done.stderr
