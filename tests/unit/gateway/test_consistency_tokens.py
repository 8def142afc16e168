"""Consistency tokens (issue 14 item 5): what they name, that only this deployment's gateways
read them, and what a call carrying one gets from admission when the read model is behind.

The wait against real gateways on a real broker is tests/e2e/test_read_your_writes.py.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import replace

import grpc
import pytest
from google.rpc import code_pb2

from gateway.admission import Admission
from gateway.command_specs import SPECS
from gateway.consistency_tokens import (
    BadConsistencyToken,
    ConsistencyGate,
    ConsistencyTokens,
    Position,
)
from gateway.page_tokens import ListQuery, PageTokens
from gateway.refusals import Refusal, details_of
from gateway.settings import GatewaySettings
from gateway.signed_tokens import MAX_TOKEN_LENGTH, SignedTokens
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, pull_request_pb2, query_service_pb2
from tests.unit.gateway.conftest import make_harness, open_pr, open_request
from tests.unit.gateway.fakes import FakeProcessor, FakeResults, FakeSender, FakeView
from tests.unit.gateway.test_admission import RecordingCall

DEPLOYMENT = "prgate.pull-requests"
TOKENS = ConsistencyTokens.for_deployment("", DEPLOYMENT)
NOT_OURS = "consistency_token was not issued by this service"


def not_issued(tokens: ConsistencyTokens, token: str) -> str:
    with pytest.raises(BadConsistencyToken) as refused:
        tokens.read(token, "consistency_token")
    message = str(refused.value)
    assert token not in message or not token
    return message


@pytest.mark.parametrize(
    ("pull_request_id", "version"),
    [("pr-1", 0), ("pr-1", 1), ("pr-ü/1", 7), ("p" * 128, 2**63 - 1), ("\U0010ffff", 3)],
)
def test_a_token_round_trips_its_position(pull_request_id: str, version: int) -> None:
    token = TOKENS.issue(Position(pull_request_id, version))
    assert TOKENS.read(token, "consistency_token") == Position(pull_request_id, version)
    assert token.isascii() and "=" not in token
    assert len(token) < MAX_TOKEN_LENGTH


def test_every_changed_character_is_refused() -> None:
    token = TOKENS.issue(Position("pr-00042", 5))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    tried = 0
    for index, original in enumerate(token):
        for replacement in alphabet:
            if replacement != original:
                changed = token[:index] + replacement + token[index + 1 :]
                assert not_issued(TOKENS, changed) == NOT_OURS
                tried += 1
    assert tried == 63 * len(token)


@pytest.mark.parametrize("cut", [1, 2, 5, 10, 20, 30])
def test_a_truncated_token_is_refused(cut: int) -> None:
    token = TOKENS.issue(Position("pr-00042", 5))
    assert not_issued(TOKENS, token[:-cut]) == NOT_OURS


@pytest.mark.parametrize(
    "token",
    [
        "!!!",
        "pr-1",
        "\u00e9",
        "\udcff",
        " " + "A" * 40,
        "A" * 40 + "=",
        "x" * (MAX_TOKEN_LENGTH + 1),
    ],
)
def test_anything_not_issued_is_refused_without_echoing_it(token: str) -> None:
    assert not_issued(TOKENS, token) == NOT_OURS


def test_tokens_of_another_deployment_or_secret_or_kind_are_refused() -> None:
    position = Position("pr-1", 3)
    foreign = [
        ConsistencyTokens.for_deployment("", "other.pull-requests").issue(position),
        ConsistencyTokens.for_deployment("s3cret", DEPLOYMENT).issue(position),
        # A page token is sealed with the same secret but another label: never a position.
        PageTokens.for_deployment("", DEPLOYMENT).issue(ListQuery("", 0), "pr-1"),
    ]
    for token in foreign:
        assert not_issued(TOKENS, token) == NOT_OURS


def test_every_gateway_with_the_same_secret_reads_the_others_tokens() -> None:
    gateway_a = ConsistencyTokens.for_deployment("s3cret", DEPLOYMENT)
    gateway_b = ConsistencyTokens.for_deployment("s3cret", DEPLOYMENT)
    token = gateway_a.issue(Position("pr-7", 9))
    assert gateway_b.read(token, "consistency_token") == Position("pr-7", 9)


def test_rotating_the_secret_never_refuses_a_token_in_flight() -> None:
    """Attack: a rolling change of PRGATE_PAGE_TOKEN_SECRET. Without an accepted second
    secret, gateways still on the old secret refuse the new gateways' tokens (and the other
    way round): clients dropped them and read stale. In each step of the rotation every two
    gateways that can be up at once read each other's tokens, for both kinds of token."""
    old, new = "old-secret", "new-secret"
    steps = [
        (old, ""),  # before
        (old, new),  # 1: accept the new one
        (new, old),  # 2: issue the new one, accept the old one
        (new, ""),  # 3: the old one is gone
    ]
    position, query = Position("pr-7", 9), ListQuery("acme/w", 0)
    for (secret_a, accepted_a), (secret_b, accepted_b) in itertools.pairwise(steps):
        a = ConsistencyTokens.for_deployment(secret_a, DEPLOYMENT, accepted_a)
        b = ConsistencyTokens.for_deployment(secret_b, DEPLOYMENT, accepted_b)
        assert b.read(a.issue(position), "t") == position
        assert a.read(b.issue(position), "t") == position
        pages_a = PageTokens.for_deployment(secret_a, DEPLOYMENT, accepted_a)
        pages_b = PageTokens.for_deployment(secret_b, DEPLOYMENT, accepted_b)
        assert pages_b.read(query, pages_a.issue(query, "pr-3")) == "pr-3"
        assert pages_a.read(query, pages_b.issue(query, "pr-3")) == "pr-3"
    # Skipping a step is refused as before, and an accepted secret is never used to issue.
    before, after = (
        ConsistencyTokens.for_deployment(s, DEPLOYMENT, a) for s, a in (steps[0], steps[3])
    )
    assert not_issued(after, before.issue(position)) == NOT_OURS
    accepting = ConsistencyTokens.for_deployment(old, DEPLOYMENT, new)
    assert not_issued(after, accepting.issue(position)) == NOT_OURS


def test_the_accepted_secret_is_a_secret_setting() -> None:
    from prgate.settings import load, redacted

    settings = load(
        GatewaySettings,
        None,
        environ={"PRGATE_PAGE_TOKEN_ACCEPTED_SECRET": "hunter2-accepted"},
    )
    assert settings.page_token_accepted_secret == "hunter2-accepted"
    assert "hunter2-accepted" not in repr(redacted(settings))


@pytest.mark.parametrize("version", [2**63, 2**64 - 1])
def test_a_far_future_version_is_read_and_waited_for_within_the_bound(version: int) -> None:
    """Attack: a token (minted with the deployment's key: possible without a secret) naming
    a version beyond int64. It is read, the call waits at most its bound, and the refusal
    names both versions."""
    body = bytes([1]) + version.to_bytes(8, "big") + b"pr-1"
    token = SignedTokens(
        SignedTokens.deployment_key(b"prgate.v1 consistency tokens", "", DEPLOYMENT)
    ).seal(body)
    assert TOKENS.read(token, "t") == Position("pr-1", version)

    async def main() -> None:
        view = FakeView()
        view.put(entity("pr-1", 2))
        gate = ConsistencyGate(TOKENS, view, default_wait_s=0.05)
        with pytest.raises(Refusal) as behind:
            await gate.reach(gate.read(token, "consistency_token", "pr-1"), gate.budget(None))
        info = details_of(behind.value.status)["ErrorInfo"]
        assert info.metadata["wanted_version"] == str(version)  # type: ignore[attr-defined]
        assert info.metadata["reached_version"] == "2"  # type: ignore[attr-defined]

    asyncio.run(main())


# -- the gate and admission ----------------------------------------------------------------


def entity(pull_request_id: str, version: int) -> pull_request_pb2.PullRequest:
    return pull_request_pb2.PullRequest(
        pull_request_id=pull_request_id,
        repository="acme/widgets",
        title="t",
        author="ada",
        source_branch="f",
        target_branch="main",
        status=pull_request_pb2.PULL_REQUEST_STATUS_OPEN,
        version=version,
    )


def approve(pull_request_id: str, token: str) -> svc.ApprovePullRequestRequest:
    return svc.ApprovePullRequestRequest(
        command=commands_pb2.ApprovePullRequest(pull_request_id=pull_request_id, reviewer="bob"),
        options=svc.CommandOptions(consistency_token=token),
    )


def admission(view: FakeView, sender: FakeSender, results: FakeResults) -> Admission:
    return Admission(
        settings=replace(GatewaySettings(), consistency_wait_s=0.2),
        results_topic="t.results",
        sender=sender,
        results=results,
        view=view,
        tokens=TOKENS,
    )


def test_a_receipt_carries_the_token_of_its_result_version() -> None:
    async def main() -> None:
        view, results = FakeView(), FakeResults()
        gate = admission(view, FakeSender(results, FakeProcessor()), results)
        receipt = await gate.admit(SPECS["OpenPullRequest"], open_request(), RecordingCall())
        position = TOKENS.read(receipt.consistency_token, "consistency_token")
        assert position == Position(receipt.pull_request_id, receipt.result.version)
        assert position.version == 1

    asyncio.run(main())


def test_a_token_the_read_model_never_reaches_ends_the_call_unavailable_within_its_deadline() -> (
    None
):
    async def main() -> None:
        view, results = FakeView(), FakeResults()
        sender = FakeSender(results, FakeProcessor())
        view.put(entity("pr-1", 2))
        gate = admission(view, sender, results)
        token = TOKENS.issue(Position("pr-1", 5))
        call = RecordingCall(remaining=1.0)
        started = time.monotonic()
        with pytest.raises(Refusal) as refused:
            await gate.admit(SPECS["ApprovePullRequest"], approve("pr-1", token), call)
        waited = time.monotonic() - started
        # Bounded by the deadline (1 s, minus the margin to answer), not by the setting alone.
        assert 0.5 <= waited < 1.0
        status = refused.value.status
        assert status.code == code_pb2.UNAVAILABLE
        info = details_of(status)["ErrorInfo"]
        assert info.reason == "READ_MODEL_BEHIND"  # type: ignore[attr-defined]
        assert dict(info.metadata) == {  # type: ignore[attr-defined]
            "pull_request_id": "pr-1",
            "wanted_version": "5",
            "reached_version": "2",
        }
        assert "RetryInfo" in details_of(status)
        assert sender.records == []  # nothing produced

        # Without a deadline, PRGATE_CONSISTENCY_WAIT_S bounds the wait.
        started = time.monotonic()
        with pytest.raises(Refusal):
            await gate.admit(
                SPECS["ApprovePullRequest"], approve("pr-1", token), RecordingCall(remaining=None)
            )
        assert time.monotonic() - started < 1.0

    asyncio.run(main())


def test_a_call_waits_for_the_version_its_token_names_then_goes_on() -> None:
    async def main() -> None:
        view, results = FakeView(), FakeResults()
        sender = FakeSender(results, FakeProcessor())
        gate = admission(view, sender, results)
        opened = await gate.admit(SPECS["OpenPullRequest"], open_request(), RecordingCall())
        pull_request_id = opened.pull_request_id
        # A second gateway on the same Kafka whose read model has not seen the open yet.
        behind = FakeView()
        other = admission(behind, sender, results)
        call = asyncio.ensure_future(
            other.admit(
                SPECS["ApprovePullRequest"],
                approve(pull_request_id, opened.consistency_token),
                RecordingCall(remaining=5.0),
            )
        )
        for _ in range(100):  # until the call waits on the view (a few loop turns)
            if pull_request_id in behind._changed:
                break
            await asyncio.sleep(0)
        assert pull_request_id in behind._changed
        assert not call.done()  # waiting for version 1, not answering NOT_FOUND
        snapshot = view.get(pull_request_id)
        assert snapshot is not None and snapshot.version == 1
        behind.put(snapshot)
        receipt = await call
        assert receipt.result.version == 2
        position = TOKENS.read(receipt.consistency_token, "consistency_token")
        assert position == Position(pull_request_id, 2)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (TOKENS.issue(Position("pr-2", 1)), "belongs to another pull request"),
        ("garbage", "was not issued by this service"),
        (ConsistencyTokens.for_deployment("x", "y").issue(Position("pr-1", 1)), "not issued"),
    ],
)
def test_a_foreign_or_tampered_token_is_invalid_argument_on_its_field(
    token: str, message: str
) -> None:
    async def main() -> None:
        view, results = FakeView(), FakeResults()
        sender = FakeSender(results, FakeProcessor())
        view.put(entity("pr-1", 1))
        gate = admission(view, sender, results)
        with pytest.raises(Refusal) as refused:
            await gate.admit(SPECS["ApprovePullRequest"], approve("pr-1", token), RecordingCall())
        status = refused.value.status
        assert status.code == code_pb2.INVALID_ARGUMENT
        (violation,) = details_of(status)["BadRequest"].field_violations  # type: ignore[attr-defined]
        assert violation.field == "options.consistency_token"
        assert violation.reason == "INVALID_CONSISTENCY_TOKEN"
        assert message in violation.description
        assert token not in violation.description
        assert sender.records == []

    asyncio.run(main())


def test_the_gate_issues_tokens_never_older_than_what_it_holds() -> None:
    view = FakeView()
    view.put(entity("pr-1", 4))
    gate = ConsistencyGate(TOKENS, view, default_wait_s=1.0)
    assert TOKENS.read(gate.issue("pr-1", 2), "t") == Position("pr-1", 4)
    assert TOKENS.read(gate.issue("pr-1", 6), "t") == Position("pr-1", 6)
    assert gate.issue("") == ""


# -- over gRPC: the query service and the command service share one deployment's tokens ----


def test_get_watch_and_list_carry_and_check_tokens_over_grpc() -> None:
    h = make_harness()
    try:
        pull_request_id = open_pr(h)
        got = h.call(
            "GetPullRequest",
            query_service_pb2.GetPullRequestRequest(pull_request_id=pull_request_id),
        )
        assert got.code == grpc.StatusCode.OK
        tokens = ConsistencyTokens.for_deployment("", "")  # the harness's deployment
        assert tokens.read(got.response.consistency_token, "t") == Position(pull_request_id, 1)

        # The receipt's token works on the query service, and the other way round.
        approved = h.call(
            "ApprovePullRequest",
            svc.ApprovePullRequestRequest(
                command=commands_pb2.ApprovePullRequest(
                    pull_request_id=pull_request_id, reviewer="bob"
                ),
                options=svc.CommandOptions(consistency_token=got.response.consistency_token),
            ),
        )
        assert approved.code == grpc.StatusCode.OK, approved.message
        token = approved.response.receipt.consistency_token
        assert tokens.read(token, "t") == Position(pull_request_id, 2)
        again = h.call(
            "GetPullRequest",
            query_service_pb2.GetPullRequestRequest(
                pull_request_id=pull_request_id, consistency_token=token
            ),
        )
        assert again.code == grpc.StatusCode.OK and again.response.pull_request.version == 2

        listed = h.call(
            "ListPullRequests", query_service_pb2.ListPullRequestsRequest(consistency_token=token)
        )
        assert [p.pull_request_id for p in listed.response.pull_requests] == [pull_request_id]

        stream = h.open_stream(
            "WatchPullRequest",
            query_service_pb2.WatchPullRequestRequest(
                pull_request_id=pull_request_id, consistency_token=token
            ),
        )
        first = stream.take_response()
        assert first.pull_request.version == 2
        assert tokens.read(first.consistency_token, "t") == Position(pull_request_id, 2)
        stream.cancel()

        # A token of another pull request, or a made-up one: INVALID_ARGUMENT on the field.
        other = tokens.issue(Position("pr-other", 1))
        for bad in (other, token[:-2]):
            refused = h.call(
                "GetPullRequest",
                query_service_pb2.GetPullRequestRequest(
                    pull_request_id=pull_request_id, consistency_token=bad
                ),
            )
            assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
            (violation,) = refused.details["BadRequest"].field_violations
            assert (violation.field, violation.reason) == (
                "consistency_token",
                "INVALID_CONSISTENCY_TOKEN",
            )
        # A version the read model never reaches: UNAVAILABLE before the deadline.
        ahead = tokens.issue(Position(pull_request_id, 99))
        behind = h.call(
            "GetPullRequest",
            query_service_pb2.GetPullRequestRequest(
                pull_request_id=pull_request_id, consistency_token=ahead
            ),
            timeout=0.5,
        )
        assert behind.code == grpc.StatusCode.UNAVAILABLE
        assert behind.details["ErrorInfo"].reason == "READ_MODEL_BEHIND"
    finally:
        h.loop.close()
