"""The token file: format, validation (without leaking tokens), digests, reload on change."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.auth_tokens import (
    Principal,
    TokenFileError,
    TokenStore,
    parse_token_file,
    token_digest,
)

ADA = "ada-token-0123456789"
OPS = "ops-token-0123456789"
BOT = "bot-token-0123456789"


def document(*entries: Any) -> str:
    return json.dumps({"tokens": list(entries)})


def write(path: Path, *entries: dict[str, Any]) -> None:
    # Replace atomically, as an operator (or a Kubernetes secret volume) would.
    staging = path.with_suffix(".tmp")
    staging.write_text(document(*entries))
    staging.chmod(0o600)
    os.replace(staging, path)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_parse_plain_and_hashed_tokens_with_roles() -> None:
    table = parse_token_file(
        document(
            {"principal": "ada", "token": ADA},
            {"principal": "ops", "token": OPS, "roles": ["admin"], "comment": "on call"},
            {
                "principal": "merge-bot",
                "token_sha256": token_digest(BOT).upper(),
                "roles": ["act-as-any"],
            },
            {"principal": "ada", "token": "ada-second-token-xyz"},
        )
    )
    assert table[token_digest(ADA)] == Principal("ada", frozenset())
    assert table[token_digest(OPS)].may_act_for_others
    assert table[token_digest(BOT)] == Principal("merge-bot", frozenset({"act-as-any"}))
    assert table[token_digest("ada-second-token-xyz")].name == "ada"  # rotation: two tokens
    assert not table[token_digest(ADA)].may_act_for_others
    assert ADA not in table, "only digests are kept in memory"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json " + ADA, "not valid JSON"),
        ("[]", '"tokens" list'),
        (document({"principal": "ada"}), "exactly one of token, token_sha256"),
        (document({"principal": "ada", "token": ADA, "token_sha256": "0" * 64}), "exactly one"),
        (document({"principal": "ada", "token": "short"}), "16 to 4096"),
        (document({"principal": "ada", "token": "has a space in it ok"}), "without spaces"),
        (document({"principal": "ada", "token_sha256": "xyz"}), "64 hex digits"),
        (document({"principal": "", "token": ADA}), "principal must be"),
        (document({"principal": " ada", "token": ADA}), "principal must be"),
        (document({"principal": "ada", "token": ADA, "roles": ["admn"]}), "unknown ['admn']"),
        (document({"principal": "ada", "token": ADA, "roles": "admin"}), "list of strings"),
        (document({"principal": "ada", "token": ADA, "role": ["admin"]}), "unknown keys"),
        (
            document({"principal": "ada", "token": ADA}, {"principal": "bob", "token": ADA}),
            "repeats",
        ),
        (document("ada"), "must be an object"),
    ],
)
def test_bad_files_are_refused_without_echoing_tokens(text: str, fragment: str) -> None:
    with pytest.raises(TokenFileError) as caught:
        parse_token_file(text)
    assert fragment in str(caught.value)
    assert ADA not in str(caught.value)
    assert "has a space" not in str(caught.value)


def test_store_authenticates_and_refuses_unknown_empty_and_huge_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    write(path, {"principal": "ada", "token": ADA})
    store = TokenStore(path)
    assert store.authenticate(ADA) == Principal("ada")
    assert store.authenticate(ADA + "x") is None
    assert store.authenticate("") is None
    assert store.authenticate("x" * 5000) is None


def test_missing_or_bad_file_at_start_is_an_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match=r"tokens\.json"):
        TokenStore(tmp_path / "tokens.json")
    (tmp_path / "tokens.json").write_text("{}")
    with pytest.raises(TokenFileError, match='"tokens" list'):
        TokenStore(tmp_path / "tokens.json")


def test_change_is_picked_up_once_the_check_interval_passed(tmp_path: Path) -> None:
    path, clock = tmp_path / "tokens.json", Clock()
    write(path, {"principal": "ada", "token": ADA})
    store = TokenStore(path, check_interval_s=1.0, clock=clock)
    write(path, {"principal": "ops", "token": OPS, "roles": ["admin"]})

    clock.now += 0.5
    assert store.authenticate(OPS) is None, "not checked again before the interval"
    assert store.authenticate(ADA) == Principal("ada")
    clock.now += 0.6
    assert store.authenticate(OPS) == Principal("ops", frozenset({"admin"}))
    assert store.authenticate(ADA) is None, "a token removed from the file is revoked"
    assert store.reloads == 1
    clock.now += 5
    store.authenticate(OPS)
    assert store.reloads == 1, "an unchanged file is not read again"


def test_interval_zero_reloads_only_on_request(tmp_path: Path) -> None:
    path, clock = tmp_path / "tokens.json", Clock()
    write(path, {"principal": "ada", "token": ADA})
    store = TokenStore(path, check_interval_s=0, clock=clock)
    write(path, {"principal": "ops", "token": OPS})
    clock.now += 3600
    assert store.authenticate(OPS) is None
    assert store.reload()  # what SIGHUP does
    assert store.authenticate(OPS) == Principal("ops")


def test_bad_reload_keeps_previous_tokens_and_logs_no_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, clock = tmp_path / "tokens.json", Clock()
    write(path, {"principal": "ada", "token": ADA})
    store = TokenStore(path, clock=clock)
    path.write_text(document({"principal": "ops", "token": OPS, "roles": ["root"]}))
    with caplog.at_level(logging.INFO, logger="gateway.auth_tokens"):
        clock.now += 2
        assert store.authenticate(ADA) == Principal("ada"), "kept after a bad reload"
        assert store.authenticate(OPS) is None
        path.unlink()
        clock.now += 2
        assert store.authenticate(ADA) == Principal("ada"), "kept while the file is missing"
        write(path, {"principal": "ops", "token": OPS})
        clock.now += 2
        assert store.authenticate(OPS) == Principal("ops")
    assert store.reload_errors == 1
    assert "auth_tokens_reload_failed" in caplog.text
    assert "auth_tokens_loaded" in caplog.text
    for secret in (ADA, OPS):
        assert secret not in caplog.text


def test_group_readable_file_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens.json"
    write(path, {"principal": "ada", "token": ADA})
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="gateway.auth_tokens"):
        TokenStore(path)
    assert "auth_token_file_permissions" in caplog.text
