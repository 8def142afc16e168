"""ListPullRequests page tokens: opaque, signed, and bound to the query that issued them.

A token is urlsafe base64 (unpadded) of::

    version (1 byte, 1) | query (8 bytes) | after (the last pull request id examined, UTF-8)
    | HMAC-SHA256 of all that, first 16 bytes

sealed by :mod:`gateway.signed_tokens`. ``query`` is a digest of the repository (canonical
form) and the status filter, so a token is refused for any other listing; the page size may
change from page to page (AIP-158).
The HMAC key comes from ``PRGATE_PAGE_TOKEN_SECRET`` (every gateway of a deployment needs the
same one, so a client's next page may go to any of them), or, when it is empty, from the
deployment's pull-requests topic name: tokens then work on every gateway of the deployment and
across restarts without configuration, and are refused by other deployments, but anyone who
knows the topic name can mint one. Forging a token only lets a caller start a listing at an id
of their choice, which shows nothing that listing from the start would not, so the secret is a
hardening, not a requirement. Changing the secret invalidates the tokens in flight (their
clients get INVALID_ARGUMENT and start the listing again) unless it is rotated through
``PRGATE_PAGE_TOKEN_ACCEPTED_SECRET`` (:mod:`gateway.signed_tokens`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gateway.signed_tokens import MAX_TOKEN_LENGTH, BadToken, SignedTokens

__all__ = ["MAX_TOKEN_LENGTH", "BadPageToken", "ListQuery", "PageTokens"]

_VERSION = 1
_QUERY_BYTES = 8
_KEY_LABEL = b"prgate.v1 ListPullRequests page tokens"
_NOT_OURS = "page_token was not issued by this service"


class BadPageToken(BadToken):
    """A token this deployment's gateways did not issue for this query; the message says which
    of those it is, never echoing the token."""


@dataclass(frozen=True)
class ListQuery:
    """What a token is bound to: the filters of the listing (repository in canonical form)."""

    repository: str
    status: int

    def digest(self) -> bytes:
        text = f"{self.repository}\x00{self.status}".encode()
        return hashlib.sha256(text).digest()[:_QUERY_BYTES]


class PageTokens:
    """Issues and reads page tokens with one HMAC key (:mod:`gateway.signed_tokens`)."""

    def __init__(self, key: bytes, *accepted: bytes) -> None:
        self._sealer = SignedTokens(key, *accepted)

    @classmethod
    def for_deployment(cls, secret: str, deployment: str, accepted_secret: str = "") -> PageTokens:
        """The tokens of a deployment: keyed by ``secret`` when set, else by ``deployment``
        (the pull-requests topic name), so every gateway of it agrees; those signed with
        ``accepted_secret`` are read too (rotating the secret)."""
        return cls(*SignedTokens.deployment_keys(_KEY_LABEL, secret, deployment, accepted_secret))

    def issue(self, query: ListQuery, after: str) -> str:
        """The token of the page that follows the id ``after`` in ``query``."""
        return self._sealer.seal(bytes([_VERSION]) + query.digest() + after.encode())

    def read(self, query: ListQuery, token: str) -> str:
        """The id the token continues after; raises BadPageToken for anything else than a
        token issued for ``query`` (tampered, truncated, foreign, another query, not base64)."""
        try:
            body = self._sealer.open(token, "page_token")
        except BadToken:
            raise BadPageToken(_NOT_OURS) from None
        if len(body) < 1 + _QUERY_BYTES or body[0] != _VERSION:
            raise BadPageToken(_NOT_OURS)
        if body[1 : 1 + _QUERY_BYTES] != query.digest():
            raise BadPageToken(
                "page_token belongs to another listing: keep repository and status the same"
                " while paging"
            )
        try:
            return body[1 + _QUERY_BYTES :].decode("utf-8")
        except UnicodeDecodeError:  # signed by us, so never: but not a reason to crash
            raise BadPageToken(_NOT_OURS) from None
