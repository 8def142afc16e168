"""What the CLI prints: spinner only on a terminal, tables, event lines, exit codes."""

from __future__ import annotations

import io
import time

import grpc

from prgate import cli_pr, cli_render
from prgate.client import errors
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import events_pb2, outcome_pb2, pull_request_pb2, results_pb2


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_spinner_draws_on_a_terminal_and_clears_its_line() -> None:
    stream = Terminal()
    with cli_render.Spinner("waiting", stream) as spinner:
        assert spinner.active
        time.sleep(0.25)
    text = stream.getvalue()
    assert "\r| waiting" in text and "\r/ waiting" in text
    assert text.endswith("\r" + " " * len("x waiting") + "\r")
    assert not spinner.active


def test_spinner_is_silent_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    with cli_render.Spinner("waiting", stream) as spinner:
        assert not spinner.active
        time.sleep(0.15)
    assert stream.getvalue() == ""


def test_receipt_table_names_state_version_and_events() -> None:
    event = events_pb2.EventEnvelope(version=3)
    event.pull_request_approved.reviewer = "bob"
    done = svc.CommandReceipt(
        command_id="c1",
        pull_request_id="pr-1",
        state=outcome_pb2.COMMAND_STATE_SUCCEEDED,
        result=results_pb2.CommandResult(version=3, events=[event]),
    )
    assert cli_render.receipt_table(done).splitlines() == [
        "pull request  pr-1",
        "command       c1",
        "state         SUCCEEDED",
        "version       3",
        "events        PullRequestApproved",
    ]
    accepted = svc.CommandReceipt(command_id="c2", state=outcome_pb2.COMMAND_STATE_ACCEPTED)
    assert "follow        prgate pr watch --command c2" in cli_render.receipt_table(accepted)
    assert "follow" not in cli_render.receipt_table(accepted, hint=False)


def test_event_line_and_list_table() -> None:
    event = events_pb2.EventEnvelope(pull_request_id="pr-1", version=2, command_id="c9")
    event.pull_request_status_changed.from_status = pull_request_pb2.PULL_REQUEST_STATUS_OPEN
    event.pull_request_status_changed.to_status = pull_request_pb2.PULL_REQUEST_STATUS_MERGED
    event.pull_request_status_changed.actor = "bob"
    event.occurred_at.FromSeconds(0)
    assert cli_render.event_line(event) == (
        "-  pr-1  v2  PullRequestStatusChanged  from_status=OPEN to_status=MERGED actor=bob"
        "  (command c9)"
    )
    pr = pull_request_pb2.PullRequest(
        pull_request_id="pr-1", status=1, version=4, repository="a/b", author="ada", title="T" * 60
    )
    table = cli_render.table(cli_render.LIST_HEADER, [cli_render.list_row(pr)]).splitlines()
    assert table[0].split() == ["ID", "STATUS", "VER", "REPOSITORY", "AUTHOR", "TITLE"]
    assert table[1].split()[:5] == ["pr-1", "OPEN", "4", "a/b", "ada"]
    assert table[1].endswith("T" * 47 + "…")


def test_exit_codes_by_error_family() -> None:
    def code_of(code: grpc.StatusCode) -> int:
        return cli_pr.exit_code(errors.error_for(code, "x"))

    for rejected in (
        "INVALID_ARGUMENT",
        "FAILED_PRECONDITION",
        "NOT_FOUND",
        "ABORTED",
        "ALREADY_EXISTS",
    ):
        assert code_of(grpc.StatusCode[rejected]) == 1
    for unanswered in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"):
        assert code_of(grpc.StatusCode[unanswered]) == 3
    assert code_of(grpc.StatusCode.PERMISSION_DENIED) == 1
