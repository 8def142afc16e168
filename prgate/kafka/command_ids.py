"""Command ids that name one command: each id is bound to the pull request it was issued for.

A command id is ``<base>.<tag>`` (65 characters):

- ``base``: 32 lowercase hex digits. A fresh random UUID for a call without an idempotency key;
  for a call with one, the UUIDv5 of the caller and the key, so a retry through any gateway
  gets the same base (and, for the same pull request, the same command id).
- ``tag``: the first 128 bits of SHA-256 over the pull request id, as 32 lowercase hex digits.

The processor handles a command only when its id's tag is the tag of the command's pull
request (:func:`binds`; the codec refuses anything else), and it answers an id only for that
pull request. So an id used for pull request A and sent again for B (by a buggy or hostile
producer, or an idempotency key reused for B after every gateway forgot it) never gets a second
result: the reused key makes another id, the copied id is dead-lettered. 128 bits keep finding
a second pull request id with the same tag out of reach.

OpenPullRequest's pull request id is ``pr-<base>``, derived from the base, so a retried open
creates one pull request.
"""

from __future__ import annotations

import hashlib
import uuid

BASE_HEX = 32
TAG_HEX = 32
SEPARATOR = "."
COMMAND_ID_LENGTH = BASE_HEX + len(SEPARATOR) + TAG_HEX
# Domain-separates the tag from every other SHA-256 of a pull request id. Fixed: changing it
# unbinds every command id in flight.
_TAG_PREFIX = b"prgate.v1/command-id/pull-request\x00"
_KEY_NAMESPACE = uuid.UUID("6f1d2b8e-8c1e-4d47-9a0b-2f6f3c1d7a10")
_HEX = frozenset("0123456789abcdef")


def new_base() -> str:
    """A random base (a UUIDv4 as 32 hex digits), for a call without an idempotency key."""
    return uuid.uuid4().hex


def key_base(caller: str, idempotency_key: str) -> str:
    """The base of an idempotency key: stable for the same caller and key, on every gateway."""
    return uuid.uuid5(_KEY_NAMESPACE, f"{caller}\x1f{idempotency_key}").hex


def tag_of(pull_request_id: str) -> str:
    """The tag that binds a command id to ``pull_request_id`` (32 hex digits)."""
    digest = hashlib.sha256(_TAG_PREFIX + pull_request_id.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:TAG_HEX]


def bind(base: str, pull_request_id: str) -> str:
    """The command id of ``base`` for ``pull_request_id``. ValueError for a malformed base."""
    if not _is_hex(base, BASE_HEX):
        raise ValueError(f"a command id base is {BASE_HEX} lowercase hex digits, got {base!r}")
    return f"{base}{SEPARATOR}{tag_of(pull_request_id)}"


def base_of(command_id: str) -> str | None:
    """The base of a well-formed command id, None for anything else."""
    base, separator, tag = command_id.partition(SEPARATOR)
    if separator and _is_hex(base, BASE_HEX) and _is_hex(tag, TAG_HEX):
        return base
    return None


def binds(command_id: str, pull_request_id: str) -> bool:
    """Whether ``command_id`` is well formed and issued for ``pull_request_id``."""
    base = base_of(command_id)
    return base is not None and command_id == f"{base}{SEPARATOR}{tag_of(pull_request_id)}"


def opened_pull_request_id(base: str) -> str:
    """The id of the pull request an OpenPullRequest with this base creates: ``pr-<base>``."""
    return f"pr-{base}"


def _is_hex(text: str, length: int) -> bool:
    # issuperset runs in C: this is on every command's path (gateway, processor, archive).
    return len(text) == length and _HEX.issuperset(text)
