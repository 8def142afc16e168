"""CallOptions: how a command method's keywords and an ``options=`` merge, what they check, and
the request options they become (unit), and that both reach the gateway (fake gateway)."""

from __future__ import annotations

import dataclasses
from typing import Any, get_type_hints

import pytest

from prgate.client import CallKeywords, CallOptions, Client
from prgate.v1 import command_service_pb2 as svc
from tests.unit.client.fake_gateway import FakeGateway
from tests.unit.client.test_client_calls import approved


def test_keywords_alone_make_the_options() -> None:
    assert CallOptions.of({}) == CallOptions()
    assert CallOptions.of({"mode": "accepted", "timeout": 2.5}) == CallOptions(
        mode="accepted", timeout=2.5
    )


def test_a_keyword_beside_options_wins_and_a_none_keyword_keeps_the_options_field() -> None:
    shared = CallOptions(mode="completed", idempotency_key="k1", expected_version=3, timeout=9)
    merged = CallOptions.of(
        {"options": shared, "expected_version": 4, "idempotency_key": None, "timeout": 1.5}
    )
    assert merged == CallOptions(
        mode="completed", idempotency_key="k1", expected_version=4, timeout=1.5
    )
    assert shared.expected_version == 3  # frozen: merging makes a new value
    assert CallOptions.of({"options": None, "mode": "accepted"}) == CallOptions(mode="accepted")


def test_unknown_keywords_and_bad_modes_are_refused_before_any_call() -> None:
    bad: dict[str, Any] = {"idempotency": "k1"}
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*idempotency"):
        CallOptions.of(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode must be one of accepted, completed"):
        CallOptions(mode="eventually")  # type: ignore[arg-type]
    # Any case, as before.
    assert CallOptions(mode="ACCEPTED").mode == "ACCEPTED"  # type: ignore[arg-type]


def test_the_keywords_are_the_options_fields_plus_options() -> None:
    fields = {f.name for f in dataclasses.fields(CallOptions)}
    assert set(get_type_hints(CallKeywords)) == fields | {"options"}


def test_request_options_get_a_fresh_key_unless_one_is_given() -> None:
    first, second = CallOptions().command_options(), CallOptions().command_options()
    assert len(first.idempotency_key) == 32 and first.idempotency_key != second.idempotency_key
    assert first.response_mode == svc.RESPONSE_MODE_UNSPECIFIED
    assert not first.HasField("expected_version")
    given = CallOptions(mode="Completed", idempotency_key="mine", expected_version=0)
    sent = given.command_options()
    assert sent.idempotency_key == "mine"
    assert sent.response_mode == svc.RESPONSE_MODE_COMPLETED
    assert sent.HasField("expected_version") and sent.expected_version == 0


def test_options_and_keywords_reach_the_gateway(fake: FakeGateway) -> None:
    fake.script("ApprovePullRequest", approved(), approved())
    shared = CallOptions(mode="accepted", idempotency_key="shared-key", expected_version=3)
    with Client(fake.target) as client:
        client.approve("pr-1", "bob", options=shared)
        client.approve("pr-1", "bob", options=shared, expected_version=4, idempotency_key="k2")
    first, second = (c.request.options for c in fake.calls_of("ApprovePullRequest"))
    assert (first.idempotency_key, first.response_mode, first.expected_version) == (
        "shared-key",
        svc.RESPONSE_MODE_ACCEPTED,
        3,
    )
    assert (second.idempotency_key, second.response_mode, second.expected_version) == (
        "k2",
        svc.RESPONSE_MODE_ACCEPTED,
        4,
    )


def test_an_unknown_keyword_of_a_command_method_is_a_type_error(fake: FakeGateway) -> None:
    bad: dict[str, Any] = {"expected": 3}
    with Client(fake.target) as client, pytest.raises(TypeError, match="expected"):
        client.approve("pr-1", "bob", **bad)
    assert fake.calls == []
