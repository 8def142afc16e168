"""How the ``prgate pr`` and ``prgate events`` commands print: tables, JSON, a spinner.

Humans get short aligned tables; ``--json`` prints protobuf JSON (``json_format``, the field
names, ``pullRequestId``, as grpcurl prints a response) on one line per object, so a stream
is JSON Lines.

Nothing from the data reaches the terminal raw: every character a terminal would not show as
itself (control characters such as ESC, bidirectional controls such as U+202E, invisible
characters) is printed as an escape (``\x1b``, ``\u202e``), in tables, lines, errors and JSON.
The gateway refuses such characters in new commands; this is for data written before it did,
and for a gateway that is not ours.
"""

from __future__ import annotations

import base64
import itertools
import json
import sys
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC
from types import TracebackType
from typing import TextIO

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import events_pb2, outcome_pb2, pull_request_pb2

TITLE_WIDTH = 48
# Shown as themselves although not "printable": they join emoji sequences and some scripts'
# letters, and reorder nothing.
_JOINERS = frozenset("\u200c\u200d")


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(character: str) -> str:
    if character in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[character]
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every character a terminal would not show as itself escaped (``\\x1b``,
    ``\\u202e``; line breaks too, unless ``keep_newlines``). Spaces and joiners stay."""
    if text.isprintable():
        return text
    return "".join(
        character
        if character.isprintable() or character in _JOINERS or (keep_newlines and character == "\n")
        else _escape(character)
        for character in text
    )


def to_json(message: Message) -> str:
    """One line of protobuf JSON; fields without presence are printed even when zero.

    ``json_format`` escapes every non-ASCII character (``\\u202e``), so nothing unprintable
    reaches the terminal here either. A message protobuf JSON cannot show (a Timestamp out of
    its range: bytes that parse but were never written by prgate) is one JSON object with
    ``error``, ``message_type`` and the bytes as ``value_base64``, so the output stays JSON
    Lines instead of ending in a traceback.
    """
    try:
        return json_format.MessageToJson(
            message, indent=None, always_print_fields_with_no_presence=True
        )
    except (json_format.Error, ValueError, TypeError) as exc:
        return json.dumps(
            {
                "error": f"cannot be shown as protobuf JSON: {exc}",
                "message_type": message.DESCRIPTOR.full_name,
                "value_base64": base64.b64encode(message.SerializeToString()).decode(),
            },
            ensure_ascii=True,
        )


def state_name(state: int) -> str:
    return outcome_pb2.CommandState.Name(state).removeprefix("COMMAND_STATE_")


def status_name(status: int) -> str:
    return pull_request_pb2.PullRequestStatus.Name(status).removeprefix("PULL_REQUEST_STATUS_")


def conclusion_name(conclusion: int) -> str:
    return pull_request_pb2.CheckConclusion.Name(conclusion).removeprefix("CHECK_CONCLUSION_")


def timestamp(value: timestamp_pb2.Timestamp) -> str:
    """ISO 8601 in UTC, ``-`` when unset; a value outside the Timestamp's range (years
    1..9999) is shown as its seconds, not raised."""
    if not value.seconds and not value.nanos:
        return "-"
    try:
        return value.ToDatetime(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (ValueError, OverflowError, OSError):
        return f"invalid timestamp ({value.seconds} s, {value.nanos} ns)"


def key_values(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {printable(v)}" for k, v in rows)


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    body = [list(header), *([printable(cell) for cell in r] for r in rows)]
    widths = [max(len(r[i]) for r in body) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in body
    )


def shorten(text: str, width: int = TITLE_WIDTH) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def event_name(event: events_pb2.EventEnvelope) -> str:
    which = event.WhichOneof("event") or "unknown"
    return "".join(part.capitalize() for part in which.split("_"))


def event_summary(event: events_pb2.EventEnvelope) -> str:
    """The event's own fields as ``key=value`` (enum values by name)."""
    which = event.WhichOneof("event")
    if which is None:
        return ""
    body = getattr(event, which)
    parts = []
    for field, value in body.ListFields():
        if field.enum_type is not None:
            shown = field.enum_type.values_by_number[value].name
            shown = shown.removeprefix("PULL_REQUEST_STATUS_").removeprefix("CHECK_CONCLUSION_")
        else:
            shown = str(value)
        text = shorten(shown)
        parts.append(
            f"{field.name}={text!r}" if " " in text or not text else f"{field.name}={text}"
        )
    return " ".join(parts)


def receipt_table(receipt: svc.CommandReceipt, *, hint: bool = True) -> str:
    rows = [
        ("pull request", receipt.pull_request_id or "-"),
        ("command", receipt.command_id),
        ("state", state_name(receipt.state)),
    ]
    if receipt.HasField("result"):
        result = receipt.result
        rows.append(("version", str(result.version)))
        if result.events:
            rows.append(("events", ", ".join(event_name(e) for e in result.events)))
        if result.duplicate:
            rows.append(("duplicate", "yes (answered again, nothing new applied)"))
    if hint and receipt.state == outcome_pb2.COMMAND_STATE_ACCEPTED:
        rows.append(("follow", f"prgate pr watch --command {receipt.command_id}"))
    return key_values(rows)


def reviews_text(pull_request: pull_request_pb2.PullRequest) -> str:
    return ", ".join(r.reviewer for r in pull_request.reviews) or "-"


def checks_text(pull_request: pull_request_pb2.PullRequest) -> str:
    return (
        ", ".join(f"{c.check_name}:{conclusion_name(c.conclusion)}" for c in pull_request.checks)
        or "-"
    )


def pull_request_table(pr: pull_request_pb2.PullRequest) -> str:
    rows = [
        ("pull request", pr.pull_request_id),
        ("repository", pr.repository),
        ("title", pr.title),
        ("status", status_name(pr.status)),
        ("version", str(pr.version)),
        ("author", pr.author),
        ("branches", f"{pr.source_branch} -> {pr.target_branch}"),
        ("reviews", reviews_text(pr)),
        ("checks", checks_text(pr)),
        ("created", timestamp(pr.created_at)),
        ("updated", timestamp(pr.updated_at)),
    ]
    if pr.description:
        rows.insert(3, ("description", shorten(pr.description, 72)))
    if pr.HasField("merge"):
        rows.append(("merged", f"by {pr.merge.merged_by_user} at {timestamp(pr.merge.merged_at)}"))
    if pr.HasField("revert"):
        rows.append(
            ("reverted", f"by {pr.revert.reverted_by} at {timestamp(pr.revert.reverted_at)}")
        )
    return key_values(rows)


LIST_HEADER = ("ID", "STATUS", "VER", "REPOSITORY", "AUTHOR", "TITLE")


def list_row(pr: pull_request_pb2.PullRequest) -> tuple[str, ...]:
    return (
        pr.pull_request_id,
        status_name(pr.status),
        str(pr.version),
        pr.repository,
        pr.author,
        shorten(pr.title),
    )


def version_line(pr: pull_request_pb2.PullRequest) -> str:
    """One line per version, for ``prgate pr watch``."""
    return printable(
        f"{timestamp(pr.updated_at)}  v{pr.version}  {status_name(pr.status)}  "
        f"{shorten(pr.title)!r}  reviews={reviews_text(pr)}  checks={checks_text(pr)}"
    )


def event_line(event: events_pb2.EventEnvelope) -> str:
    """One line per event, for ``prgate events tail``."""
    return printable(
        f"{timestamp(event.occurred_at)}  {event.pull_request_id}  v{event.version}  "
        f"{event_name(event)}  {event_summary(event)}".rstrip()
        + f"  (command {event.command_id})"
    )


def error_text(description: str) -> str:
    """An error's description (``PrgateError.describe()``, several lines) for stderr."""
    return printable(description, keep_newlines=True)


class Spinner:
    """A spinner on stderr while a call waits; does nothing unless stderr is a terminal."""

    FRAMES = "|/-\\"

    def __init__(self, message: str, stream: TextIO | None = None) -> None:
        self._message = message
        self._stream = stream if stream is not None else sys.stderr
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> Spinner:
        if self._stream.isatty():
            self._thread = threading.Thread(target=self._spin, name="spinner", daemon=True)
            self._thread.start()
        return self

    def _spin(self) -> None:
        for frame in itertools.cycle(self.FRAMES):
            self._stream.write(f"\r{frame} {self._message}")
            self._stream.flush()
            if self._stop.wait(0.1):
                break
        self._stream.write("\r" + " " * (len(self._message) + 2) + "\r")
        self._stream.flush()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
