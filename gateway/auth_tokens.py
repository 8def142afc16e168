"""The bearer-token file: which token belongs to which principal, with which roles.

Format (JSON, one object)::

    {
      "tokens": [
        {"principal": "ada", "token": "a-long-random-string", "roles": []},
        {"principal": "merge-bot", "token_sha256": "<64 hex digits>", "roles": ["act-as-any"]},
        {"principal": "ops", "token": "another-long-random-string", "roles": ["admin"]}
      ]
    }

Each entry names its ``principal`` (the user name that command actor fields must equal) and
either the ``token`` itself or ``token_sha256``, the hex SHA-256 of the token, so that the file
need not hold the secret. A principal may have several entries (token rotation). Tokens are
16 to 4096 printable ASCII characters without spaces. Roles are those of :data:`ROLES`; an
unknown role is an error, so a typo cannot silently grant or withhold a right.

In memory only digests are kept. Nothing here logs or puts a token into an exception message.
The store reloads the file when its modification time, size or inode changes (checked at most
every ``check_interval_s`` on a call, and by the gateway's watcher task in between) and on
:meth:`TokenStore.reload` (SIGHUP); listeners hear of each reload. A file that fails to load at
start is fatal; a bad file on reload is logged and the previous tokens stay.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ROLE_ADMIN = "admin"
ROLE_ACT_AS_ANY = "act-as-any"
ROLE_CHECKS = "checks"
ROLES: Mapping[str, str] = {
    ROLE_ADMIN: "every right, including acting for other users and recording check results",
    ROLE_ACT_AS_ANY: "may send commands whose actor fields name other users (bots, relays)",
    ROLE_CHECKS: "may record check results (CI systems); nobody else may",
}
ACTING_FOR_OTHERS = frozenset({ROLE_ADMIN, ROLE_ACT_AS_ANY})
RECORDING_CHECKS = frozenset({ROLE_ADMIN, ROLE_CHECKS})

MIN_TOKEN_LENGTH = 16
MAX_TOKEN_LENGTH = 4096
MAX_PRINCIPAL_LENGTH = 256
MAX_FILE_BYTES = 4 * 1024 * 1024
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_PRINCIPAL_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class TokenFileError(ValueError):
    """The token file cannot be used; the message never contains a token."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    name: str
    roles: frozenset[str] = frozenset()

    @property
    def may_act_for_others(self) -> bool:
        return bool(self.roles & ACTING_FOR_OTHERS)

    @property
    def may_record_checks(self) -> bool:
        return bool(self.roles & RECORDING_CHECKS)


def token_digest(token: str) -> str:
    """Hex SHA-256 of a token: the form tokens are kept in (and ``token_sha256`` in the file)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _entry(index: int, raw: Any) -> tuple[str, Principal]:
    where = f"tokens[{index}]"
    if not isinstance(raw, dict):
        raise TokenFileError(f"{where} must be an object")
    unknown = set(raw) - {"principal", "token", "token_sha256", "roles", "comment"}
    if unknown:
        raise TokenFileError(f"{where} has unknown keys {sorted(unknown)}")
    name = raw.get("principal")
    if (
        not isinstance(name, str)
        or not name.strip()
        or name != name.strip()
        or len(name) > MAX_PRINCIPAL_LENGTH
        or _PRINCIPAL_FORBIDDEN.search(name)
    ):
        raise TokenFileError(
            f"{where}.principal must be 1 to {MAX_PRINCIPAL_LENGTH} characters, one line,"
            " without surrounding spaces"
        )
    roles = raw.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TokenFileError(f"{where}.roles (principal {name!r}) must be a list of strings")
    unknown_roles = sorted(set(roles) - set(ROLES))
    if unknown_roles:
        raise TokenFileError(
            f"{where}.roles (principal {name!r}): unknown {unknown_roles}; known: {sorted(ROLES)}"
        )
    token, hashed = raw.get("token"), raw.get("token_sha256")
    if (token is None) == (hashed is None):
        raise TokenFileError(
            f"{where} (principal {name!r}) needs exactly one of token, token_sha256"
        )
    if token is not None:
        if (
            not isinstance(token, str)
            or not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH
            or not _TOKEN_CHARS.fullmatch(token)
        ):
            raise TokenFileError(
                f"{where}.token (principal {name!r}) must be {MIN_TOKEN_LENGTH} to"
                f" {MAX_TOKEN_LENGTH} printable ASCII characters without spaces"
            )
        digest = token_digest(token)
    else:
        if not isinstance(hashed, str) or not _SHA256_HEX.fullmatch(hashed.lower()):
            raise TokenFileError(f"{where}.token_sha256 (principal {name!r}) must be 64 hex digits")
        digest = hashed.lower()
    return digest, Principal(name, frozenset(roles))


def parse_token_file(text: str) -> dict[str, Principal]:
    """The digest → principal table of a token file's text; :class:`TokenFileError` if bad."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only; the offending text could be a token.
        raise TokenFileError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("tokens"), list):
        raise TokenFileError('expected an object with a "tokens" list')
    table: dict[str, Principal] = {}
    for index, raw in enumerate(document["tokens"]):
        digest, principal = _entry(index, raw)
        if digest in table:
            raise TokenFileError(
                f"tokens[{index}] (principal {principal.name!r}) repeats an earlier token"
            )
        table[digest] = principal
    return table


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class TokenStore:
    """The tokens of one file, reloaded when the file changes or on request."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._check_interval_s = check_interval_s
        self._clock = clock
        self._table: dict[str, Principal] = {}
        self._signature: tuple[int, int, int] | None = None
        self._last_check = clock()
        self._listeners: list[Callable[[], None]] = []
        self.reloads = 0
        self.reload_errors = 0
        try:
            self._load()
        except (OSError, TokenFileError) as exc:
            raise TokenFileError(f"token file {self.path}: {exc}") from None

    def _load(self) -> None:
        with self.path.open("rb") as handle:
            st = os.fstat(handle.fileno())
            if st.st_size > MAX_FILE_BYTES:
                raise TokenFileError(f"larger than {MAX_FILE_BYTES} bytes")
            data = handle.read(MAX_FILE_BYTES + 1)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise TokenFileError("not UTF-8") from None
        table = parse_token_file(text)
        self._table = table
        self._signature = _signature(st)
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning(
                "auth_token_file_permissions",
                extra={
                    "path": self.path,
                    "mode": f"{stat.S_IMODE(st.st_mode):o}",
                    "hint": "readable_by_others_chmod_600",
                },
            )
        log.info(
            "auth_tokens_loaded",
            extra={
                "path": self.path,
                "tokens": len(table),
                "principals": len({p.name for p in table.values()}),
            },
        )

    def reload(self) -> bool:
        """Read the file again now; on failure keep the current tokens. True if loaded."""
        self._last_check = self._clock()
        try:
            self._load()
        except (OSError, TokenFileError) as exc:
            self.reload_errors += 1
            log.error(
                "auth_tokens_reload_failed",
                extra={"path": self.path, "error": exc, "kept": "previous"},
            )
            return False
        self.reloads += 1
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # one listener's bug must not keep the new tokens from the rest
                log.exception("auth_tokens_listener_failed", extra={"path": self.path})
        return True

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every successful reload (for example to end the streams
        of tokens that are gone; :meth:`knows` tells)."""
        self._listeners.append(callback)

    def knows(self, digest: str) -> bool:
        """True while a token with this hex SHA-256 :func:`token_digest` is in the file."""
        return digest in self._table

    def reload_if_changed(self) -> bool:
        """Reload when the file's mtime, size or inode differs from the loaded one."""
        self._last_check = self._clock()
        try:
            current = _signature(os.stat(self.path))
        except OSError as exc:
            # A file being replaced may be missing for a moment; keep what we have.
            log.warning("auth_token_file_unreadable", extra={"path": self.path, "error": exc})
            return False
        if current == self._signature:
            return False
        return self.reload()

    def authenticate(self, token: str) -> Principal | None:
        """The principal of ``token``, or None. Checks the file for changes when it is due."""
        due = self._check_interval_s > 0 and (
            self._clock() - self._last_check >= self._check_interval_s
        )
        if due:
            self.reload_if_changed()
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        # Looking up a digest leaks no timing about the token itself.
        return self._table.get(token_digest(token))
