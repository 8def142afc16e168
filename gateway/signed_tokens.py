"""Opaque, HMAC-signed tokens the gateways of one deployment issue and read back.

A sealed token is urlsafe base64 (unpadded) of ``body | HMAC-SHA256(key, body)[:16]``. Each
kind of token (ListPullRequests page tokens, consistency tokens) has its own ``label``, from
which its key is derived together with ``PRGATE_PAGE_TOKEN_SECRET`` (or, when that is empty,
the deployment's pull-requests topic name): a token of one kind is never accepted as another,
and every gateway of a deployment reads the tokens any of them issued. What a body means is
up to the kind (:mod:`gateway.page_tokens`, :mod:`gateway.consistency_tokens`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

MAC_BYTES = 16
# Longer than any token the gateway issues (ids are at most 128 bytes): refused unread.
MAX_TOKEN_LENGTH = 1024


class BadToken(ValueError):
    """Not a token of this kind from this deployment (tampered, truncated, foreign, not
    base64); the message never echoes the token."""


class SignedTokens:
    """Seals and opens the tokens of one kind with one HMAC key (at least 16 bytes)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a token key needs at least 16 bytes")
        self._key = key

    @staticmethod
    def deployment_key(label: bytes, secret: str, deployment: str) -> bytes:
        """The key of the tokens of kind ``label`` of a deployment: from ``secret`` when set,
        else from ``deployment`` (the pull-requests topic name), so every gateway agrees."""
        material = b"secret:" + secret.encode() if secret else b"deployment:" + deployment.encode()
        return hmac.new(label, material, hashlib.sha256).digest()

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:MAC_BYTES]

    def seal(self, body: bytes) -> str:
        """The token of ``body``: ASCII, URL and header safe."""
        return base64.urlsafe_b64encode(body + self._mac(body)).rstrip(b"=").decode("ascii")

    def open(self, token: str, what: str) -> bytes:
        """The body of a token this object sealed; BadToken("<what> was not issued by this
        service") for anything else."""
        refused = BadToken(f"{what} was not issued by this service")
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
            raise refused
        try:
            raw = token.encode("ascii")
            data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            raise refused from None
        # urlsafe_b64decode skips characters outside its alphabet; a token must have none.
        if base64.urlsafe_b64encode(data).rstrip(b"=") != raw.rstrip(b"="):
            raise refused
        if len(data) <= MAC_BYTES:
            raise refused
        body, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise refused
        return body
