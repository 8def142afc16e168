"""The client's consistency tokens (issue 14 item 5): every answer's token is kept per pull
request and sent with the next call about it, by the blocking and the asyncio client and by
``prgate pr`` across runs; never an older token over a newer one; a refused token is dropped
and the call made again without it. Against a scripted gateway on a real loopback channel;
the real gateways are tests/e2e/test_read_your_writes.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway import errors as server_errors
from prgate.cli.main import main as cli_main
from prgate.client import (
    AsyncClient,
    Client,
    InvalidArgument,
    RetryPolicy,
    Session,
    Unavailable,
)
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import outcome_pb2, pull_request_pb2, query_service_pb2, results_pb2
from tests.unit.client.fake_gateway import FakeGateway

SUCCEEDED = outcome_pb2.COMMAND_STATE_SUCCEEDED


def receipt(version: int, token: str, pull_request_id: str = "pr-1") -> svc.CommandReceipt:
    return svc.CommandReceipt(
        command_id=f"c{version}",
        pull_request_id=pull_request_id,
        state=SUCCEEDED,
        result=results_pb2.CommandResult(
            command_id=f"c{version}",
            pull_request_id=pull_request_id,
            state=SUCCEEDED,
            version=version,
        ),
        consistency_token=token,
    )


def got(version: int, token: str) -> query_service_pb2.GetPullRequestResponse:
    return query_service_pb2.GetPullRequestResponse(
        pull_request=pull_request_pb2.PullRequest(pull_request_id="pr-1", version=version),
        consistency_token=token,
    )


def refused_token(field: str) -> server_errors.GatewayError:
    return server_errors.invalid_argument(
        field, "INVALID_CONSISTENCY_TOKEN", f"{field} was not issued by this service"
    )


def test_each_answer_s_token_goes_with_the_next_call_about_its_pull_request(
    fake: FakeGateway,
) -> None:
    fake.script("OpenPullRequest", svc.OpenPullRequestResponse(receipt=receipt(1, "t1")))
    fake.script("ApprovePullRequest", svc.ApprovePullRequestResponse(receipt=receipt(2, "t2")))
    fake.script("GetPullRequest", got(2, "t2-get"))
    fake.script("WatchPullRequest", [query_service_pb2.WatchPullRequestResponse()])
    fake.script("ListPullRequests", query_service_pb2.ListPullRequestsResponse())
    fake.script("ClosePullRequest", svc.ClosePullRequestResponse(receipt=receipt(1, "o", "pr-2")))
    with Client(fake.target) as client:
        client.open_pull_request("acme/w", "t", "ada", "f", "main")
        client.approve("pr-1", "bob")
        client.get("pr-1")
        list(client.watch_pull_request("pr-1", timeout=5))
        client.list_page()
        client.close("pr-2", "ada")
    (opened,) = fake.calls_of("OpenPullRequest")
    assert opened.request.options.consistency_token == ""  # a new pull request: nothing to wait
    assert fake.calls_of("ApprovePullRequest")[0].request.options.consistency_token == "t1"
    assert fake.calls_of("GetPullRequest")[0].request.consistency_token == "t2"
    assert fake.calls_of("WatchPullRequest")[0].request.consistency_token == "t2-get"
    assert fake.calls_of("ListPullRequests")[0].request.consistency_token == "t2-get"
    # Another pull request: none of pr-1's tokens.
    assert fake.calls_of("ClosePullRequest")[0].request.options.consistency_token == ""


def test_the_asyncio_client_passes_tokens_on_too(fake: FakeGateway) -> None:
    fake.script("OpenPullRequest", svc.OpenPullRequestResponse(receipt=receipt(1, "t1")))
    fake.script("WatchCommand", [svc.WatchCommandResponse(receipt=receipt(2, "t2"))])
    fake.script("GetPullRequest", got(2, "t3"))

    async def main() -> None:
        async with AsyncClient(fake.target) as client:
            await client.open_pull_request("acme/w", "t", "ada", "f", "main")
            await client.wait_command("c2", timeout=5)
            await client.get("pr-1")

    asyncio.run(main())
    # The token of a watched command's receipt counts as well.
    assert fake.calls_of("GetPullRequest")[0].request.consistency_token == "t2"


def test_an_older_answer_never_replaces_a_newer_token() -> None:
    session = Session()
    session.remember("pr-1", 3, "v3")
    session.remember("pr-1", 2, "v2")  # an answer that was overtaken
    assert session.token("pr-1") == "v3"
    session.remember("pr-1", 0, "accepted")  # an ACCEPTED receipt shows no version
    assert session.token("pr-1") == "v3"
    session.remember("pr-2", 0, "accepted")  # but it is better than nothing
    assert session.token("pr-2") == "accepted"
    session.remember("pr-1", 4, "v4")
    assert (session.token("pr-1"), session.latest) == ("v4", "v4")


def test_a_session_keeps_at_most_its_bound_of_pull_requests() -> None:
    session = Session(max_entries=2)
    for number in range(5):
        session.remember(f"pr-{number}", 1, f"t{number}")
    assert [session.token(f"pr-{n}") for n in range(5)] == ["", "", "", "t3", "t4"]


def test_a_refused_token_is_dropped_and_the_call_made_again_without_it(
    fake: FakeGateway,
) -> None:
    session = Session()
    session.remember("pr-1", 5, "from-another-deployment")
    fake.script(
        "ApprovePullRequest",
        refused_token("options.consistency_token"),
        svc.ApprovePullRequestResponse(receipt=receipt(6, "t6")),
    )
    fake.script("GetPullRequest", refused_token("consistency_token"), got(6, "t6b"))
    with Client(fake.target, session=session) as client:
        assert client.approve("pr-1", "bob").consistency_token == "t6"
        session.remember("pr-1", 7, "stale-secret")
        client.get("pr-1")
    sent = [c.request.options.consistency_token for c in fake.calls_of("ApprovePullRequest")]
    assert sent == ["from-another-deployment", ""]
    sent = [c.request.consistency_token for c in fake.calls_of("GetPullRequest")]
    assert sent == ["stale-secret", ""]
    assert session.token("pr-1") == "t6b"


def test_any_other_invalid_argument_is_raised_as_before(fake: FakeGateway) -> None:
    fake.script(
        "ApprovePullRequest",
        server_errors.invalid_argument("command.reviewer", "REVIEWER_REQUIRED", "required"),
    )
    with Client(fake.target) as client, pytest.raises(InvalidArgument):
        client.approve("pr-1", "")
    assert len(fake.calls_of("ApprovePullRequest")) == 1


def test_a_session_survives_json_and_refuses_anything_else() -> None:
    session = Session()
    session.remember("pr-1", 2, "a")
    session.remember("pr-2", 1, "b")
    again = Session.from_json(session.to_json())
    assert (again.token("pr-1"), again.token("pr-2"), again.latest) == ("a", "b", "b")
    for text in ("[]", '{"tokens": [[1, 2, 3]]}', '{"tokens": "x"}'):
        with pytest.raises(ValueError):
            Session.from_json(text)
    with pytest.raises(ValueError):
        Session.from_json("not json")


def test_prgate_pr_keeps_tokens_between_runs(
    fake: FakeGateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state" / "tokens.json"
    monkeypatch.setenv("PRGATE_TARGET", fake.target)
    monkeypatch.setenv("PRGATE_CONSISTENCY_FILE", str(state))
    fake.script("OpenPullRequest", svc.OpenPullRequestResponse(receipt=receipt(1, "t1")))
    fake.script("ApprovePullRequest", svc.ApprovePullRequestResponse(receipt=receipt(2, "t2")))
    opened = ["pr", "open", "--repository", "acme/w", "--title", "t", "--author", "ada"]
    opened += ["--source-branch", "f", "--target-branch", "main"]
    assert cli_main(opened) == 0
    assert json.loads(state.read_text())["latest"] == "t1"
    assert cli_main(["pr", "approve", "pr-1", "--reviewer", "bob"]) == 0
    assert fake.calls_of("ApprovePullRequest")[0].request.options.consistency_token == "t1"
    assert Session.from_json(state.read_text()).token("pr-1") == "t2"
    # A file that is not a session is replaced, with a warning, not a crash.
    state.write_text("garbage")
    fake.script("GetPullRequest", got(2, "t3"))
    assert cli_main(["pr", "get", "pr-1"]) == 0
    assert "ignoring" in capsys.readouterr().err
    assert Session.from_json(state.read_text()).token("pr-1") == "t3"


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,  # json.loads' RecursionError escaped from_json and crashed `prgate pr`
        '{"tokens": [["pr-1", true, "t"]]}',
        '{"tokens": [["pr-1", -1, "t"]]}',
        # A hand-edited version above any real one: the token would be kept forever.
        f'{{"tokens": [["pr-1", {2**63}, "t"]]}}',
        '{"tokens": [["pr-1", 1.5, "t"]]}',
        '{"tokens": [["", 1, "t"]]}',
        '{"tokens": [["pr-1", 1, ""]]}',
        '{"tokens": [["pr-1", 1, "t", "extra"]]}',
    ],
)
def test_a_session_file_that_is_not_one_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a prgate client session"):
        Session.from_json(text)


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 100_000,
        b"\xff\xfe not utf-8",
        b'{"tokens": [["pr-1", 99999999999999999999999, "t1"]]}',
        b" " * (16 * 1024 * 1024 + 1),  # larger than any session: not read whole
    ],
)
def test_prgate_pr_replaces_a_broken_session_file_with_a_warning(
    fake: FakeGateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
) -> None:
    state = tmp_path / "tokens.json"
    state.write_bytes(content)
    monkeypatch.setenv("PRGATE_TARGET", fake.target)
    monkeypatch.setenv("PRGATE_CONSISTENCY_FILE", str(state))
    fake.script("GetPullRequest", got(2, "t2"))
    assert cli_main(["pr", "get", "pr-1"]) == 0
    err = capsys.readouterr().err
    assert f"warning: ignoring {state}" in err and "Traceback" not in err
    assert fake.calls_of("GetPullRequest")[0].request.consistency_token == ""
    assert Session.from_json(state.read_text()).token("pr-1") == "t2"


def behind(pull_request_id: str) -> server_errors.GatewayError:
    """READ_MODEL_BEHIND as the gateway sends it (UNAVAILABLE, ErrorInfo, RetryInfo 0.5 s)."""
    from gateway.consistency_tokens import Position, read_model_behind

    refusal = read_model_behind(Position(pull_request_id, 9), 0, 1.0)
    return server_errors.GatewayError(refusal.status)


def test_a_token_no_attempt_reached_is_forgotten_after_the_last_retry(
    fake: FakeGateway,
) -> None:
    """Attack: a recreated local cluster under the same topic names. Its gateways read the
    old tokens (same key) but never reach their versions: every `prgate pr list` (which
    sends the newest token) and every call about an old pull request waited out all its
    attempts, run after run. Now the token is forgotten once the retries are spent (not
    before: another attempt, or gateway, may reach it), and the next call goes without."""
    session = Session()
    session.remember("pr-1", 9, "from-the-old-cluster")
    fake.script("GetPullRequest", behind("pr-1"), behind("pr-1"))
    fake.script("ListPullRequests", query_service_pb2.ListPullRequestsResponse())
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.0)
    with Client(fake.target, session=session, retry=retry) as client:
        with pytest.raises(Unavailable) as ended:
            client.get("pr-1")
        assert ended.value.reason == "READ_MODEL_BEHIND"
        assert session.token("pr-1") == "" and session.latest == ""
        assert list(client.list()) == []
    sent = [c.request.consistency_token for c in fake.calls_of("GetPullRequest")]
    assert sent == ["from-the-old-cluster", "from-the-old-cluster"]
    assert fake.calls_of("ListPullRequests")[0].request.consistency_token == ""


def test_other_final_errors_keep_the_token(fake: FakeGateway) -> None:
    session = Session()
    session.remember("pr-1", 2, "t2")
    fake.script(
        "GetPullRequest", server_errors.invalid_argument("pull_request_id", "BAD_ID", "bad")
    )
    with Client(fake.target, session=session) as client, pytest.raises(InvalidArgument):
        client.get("pr-1")
    assert session.token("pr-1") == "t2"
