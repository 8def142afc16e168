"""Page tokens (issue 12): opaque, signed, bound to their listing; anything else is refused
with a message that never echoes the token."""

from __future__ import annotations

import base64

import pytest

from gateway.page_tokens import MAX_TOKEN_LENGTH, BadPageToken, ListQuery, PageTokens

QUERY = ListQuery("acme/widgets", 0)
TOKENS = PageTokens.for_deployment("", "prgate.pull-requests")


def not_issued(tokens: PageTokens, token: str, query: ListQuery = QUERY) -> str:
    with pytest.raises(BadPageToken) as refused:
        tokens.read(query, token)
    message = str(refused.value)
    assert token not in message or not token
    assert "codec" not in message and "utf-8" not in message.lower()
    return message


@pytest.mark.parametrize("after", ["pr-1", "pr-ü/1", "p" * 128, "\U0010ffff"])
def test_a_token_round_trips_its_id_and_does_not_show_it(after: str) -> None:
    token = TOKENS.issue(QUERY, after)
    assert TOKENS.read(QUERY, token) == after
    assert after not in token
    assert token.isascii() and "=" not in token
    assert len(token) < MAX_TOKEN_LENGTH


def test_every_changed_character_is_refused() -> None:
    token = TOKENS.issue(QUERY, "pr-00042")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    tried = 0
    for index, original in enumerate(token):
        for replacement in alphabet:
            if replacement != original:
                # Also the unused low bits of the last character: only the canonical form is
                # a token.
                not_issued(TOKENS, token[:index] + replacement + token[index + 1 :])
                tried += 1
    assert tried == 63 * len(token)


@pytest.mark.parametrize("cut", [1, 2, 5, 10, 20])
def test_a_truncated_token_is_refused(cut: int) -> None:
    token = TOKENS.issue(QUERY, "pr-00042")
    assert not_issued(TOKENS, token[:-cut]) == "page_token was not issued by this service"


@pytest.mark.parametrize(
    "token",
    [
        "!!!",
        "pr-1",
        "cHItMQ",  # base64 of "pr-1": the format of the old, unsigned tokens
        base64.urlsafe_b64encode(b"prgate.list.v1:pr-1").decode(),
        "\u00e9",
        "\udcff",
        " " + "A" * 40,
        "A" * 40 + "=",
        "A===",
        "x" * (MAX_TOKEN_LENGTH + 1),
        base64.urlsafe_b64encode(b"\xff\xfe\xfd" * 20).decode(),  # not UTF-8 inside
    ],
)
def test_anything_not_issued_is_refused_without_echoing_it(token: str) -> None:
    assert not_issued(TOKENS, token) == "page_token was not issued by this service"


def test_a_token_of_another_deployment_is_refused() -> None:
    token = PageTokens.for_deployment("", "other.pull-requests").issue(QUERY, "pr-1")
    assert not_issued(TOKENS, token) == "page_token was not issued by this service"


def test_a_token_of_another_listing_is_refused() -> None:
    token = TOKENS.issue(QUERY, "pr-1")
    for other in (ListQuery("acme/gadgets", 0), ListQuery("acme/widgets", 2), ListQuery("", 0)):
        message = not_issued(TOKENS, token, other)
        assert message.startswith("page_token belongs to another listing")


def test_every_gateway_with_the_same_secret_reads_the_others_tokens() -> None:
    gateway_a = PageTokens.for_deployment("s3cret", "prgate.pull-requests")
    gateway_b = PageTokens.for_deployment("s3cret", "prgate.pull-requests")
    assert gateway_b.read(QUERY, gateway_a.issue(QUERY, "pr-7")) == "pr-7"
    # Without the secret (or with another one) the same token is not ours.
    not_issued(TOKENS, gateway_a.issue(QUERY, "pr-7"))
    not_issued(
        PageTokens.for_deployment("other", "prgate.pull-requests"), gateway_a.issue(QUERY, "pr-7")
    )


def test_a_key_must_not_be_short() -> None:
    with pytest.raises(ValueError):
        PageTokens(b"short")
