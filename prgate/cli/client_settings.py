"""How ``prgate pr`` reaches the gateway (:class:`ClientSettings`: ``PRGATE_TARGET``, the token,
TLS, retries) and where it keeps its consistency tokens between runs
(``PRGATE_CONSISTENCY_FILE``). Settings no call could use are refused when they are loaded
or the client is built (:class:`~prgate.settings.SettingsError`, exit 2), naming the setting.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from prgate.client import Client, RetryPolicy, Session, tls_credentials
from prgate.client.connection import DEFAULT_TARGET, DEFAULT_TIMEOUT, read_pem
from prgate.settings import SettingsError, setting

# A full session (10,000 pull requests, ids of 128 bytes) is about 4 MB.
MAX_SESSION_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ClientSettings:
    """How the CLI reaches the gateway."""

    target: str = setting(DEFAULT_TARGET, "PRGATE_TARGET", "gateway address host:port")
    token: str = setting("", "PRGATE_TOKEN", "bearer token sent with every call", secret=True)
    timeout: float = setting(
        DEFAULT_TIMEOUT, "PRGATE_TIMEOUT", "seconds a call may take (watch: the whole watch)"
    )
    retries: int = setting(5, "PRGATE_RETRIES", "attempts per call while UNAVAILABLE")
    # PRGATE_CLIENT_TLS_*: the gateway's PRGATE_TLS_* are its own server certificate and key.
    client_tls: bool = setting(
        False, "PRGATE_CLIENT_TLS", "use TLS with the system's root certificates", flag="--tls"
    )
    client_tls_ca_file: str = setting(
        "",
        "PRGATE_CLIENT_TLS_CA_FILE",
        "PEM CA that signed the gateway (TLS)",
        flag="--tls-ca-file",
    )
    client_tls_cert_file: str = setting(
        "",
        "PRGATE_CLIENT_TLS_CERT_FILE",
        "client certificate (mutual TLS)",
        flag="--tls-cert-file",
    )
    client_tls_key_file: str = setting(
        "", "PRGATE_CLIENT_TLS_KEY_FILE", "client private key (mutual TLS)", flag="--tls-key-file"
    )
    consistency_file: str = setting(
        "~/.cache/prgate/consistency-tokens.json",
        "PRGATE_CONSISTENCY_FILE",
        "where `prgate pr` keeps the consistency tokens of its answers between runs, for"
        " read-your-writes on any gateway (empty: none kept)",
    )

    def __post_init__(self) -> None:
        """SettingsError (exit 2) for what no call could send: an empty target, a token that
        is not one HTTP header value (grpc refused each call INTERNAL, "Invalid metadata").
        A token's surrounding whitespace (a secret file's final newline) is dropped."""
        if not self.target.strip():
            raise SettingsError("invalid setting --target / PRGATE_TARGET: empty (host:port)")
        token = self.token.strip()
        object.__setattr__(self, "token", token)
        if any(not (" " < c <= "~") for c in token):
            raise SettingsError(
                "invalid setting --token / PRGATE_TOKEN: a bearer token is printable ASCII"
                " without spaces (the value is a secret: not shown)"
            )

    def _tls_files(self) -> None:
        """SettingsError naming the setting of a TLS file that is missing or not PEM, or a
        client certificate without its key (grpc would log it and fail every call)."""
        for name in ("ca", "cert", "key"):
            path = getattr(self, f"client_tls_{name}_file")
            try:
                _ = path and read_pem(path)
            except ValueError as exc:
                flag = f"--tls-{name}-file / PRGATE_CLIENT_TLS_{name.upper()}_FILE"
                raise SettingsError(f"invalid setting {flag}: {exc}") from None
        if bool(self.client_tls_cert_file) != bool(self.client_tls_key_file):
            raise SettingsError("invalid setting --tls-cert-file / --tls-key-file: give both")

    def session(self) -> Session:
        """The session kept in ``consistency_file`` (a new one when there is none, or the file
        is not one: it is then replaced after the call)."""
        path = self._consistency_path()
        if path is None:
            return Session()
        try:
            with path.open("rb") as kept:
                data = kept.read(MAX_SESSION_BYTES + 1)
            if len(data) > MAX_SESSION_BYTES:
                raise ValueError(f"larger than {MAX_SESSION_BYTES} bytes: not a session file")
            return Session.from_json(data.decode("utf-8"))
        except FileNotFoundError:
            return Session()
        except (OSError, ValueError) as exc:
            print(f"prgate: warning: ignoring {path}: {exc}", file=sys.stderr)
            return Session()

    def save(self, session: Session) -> None:
        """Write ``session`` to ``consistency_file`` atomically (a warning if it cannot be)."""
        path = self._consistency_path()
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".consistency-")
        except OSError as exc:
            _cannot_keep(exc)
            return
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(session.to_json())
            os.replace(temporary, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            _cannot_keep(exc)

    def _consistency_path(self) -> Path | None:
        return Path(self.consistency_file).expanduser() if self.consistency_file else None

    def client(self, session: Session | None = None) -> Client:
        credentials = None
        self._tls_files()
        if self.client_tls or self.client_tls_ca_file or self.client_tls_cert_file:
            credentials = tls_credentials(
                self.client_tls_ca_file or None,
                self.client_tls_cert_file or None,
                self.client_tls_key_file or None,
            )
        return Client(
            self.target,
            credentials=credentials,
            token=self.token or None,
            timeout=self.timeout,
            retry=RetryPolicy(max_attempts=max(1, self.retries)),
            session=session,
        )


def _cannot_keep(exc: OSError) -> None:
    print(f"prgate: warning: could not keep consistency tokens: {exc}", file=sys.stderr)
