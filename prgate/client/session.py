"""Read-your-writes across gateways: the consistency tokens one client has been given.

Every receipt and query answer of the gateway carries an opaque ``consistency_token`` naming a
pull request at a version (docs/contract.md, "Consistency tokens"). A :class:`Session`
remembers the newest token per pull request and puts it on the next call about that pull
request (a command's ``options.consistency_token``, Get's and Watch's ``consistency_token``),
and the newest token of all on ListPullRequests, so that call waits, on whichever gateway
serves it, until that gateway's read model has the client's own writes.

"Newest" is judged by the version the answer shows (the result's, or the pull request's): a
token is kept unless one for a higher version is known already, so answers that overtake each
other never move a client back. An ACCEPTED receipt shows no version; its token is kept only
when none is known for the pull request.

A token the gateway refuses (INVALID_ARGUMENT, reason INVALID_CONSISTENCY_TOKEN: another
deployment's, or signed with a secret since changed) is forgotten, and the client makes the
call again without it (:meth:`refused`). A token the gateway's read model did not reach in
any attempt (READ_MODEL_BEHIND after the client's retries) is forgotten too (:meth:`unreached`),
so it does not hold up every later call.

A session is safe to share between threads; it keeps at most ``max_entries`` pull requests
(least recently used first out), and :meth:`to_json`/:meth:`from_json` carry it from one
process to the next (the CLI keeps it in a file).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from prgate.client.errors import PrgateError
from prgate.v1 import query_service_pb2

DEFAULT_MAX_ENTRIES = 10_000
REFUSED_REASON = "INVALID_CONSISTENCY_TOKEN"
BEHIND_REASON = "READ_MODEL_BEHIND"


class Session:
    """The newest consistency token per pull request (see the module)."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._max = max(1, max_entries)
        self._tokens: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._latest = ""
        self._lock = threading.Lock()

    def token(self, pull_request_id: str) -> str:
        """The newest token known for ``pull_request_id`` ("" when none)."""
        with self._lock:
            entry = self._tokens.get(pull_request_id)
            return "" if entry is None else entry[1]

    @property
    def latest(self) -> str:
        """The token of the newest answer this session took, of any pull request."""
        return self._latest

    def remember(self, pull_request_id: str, version: int, token: str) -> None:
        """Keep ``token`` of ``pull_request_id`` at ``version`` (0: not shown) unless a token
        for a higher version is known."""
        if not pull_request_id or not token:
            return
        with self._lock:
            known = self._tokens.get(pull_request_id)
            if known is not None and (version < known[0] or (version == 0 and known[0] > 0)):
                return
            self._tokens[pull_request_id] = (version, token)
            self._tokens.move_to_end(pull_request_id)
            self._latest = token
            while len(self._tokens) > self._max:
                self._tokens.popitem(last=False)

    def stamp(self, request: Any) -> None:
        """Put the session's token on ``request`` (any request of the gateway's RPCs) when
        it takes one and the caller did not set one."""
        if isinstance(request, query_service_pb2.ListPullRequestsRequest):
            if not request.consistency_token:
                request.consistency_token = self._latest
            return
        if hasattr(request, "options") and hasattr(request, "command"):
            pull_request_id = getattr(request.command, "pull_request_id", "")
            if pull_request_id and not request.options.consistency_token:
                request.options.consistency_token = self.token(pull_request_id)
            return
        if hasattr(request, "consistency_token") and not request.consistency_token:
            request.consistency_token = self.token(request.pull_request_id)

    def refused(self, request: Any, error: PrgateError) -> bool:
        """After ``error`` answered ``request``: True when it refused the token the session put
        on the request, which is then forgotten and taken off the request (so the call is
        made again without it); False for any other error."""
        if not any(v.reason == REFUSED_REASON for v in error.field_violations):
            return False
        holder = request.options if hasattr(request, "options") else request
        token = getattr(holder, "consistency_token", "")
        if not token:
            return False
        holder.consistency_token = ""
        self._forget(token)
        return True

    def unreached(self, request: Any, error: PrgateError) -> None:
        """After ``error`` ended ``request`` for good: when it is READ_MODEL_BEHIND, forget
        the token the request carried. The gateway's read model did not reach its version
        within every attempt's deadline; kept, it would make each later call about that pull
        request (and every ``list``) wait out its deadline again: for ever after a local
        cluster is recreated under the same topic names, whose gateways still read the old
        tokens but never reach their versions."""
        if error.reason != BEHIND_REASON:
            return
        holder = request.options if hasattr(request, "options") else request
        token = getattr(holder, "consistency_token", "")
        if token:
            self._forget(token)

    def _forget(self, token: str) -> None:
        with self._lock:
            for key in [k for k, (_, known) in self._tokens.items() if known == token]:
                del self._tokens[key]
            if self._latest == token:
                self._latest = ""

    def take(self, response: Any) -> None:
        """Remember the token of a response (or streamed item) of any of the gateway's RPCs."""
        receipt = getattr(response, "receipt", None)
        if receipt is not None:
            version = receipt.result.version if receipt.HasField("result") else 0
            self.remember(receipt.pull_request_id, version, receipt.consistency_token)
            return
        pull_request = getattr(response, "pull_request", None)
        token = getattr(response, "consistency_token", "")
        if pull_request is not None and token:
            self.remember(pull_request.pull_request_id, pull_request.version, token)

    def to_json(self) -> str:
        """The session as JSON, oldest pull request first (for :meth:`from_json`)."""
        with self._lock:
            entries = [[key, version, token] for key, (version, token) in self._tokens.items()]
            return json.dumps({"latest": self._latest, "tokens": entries})

    @classmethod
    def from_json(cls, text: str, max_entries: int = DEFAULT_MAX_ENTRIES) -> Session:
        """A session from :meth:`to_json`'s text; ValueError when it is not that (also for
        JSON nested too deep to read, a version that is not an integer in 0..2^63-1, or an
        empty id or token: a hand-edited version far above the gateway's would make the
        session keep that token forever)."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("not a prgate client session (nested too deep)") from None
        if not isinstance(data, dict) or not isinstance(data.get("tokens"), list):
            raise ValueError("not a prgate client session")
        session = cls(max_entries)
        for entry in data["tokens"]:
            if not _is_entry(entry):
                raise ValueError("not a prgate client session")
            session.remember(entry[0], entry[1], entry[2])
        latest = data.get("latest", "")
        session._latest = latest if isinstance(latest, str) else ""
        return session


MAX_VERSION = 2**63 - 1  # versions are int64 (pull_request.proto)


def _is_entry(entry: Any) -> bool:
    """Whether ``entry`` is ``[pull request id, version, token]`` as :meth:`Session.to_json`
    writes it."""
    return (
        isinstance(entry, list)
        and len(entry) == 3
        and isinstance(entry[0], str)
        and bool(entry[0])
        and type(entry[1]) is int
        and 0 <= entry[1] <= MAX_VERSION
        and isinstance(entry[2], str)
        and bool(entry[2])
    )
