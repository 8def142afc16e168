"""Consistency tokens: read-your-writes across the gateways of a deployment.

Every receipt and query answer about a pull request carries a token naming that pull request
and a version of it; a later call that carries the token, to any gateway, first waits (bounded
by its deadline) until that gateway's read model holds the pull request at that version or a
newer one. This is the position bound of Kafka Streams' interactive queries, with the pull
request's version as the position:

* the version is what "has reached it" means for the read model: it is per pull request, only
  grows, and the read model reaches it either from the snapshot on the compacted
  pull-requests topic or earlier, by folding the result's events (:mod:`gateway.read_model`);
  an offset of the pull-requests topic would not see that early fold, and the gateway learns a
  command's outcome from the results topic, which carries the version but not the snapshot's
  offset;
* one token per pull request is enough for everything the contract promises to read back (a
  command and queries about its own pull request); ListPullRequests takes a token of any pull
  request and waits for that one before it lists.

A token is sealed by :mod:`gateway.signed_tokens` (HMAC keyed by ``PRGATE_PAGE_TOKEN_SECRET``,
or by the deployment's pull-requests topic name, with a label of its own, so a page token is
never a consistency token). Its body is::

    format (1 byte, 1) | version (8 bytes, big-endian) | pull request id (UTF-8)

A forged token could only make a call wait for a version that never comes, bounded by the
call's deadline; the signature keeps foreign and mangled tokens from doing even that, and
tells their callers at once (INVALID_ARGUMENT).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.rpc import code_pb2

from gateway import refusals
from gateway.command_requests import reply_budget
from gateway.ports import PullRequestView
from gateway.refusals import Refusal
from gateway.signed_tokens import BadToken, SignedTokens

_FORMAT = 1
_VERSION_BYTES = 8
_KEY_LABEL = b"prgate.v1 consistency tokens"
INVALID_REASON = "INVALID_CONSISTENCY_TOKEN"
BEHIND_REASON = "READ_MODEL_BEHIND"


class BadConsistencyToken(BadToken):
    """A token this deployment's gateways did not issue; the message never echoes it."""


@dataclass(frozen=True)
class Position:
    """What a token names: pull request ``pull_request_id`` at ``version`` or newer."""

    pull_request_id: str
    version: int


class ConsistencyTokens:
    """Issues consistency tokens with one HMAC key and reads those of it and of the
    ``accepted`` keys (each at least 16 bytes)."""

    def __init__(self, key: bytes, *accepted: bytes) -> None:
        self._sealer = SignedTokens(key, *accepted)

    @classmethod
    def for_deployment(
        cls, secret: str, deployment: str, accepted_secret: str = ""
    ) -> ConsistencyTokens:
        """The tokens of a deployment (every gateway of it reads those of the others); those
        signed with ``accepted_secret`` are read too (rotating the secret)."""
        return cls(*SignedTokens.deployment_keys(_KEY_LABEL, secret, deployment, accepted_secret))

    def issue(self, position: Position) -> str:
        """The token of ``position`` (version 0..2^63-1)."""
        version = max(0, position.version).to_bytes(_VERSION_BYTES, "big")
        return self._sealer.seal(bytes([_FORMAT]) + version + position.pull_request_id.encode())

    def read(self, token: str, field: str) -> Position:
        """The position of a token this deployment issued; BadConsistencyToken("<field> was
        not issued by this service") for anything else."""
        not_ours = f"{field} was not issued by this service"
        try:
            body = self._sealer.open(token, field)
        except BadToken:
            raise BadConsistencyToken(not_ours) from None
        if len(body) <= 1 + _VERSION_BYTES or body[0] != _FORMAT:
            raise BadConsistencyToken(not_ours)
        try:
            pull_request_id = body[1 + _VERSION_BYTES :].decode("utf-8")
        except UnicodeDecodeError:  # signed by us, so never: but not a reason to crash
            raise BadConsistencyToken(not_ours) from None
        return Position(pull_request_id, int.from_bytes(body[1 : 1 + _VERSION_BYTES], "big"))


class ConsistencyGate:
    """Where calls read their tokens, wait for the read model, and get new tokens.

    ``default_wait_s`` bounds the wait of a call without a deadline; a call with one waits
    until just before it (:func:`gateway.command_requests.reply_budget`).
    """

    def __init__(
        self, tokens: ConsistencyTokens, view: PullRequestView, *, default_wait_s: float
    ) -> None:
        self._tokens = tokens
        self._view = view
        self._default_wait_s = default_wait_s

    def read(self, token: str, field: str, pull_request_id: str | None = None) -> Position | None:
        """The position of ``token`` sent in ``field`` (None for ""). Refusal INVALID_ARGUMENT
        (BadRequest on ``field``, reason INVALID_CONSISTENCY_TOKEN) for a token not issued by
        this deployment, or, when ``pull_request_id`` is given, issued for another one."""
        if not token:
            return None
        try:
            position = self._tokens.read(token, field)
        except BadConsistencyToken as exc:
            raise refusals.invalid_argument(field, INVALID_REASON, str(exc)) from None
        if pull_request_id is not None and position.pull_request_id != pull_request_id:
            raise refusals.invalid_argument(
                field,
                INVALID_REASON,
                f"{field} belongs to another pull request: send the token of the pull request"
                " the call is about",
            )
        return position

    def version(self, pull_request_id: str) -> int:
        """The version of the pull request this gateway's read model holds (0: none)."""
        entity = self._view.get(pull_request_id)
        return 0 if entity is None else entity.version

    def budget(self, time_remaining: float | None) -> float:
        """Seconds a call with ``time_remaining`` seconds left (None: no deadline) may wait."""
        return reply_budget(time_remaining, self._default_wait_s)

    async def reach(self, position: Position | None, budget: float) -> None:
        """Return once the read model holds ``position`` (at once for None). When ``budget``
        seconds pass first: Refusal UNAVAILABLE, reason READ_MODEL_BEHIND, with the wanted and
        the reached version (and RetryInfo: another gateway, or this one a little later, may
        have it). Nothing else is waited for, so the call still answers within its deadline."""
        if position is None:
            return
        budget = max(0.0, budget)
        if await self._view.wait_for_version(position.pull_request_id, position.version, budget):
            return
        reached = self.version(position.pull_request_id)
        raise read_model_behind(position, reached, budget)

    def issue(self, pull_request_id: str, *versions: int) -> str:
        """A token for ``pull_request_id`` at the highest of ``versions`` and the version this
        gateway's read model holds ("" without a pull request id)."""
        if not pull_request_id:
            return ""
        version = max((self.version(pull_request_id), *versions))
        return self._tokens.issue(Position(pull_request_id, version))


def read_model_behind(position: Position, reached: int, waited_s: float) -> Refusal:
    """UNAVAILABLE: the read model did not reach ``position`` in ``waited_s`` seconds."""
    return refusals.error(
        code_pb2.UNAVAILABLE,
        f"this gateway's read model has pull request {position.pull_request_id} at version"
        f" {reached}, not yet at version {position.version} that the consistency token names"
        f" (waited {waited_s:.3f} s); retry, on this or another gateway",
        refusals.error_info(
            BEHIND_REASON,
            pull_request_id=position.pull_request_id,
            wanted_version=str(position.version),
            reached_version=str(reached),
        ),
        refusals.retry_after(0.5),
    )
