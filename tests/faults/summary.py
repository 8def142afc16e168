"""The fault suite's outcome table: one row per test, printed at the end of the run.

Tests fill their row through the ``fault_row`` fixture (tests/faults/conftest.py); the
``pytest_terminal_summary`` hook there prints :func:`render`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from tests.faults.verify import Verdict


@dataclass
class Row:
    """What one fault test did and found."""

    test: str
    outcome: str = "?"
    sent: int = 0  # command calls made (retries included)
    accepted: int = 0  # command ids the gateway reported durable
    completed: int = 0  # of those, with their terminal result on the results topic
    lost: int = 0
    duplicated_events: int = 0
    faults: list[str] = field(default_factory=list)
    # time.monotonic() of each fault in ``faults`` (same order): where the load windows start.
    fault_at: list[float] = field(default_factory=list)
    # Client answers compared with the results topic (None: no verification of answers).
    answers_checked: int | None = None
    # Tests of bad records on Kafka fill these (None: not measured, shown as "-"): records sent
    # straight to Kafka, commands the processor answered FAILED or REJECTED because of them,
    # and the processor's aborted transactions they caused (a loop shows as a large number).
    bad_records: int | None = None
    commands_failed: int | None = None
    aborts: int | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def fault(self, what: str) -> float:
        """Count one injected fault, e.g. ``"SIGKILL processor"``; returns its
        ``time.monotonic()`` second (also kept in ``fault_at``), the start of the window in
        which ``verify.assert_load_after`` wants the load to go on."""
        at = time.monotonic()
        self.faults.append(what)
        self.fault_at.append(at)
        return at

    def note(self, text: str) -> None:
        """A measurement worth reading in the table, e.g. ``"recovered in 4.2s"``."""
        self.notes.append(text)

    def take(self, verdict: Verdict, sent: int) -> None:
        """Copy the numbers of a verification."""
        self.sent = sent
        self.accepted = verdict.accepted
        self.completed = verdict.completed
        self.lost = len(verdict.lost)
        self.duplicated_events = verdict.duplicated_events
        self.answers_checked = verdict.answers_checked


_lock = threading.Lock()
ROWS: list[Row] = []


def add(row: Row) -> None:
    with _lock:
        ROWS.append(row)


def _faults(row: Row) -> str:
    if not row.faults:
        return "-"
    counts: dict[str, int] = {}
    for fault in row.faults:
        counts[fault] = counts.get(fault, 0) + 1
    return ", ".join(f"{n}x {what}" for what, n in counts.items())


def _measured(value: int | None) -> str:
    return "-" if value is None else str(value)


def _total(values: list[int | None]) -> str:
    measured = [v for v in values if v is not None]
    return str(sum(measured)) if measured else "-"


def render() -> list[str]:
    """The table as lines of text, plus each row's notes below it."""
    header = (
        "test",
        "result",
        "sent",
        "accepted",
        "completed",
        "lost",
        "dup.events",
        "answers checked against Kafka",
        "bad.records",
        "cmds.failed",
        "aborts",
        "secs",
    )
    with _lock:
        rows = list(ROWS)
    cells = [
        (
            r.test,
            r.outcome,
            str(r.sent),
            str(r.accepted),
            str(r.completed),
            str(r.lost),
            str(r.duplicated_events),
            _measured(r.answers_checked),
            _measured(r.bad_records),
            _measured(r.commands_failed),
            _measured(r.aborts),
            f"{r.seconds:.1f}",
        )
        for r in rows
    ]
    totals = (
        "TOTAL",
        f"{sum(r.outcome == 'passed' for r in rows)}/{len(rows)} passed",
        str(sum(r.sent for r in rows)),
        str(sum(r.accepted for r in rows)),
        str(sum(r.completed for r in rows)),
        str(sum(r.lost for r in rows)),
        str(sum(r.duplicated_events for r in rows)),
        _total([r.answers_checked for r in rows]),
        _total([r.bad_records for r in rows]),
        _total([r.commands_failed for r in rows]),
        _total([r.aborts for r in rows]),
        f"{sum(r.seconds for r in rows):.1f}",
    )
    widths = [
        max(len(h), len(totals[i]), *(len(c[i]) for c in cells)) for i, h in enumerate(header)
    ]

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(
            v.ljust(w) if i < 2 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    out = [line(header), line(tuple("-" * w for w in widths))]
    for row, values in zip(rows, cells, strict=True):
        out.append(line(values))
        out.append(f"    faults: {_faults(row)}")
        for note in row.notes:
            out.append(f"    {note}")
    out.append(line(tuple("-" * w for w in widths)))
    out.append(line(totals))
    out.append(f"    faults injected: {sum(len(r.faults) for r in rows)}")
    return out
