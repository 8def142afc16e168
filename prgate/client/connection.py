"""How a client reaches the gateway: target, channel credentials, bearer token, options."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 30.0
USER_AGENT = "prgate-python-client/0.1"

ChannelOptions = Sequence[tuple[str, Any]]
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Connection:
    """Where and how to connect. ``credentials`` None means plaintext (local development).

    The bearer token travels as ``authorization: Bearer <token>`` metadata on every call, so it
    works with TLS channel credentials and, for local testing, on a plaintext channel.
    """

    target: str = DEFAULT_TARGET
    credentials: grpc.ChannelCredentials | None = None
    token: str | None = None
    options: ChannelOptions = field(default=())

    def channel_options(self) -> list[tuple[str, Any]]:
        return [("grpc.primary_user_agent", USER_AGENT), *self.options]

    def metadata(self) -> Metadata:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


# Certificate chains and keys are kilobytes; a larger file is the wrong one.
MAX_PEM_BYTES = 1024 * 1024


def read_pem(path: str) -> bytes:
    """The bytes of the PEM file at ``path``; ValueError naming it when it is missing,
    unreadable or not PEM (grpc would only log that and fail every call UNAVAILABLE)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_PEM_BYTES or b"-----BEGIN " not in data:
        raise ValueError(f"{path} is not a PEM file (no -----BEGIN line)")
    return data


def tls_credentials(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> grpc.ChannelCredentials:
    """TLS channel credentials from PEM files: a CA (else the system roots) and, for mutual
    TLS, a client certificate and key. ValueError for a file :func:`read_pem` refuses."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("mutual TLS needs both a client certificate and its key")
    return grpc.ssl_channel_credentials(
        root_certificates=None if ca_file is None else read_pem(ca_file),
        private_key=None if key_file is None else read_pem(key_file),
        certificate_chain=None if cert_file is None else read_pem(cert_file),
    )
