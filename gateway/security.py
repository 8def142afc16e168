"""Transport security and authentication of the gateway, built from its settings.

- TLS: ``tls_cert_file`` + ``tls_key_file`` (PEM; the certificate file may hold the chain)
  switch the listener to TLS. ``tls_client_ca_file`` additionally requires every client to
  present a certificate signed by that CA (mutual TLS).
- Authentication: ``auth_token_file`` turns on bearer tokens (gateway/auth.py,
  gateway/auth_tokens.py). Off by default, so local runs need no setup.

Certificates are reloaded without a restart (:class:`ServerCertificates`, grpcio's dynamic
server credentials): each new connection's handshake first checks whether the three files
changed (a ``stat`` each) and, when they did and the new ones are valid, uses them; open
connections keep the certificate they were made with. A certificate that has expired or is not
valid yet, or a key that does not belong to it, is refused: at start the gateway exits
(``EXIT_CONFIG``), on a reload it keeps the current files and logs why. The token file is
reloaded too (on change, and on SIGHUP); a token removed from it also ends the streams it
opened.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from gateway.auth import AuthInterceptor, caller_of, revoked
from gateway.auth_tokens import TokenFileError, TokenStore
from gateway.settings import GatewaySettings
from gateway.streams import OpenStreams

log = logging.getLogger(__name__)


class SecurityConfigError(SystemExit):
    """A security setting that cannot work; the gateway refuses to start."""


def _read_pem(path: str, what: str, marker: bytes) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SecurityConfigError(f"{what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data or marker not in data:
        raise SecurityConfigError(f"{what} {path}: not a PEM file with {marker.decode()}")
    return data


def _check_pair(cert_path: str, key_path: str, chain: bytes, now: datetime) -> datetime:
    """The leaf certificate's expiry; raises :class:`SecurityConfigError` when the key does
    not belong to it or ``now`` is outside its validity period."""
    try:
        leaf = x509.load_pem_x509_certificates(chain)[0]
    except ValueError as exc:
        raise SecurityConfigError(f"TLS certificate {cert_path}: {exc}") from None
    if now >= leaf.not_valid_after_utc:
        raise SecurityConfigError(
            f"TLS certificate {cert_path} expired at {leaf.not_valid_after_utc.isoformat()}"
        )
    if now < leaf.not_valid_before_utc:
        raise SecurityConfigError(
            f"TLS certificate {cert_path} is not valid before "
            f"{leaf.not_valid_before_utc.isoformat()}"
        )
    try:  # OpenSSL's own check that the key is the certificate's
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as exc:
        raise SecurityConfigError(
            f"TLS private key {key_path} does not belong to {cert_path}: {exc}"
        ) from None
    return leaf.not_valid_after_utc


_Stamp = tuple[tuple[int, int, int] | None, ...]


class ServerCertificates:
    """The gateway's certificate, key and client CA files, reloaded when they change.

    :meth:`credentials` are grpcio's dynamic SSL server credentials: gRPC calls :meth:`fetch`
    before each new connection's handshake (from its own threads), which returns the new
    configuration when the files changed and are valid, else None (keep the current one).
    The Connect port (gateway/connect_http.py) calls :meth:`refresh` in its handshakes and
    follows ``reloads``.
    Raises :class:`SecurityConfigError` at construction when the files cannot work.
    """

    def __init__(self, cert: str, key: str, client_ca: str) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._refused: _Stamp | None = None
        initial, self.not_after = self._load()
        self._initial = self._latest = initial
        self.reloads = 0
        self._grpc_has = 0  # the reload whose configuration the gRPC port has

    def _paths(self) -> list[str]:
        return [p for p in (self.cert, self.key, self.client_ca) if p]

    def _stat(self) -> _Stamp:
        stamps: list[tuple[int, int, int] | None] = []
        for path in self._paths():
            try:
                st = os.stat(path)
            except OSError:
                stamps.append(None)
            else:
                stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(stamps)

    def _load(self) -> tuple[grpc.ServerCertificateConfiguration, datetime]:
        chain = _read_pem(self.cert, "TLS certificate", b"CERTIFICATE-----")
        private_key = _read_pem(self.key, "TLS private key", b"PRIVATE KEY-----")
        roots = (
            _read_pem(self.client_ca, "TLS client CA", b"CERTIFICATE-----")
            if self.client_ca
            else None
        )
        not_after = _check_pair(self.cert, self.key, chain, datetime.now(UTC))
        configuration = grpc.ssl_server_certificate_configuration(
            [(private_key, chain)], root_certificates=roots
        )
        return configuration, not_after

    def refresh(self) -> None:
        """Reload the files when they changed and are valid (``reloads`` counts it); keep the
        current ones otherwise (a refusal is logged once per change, with the reason). Each
        port asks before each new connection's handshake."""
        stamp = self._stat()
        with self._lock:
            if stamp in (self._stamp, self._refused):
                return
            try:
                configuration, not_after = self._load()
            except SecurityConfigError as exc:
                self._refused = stamp
                log.warning(
                    "tls_reload_refused", extra={"reason": str(exc.code), "kept": "current"}
                )
                return
            self._stamp, self._refused, self.not_after = stamp, None, not_after
            self._latest = configuration
            self.reloads += 1
        log.info(
            "tls_certificates_reloaded",
            extra={"cert": self.cert, "not_after": not_after.isoformat()},
        )

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's fetcher: the newest configuration when the gRPC port does not have it yet
        (the files changed, whichever port noticed first); None to keep the current one."""
        self.refresh()
        with self._lock:
            if self._grpc_has == self.reloads:
                return None
            self._grpc_has = self.reloads
            return self._latest

    def credentials(self) -> grpc.ServerCredentials:
        """Dynamic server credentials starting from the files read at construction."""
        # grpcio documents None as "no change"; grpc-stubs types the fetcher without it.
        return grpc.dynamic_ssl_server_credentials(
            self._initial,
            self.fetch,  # type: ignore[arg-type]
            require_client_authentication=bool(self.client_ca),
        )


def server_certificates(settings: GatewaySettings) -> ServerCertificates | None:
    """The reloading TLS (or mTLS) files of the settings; None for a plaintext listener.

    Raises :class:`SecurityConfigError` when they cannot work (missing, not PEM, expired, not
    yet valid, a key that is not the certificate's, a client CA without TLS).
    """
    cert, key, client_ca = (
        settings.tls_cert_file,
        settings.tls_key_file,
        settings.tls_client_ca_file,
    )
    if not cert and not key:
        if client_ca:
            raise SecurityConfigError(
                "--tls-client-ca-file needs --tls-cert-file and --tls-key-file (mTLS is TLS)"
            )
        return None
    if not cert or not key:
        raise SecurityConfigError("TLS needs both --tls-cert-file and --tls-key-file")
    return ServerCertificates(cert, key, client_ca)


def server_credentials(settings: GatewaySettings) -> grpc.ServerCredentials | None:
    """TLS (or mTLS) credentials that reload changed files; None for a plaintext listener."""
    certificates = server_certificates(settings)
    return None if certificates is None else certificates.credentials()


def _is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Security:
    """What start_gateway needs: credentials, interceptors, the caller function, the tokens."""

    credentials: grpc.ServerCredentials | None = None
    certificates: ServerCertificates | None = None
    tokens: TokenStore | None = None
    interceptors: list[Any] = field(default_factory=list)
    caller_of: Callable[[Any], str] | None = None

    @property
    def mode(self) -> str:
        return "plaintext" if self.credentials is None else "tls"

    def reload_tokens(self) -> None:
        """SIGHUP: read the token file again (a bad file keeps the current tokens)."""
        if self.tokens is not None:
            self.tokens.reload()

    async def watch_tokens(self, interval_s: float) -> None:
        """Check the token file for changes every ``interval_s`` seconds, until cancelled.

        Calls check it too, but only when calls come: a revoked token must end its streams
        even when nobody calls.
        """
        if self.tokens is None or interval_s <= 0:
            return
        while True:
            await asyncio.sleep(interval_s)
            self.tokens.reload_if_changed()


def build_security(settings: GatewaySettings, streams: OpenStreams | None = None) -> Security:
    """Credentials and, when a token file is set, the auth interceptor; SystemExit if wrong.

    With ``streams`` (tagged with :func:`gateway.auth.current_token_digest`), each reload of
    the token file ends the streams whose token is no longer in it.
    """
    certificates = server_certificates(settings)
    security = Security(
        credentials=None if certificates is None else certificates.credentials(),
        certificates=certificates,
    )
    if settings.auth_token_file:
        try:
            tokens = TokenStore(
                settings.auth_token_file, check_interval_s=settings.auth_reload_interval_s
            )
        except TokenFileError as exc:
            raise SecurityConfigError(str(exc)) from None
        security.tokens = tokens
        security.interceptors.append(AuthInterceptor(tokens))
        security.caller_of = caller_of
        if streams is not None:

            def end_revoked_streams() -> None:
                streams.end_where(
                    lambda tag: isinstance(tag, str) and not tokens.knows(tag), revoked()
                )

            tokens.add_listener(end_revoked_streams)
        if security.credentials is None and not _is_loopback(settings.listen):
            # Bearer tokens over plaintext can be read by anyone on the path.
            log.warning(
                "auth_without_tls",
                extra={"listen": settings.listen, "hint": "set_tls_cert_file_and_tls_key_file"},
            )
    log.info(
        "gateway_security",
        extra={
            "transport": security.mode,
            "client_certificates": "required" if settings.tls_client_ca_file else "no",
            "auth": "bearer" if security.tokens is not None else "off",
        },
    )
    return security
