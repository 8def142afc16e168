"""Transport security and authentication of the gateway, built from its settings.

- TLS: ``tls_cert_file`` + ``tls_key_file`` (PEM; the certificate file may hold the chain)
  switch the listener to TLS. ``tls_client_ca_file`` additionally requires every client to
  present a certificate signed by that CA (mutual TLS).
- Authentication: ``auth_token_file`` turns on bearer tokens (gateway/auth.py,
  gateway/auth_tokens.py). Off by default, so local runs need no setup.

Certificates are read once at start: replacing them needs a restart. The token file is
reloaded without one (on change, and on SIGHUP).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from gateway.auth import AuthInterceptor, caller_of
from gateway.auth_tokens import TokenFileError, TokenStore
from gateway.settings import GatewaySettings

log = logging.getLogger("prgate.gateway.security")


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


def server_credentials(settings: GatewaySettings) -> grpc.ServerCredentials | None:
    """TLS (or mTLS) credentials from the settings; None for a plaintext listener."""
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
    chain = _read_pem(cert, "TLS certificate", b"CERTIFICATE-----")
    private_key = _read_pem(key, "TLS private key", b"PRIVATE KEY-----")
    roots = _read_pem(client_ca, "TLS client CA", b"CERTIFICATE-----") if client_ca else None
    return grpc.ssl_server_credentials(
        [(private_key, chain)],
        root_certificates=roots,
        require_client_auth=roots is not None,
    )


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


def build_security(settings: GatewaySettings) -> Security:
    """Credentials and, when a token file is set, the auth interceptor; SystemExit if wrong."""
    security = Security(credentials=server_credentials(settings))
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
        if security.credentials is None and not _is_loopback(settings.listen):
            # Bearer tokens over plaintext can be read by anyone on the path.
            log.warning(
                "auth_without_tls listen=%s hint=set_tls_cert_file_and_tls_key_file",
                settings.listen,
            )
    log.info(
        "gateway_security transport=%s client_certificates=%s auth=%s",
        security.mode,
        "required" if settings.tls_client_ca_file else "no",
        "bearer" if security.tokens is not None else "off",
    )
    return security
