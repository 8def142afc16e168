"""What the CLI prints: spinner only on a terminal, tables, event lines, exit codes."""

from __future__ import annotations

import io
import json
import time

import grpc

from prgate.cli import pr as cli_pr
from prgate.cli import render as cli_render
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


# Data written before the gateway refused them (or by a gateway that is not ours): a Trojan
# Source title, an ANSI escape sequence, an invisible tag character, a line break.
HOSTILE = "Fix \u202eexe.txt\u202c \x1b[2J\U000e0041 two\nlines"


def no_raw_unprintable(text: str, allowed: str = "") -> None:
    for character in text:
        assert character.isprintable() or character in allowed, repr(character)


def test_tables_and_lines_escape_what_a_terminal_would_not_show() -> None:
    pr = pull_request_pb2.PullRequest(
        pull_request_id="pr-1",
        repository="ACME/Widgets",
        title=HOSTILE,
        description=HOSTILE,
        author="ada\u200b",
        source_branch="f\u2066x",
        target_branch="main",
        status=1,
        version=2,
    )
    pr.reviews.add(reviewer="bob\u202e")
    pr.checks.add(check_name="ci\x07", conclusion=1)
    for text in (
        cli_render.pull_request_table(pr),
        cli_render.table(cli_render.LIST_HEADER, [cli_render.list_row(pr)]),
        cli_render.version_line(pr),
    ):
        no_raw_unprintable(text, allowed="\n")
        assert "\\u202e" in text
    table = cli_render.pull_request_table(pr)
    assert "title         Fix \\u202eexe.txt\\u202c \\x1b[2J\\U000e0041 two\\nlines" in table
    assert "reviews       bob\\u202e" in table and "checks        ci\\x07:SUCCESS" in table
    assert len(table.splitlines()) == 12  # the line break in the title made no new line


def test_event_lines_json_and_errors_escape_too() -> None:
    event = events_pb2.EventEnvelope(pull_request_id="pr-1", version=2, command_id="c9")
    event.pull_request_title_changed.new_title = HOSTILE
    no_raw_unprintable(cli_render.event_line(event))
    assert "\\u202e" in cli_render.event_line(event)
    as_json = cli_render.to_json(event)
    no_raw_unprintable(as_json)
    assert json.loads(as_json)["pullRequestTitleChanged"]["newTitle"] == HOSTILE
    error = cli_render.error_text("FAILED_PRECONDITION: x\n  precondition X on bob\u202e: y")
    assert error.splitlines()[1] == "  precondition X on bob\\u202e: y"


def test_joiners_and_ordinary_text_are_printed_as_they_are() -> None:
    for text in ("👩\u200d💻 dev tooling", "Zoë O'Brien", "修复解析器", "tab-free text"):
        assert cli_render.printable(text) == text


def test_bytes_that_parse_but_cannot_be_shown_are_an_error_line_not_a_traceback() -> None:
    """Attack: a record whose Timestamp is out of range (seconds 2^62: bytes prgate never
    writes, but anyone with write access to a topic can). json_format raised, and `prgate
    decode`, `prgate events tail` and the tables ended in a traceback."""
    import base64

    from google.protobuf import timestamp_pb2

    from prgate.cli.decode import record_line
    from prgate.v1 import commands_pb2

    far = timestamp_pb2.Timestamp(seconds=2**62)
    envelope = commands_pb2.CommandEnvelope(command_id="c-1", issued_at=far)
    line = record_line(
        "prgate.commands",
        partition=0,
        offset=7,
        timestamp_ms=1,
        key=b"pr-\xff",
        value=envelope.SerializeToString(),
        headers=[("message-type", b"prgate.v1.CommandEnvelope"), ("odd", b"\xff\xfe")],
        fallback_type=None,
    )
    assert "cannot be shown as JSON" in line["error"]
    assert base64.b64decode(line["value_base64"]) == envelope.SerializeToString()
    json.dumps(line)  # a JSON line

    event = events_pb2.EventEnvelope(event_id="e-1", pull_request_id="pr-1", occurred_at=far)
    shown = json.loads(cli_render.to_json(event))
    assert shown["message_type"] == "prgate.v1.EventEnvelope"
    assert "cannot be shown as protobuf JSON" in shown["error"]
    assert "invalid timestamp" in cli_render.event_line(event)
    pull_request = pull_request_pb2.PullRequest(pull_request_id="pr-1", created_at=far)
    assert "invalid timestamp" in cli_render.pull_request_table(pull_request)
    assert cli_render.timestamp(timestamp_pb2.Timestamp(seconds=-(2**62))).startswith("invalid")
