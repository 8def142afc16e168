"""Opaque, HMAC-signed tokens the gateways of one deployment issue and read back.

A sealed token is urlsafe base64 (unpadded) of ``body | HMAC-SHA256(key, body)[:16]``. Each
kind of token (ListPullRequests page tokens, consistency tokens) has its own ``label``, from
which its key is derived together with ``PRGATE_PAGE_TOKEN_SECRET`` (or, when that is empty,
the deployment's pull-requests topic name): a token of one kind is never accepted as another,
and every gateway of a deployment reads the tokens any of them issued. What a body means is
up to the kind (:mod:`gateway.page_tokens`, :mod:`gateway.consistency_tokens`).

Rotating the secret: tokens are sealed with one key and opened with it or any of the
``accepted`` keys (``PRGATE_PAGE_TOKEN_ACCEPTED_SECRET``), so a rolling restart never refuses
a token another gateway of the deployment issued: first give every gateway the new secret as
the accepted one, then make it the secret with the old one accepted, then drop the old one.
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
    """Seals the tokens of one kind with one HMAC key and opens those sealed with it or
    with one of the ``accepted`` keys (each at least 16 bytes)."""

    def __init__(self, key: bytes, *accepted: bytes) -> None:
        if any(len(k) < 16 for k in (key, *accepted)):
            raise ValueError("a token key needs at least 16 bytes")
        self._key = key
        self._keys = (key, *(k for k in accepted if k != key))

    @staticmethod
    def deployment_key(label: bytes, secret: str, deployment: str) -> bytes:
        """The key of the tokens of kind ``label`` of a deployment: from ``secret`` when set,
        else from ``deployment`` (the pull-requests topic name), so every gateway agrees."""
        material = b"secret:" + secret.encode() if secret else b"deployment:" + deployment.encode()
        return hmac.new(label, material, hashlib.sha256).digest()

    @classmethod
    def deployment_keys(
        cls, label: bytes, secret: str, deployment: str, accepted_secret: str = ""
    ) -> list[bytes]:
        """The key of :meth:`deployment_key`, then that of ``accepted_secret`` when set."""
        keys = [cls.deployment_key(label, secret, deployment)]
        if accepted_secret:
            keys.append(cls.deployment_key(label, accepted_secret, deployment))
        return keys

    @staticmethod
    def _mac(key: bytes, body: bytes) -> bytes:
        return hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES]

    def seal(self, body: bytes) -> str:
        """The token of ``body``: ASCII, URL and header safe."""
        sealed = body + self._mac(self._key, body)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def open(self, token: str, what: str) -> bytes:
        """The body of a token sealed with this object's key or an accepted one;
        BadToken("<what> was not issued by this service") for anything else."""
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
        if not any(hmac.compare_digest(mac, self._mac(key, body)) for key in self._keys):
            raise refused
        return body
