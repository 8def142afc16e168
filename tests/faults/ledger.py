"""What the clients of a fault test were told, per command id: the :class:`Ledger` the load
generator fills and :func:`tests.faults.verify.verify` holds against the topics."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from prgate.v1.results_pb2 import CommandResult


@dataclass(frozen=True)
class Answer:
    """One answer a client got for a command call, as :func:`tests.faults.verify.check` holds
    it against the command's terminal result on the results topic.

    ``code`` is the grpc.StatusCode name ("OK" included); ``state`` the receipt's
    CommandState name on OK ("" otherwise); ``reason`` the ErrorInfo reason of an error ("" if
    it carried none); ``receipt_command_id`` / ``receipt_pull_request_id`` the ids the receipt
    (or the ErrorInfo metadata) named; ``result`` the CommandResult inside an OK receipt, when
    the gateway sent one; ``at`` the ``time.monotonic()`` second the answer arrived.
    """

    code: str
    state: str = ""
    reason: str = ""
    receipt_command_id: str = ""
    receipt_pull_request_id: str = ""
    result: CommandResult | None = None
    at: float = 0.0


@dataclass
class CommandEntry:
    """One command id as the clients saw it, over every call that carried it."""

    command_id: str
    rpc: str
    pull_request_id: str = ""
    sends: int = 0
    # The gateway said the command is durable on Kafka (ACCEPTED / SUCCEEDED receipt, or
    # DEADLINE_EXCEEDED with RESULT_NOT_IN_TIME).
    accepted: bool = False
    outcomes: list[str] = field(default_factory=list)
    # Every answer in the order it arrived (only for calls recorded with one).
    answers: list[Answer] = field(default_factory=list)
    # time.monotonic() of the first answer that counted as accepted (None: never accepted).
    accepted_at: float | None = None


class Ledger:
    """Thread-safe record of every command call a test made (by command id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: dict[str, CommandEntry] = {}
        self.calls = 0

    def record(
        self,
        command_id: str,
        rpc: str,
        outcome: str,
        *,
        accepted: bool,
        pull_request_id: str = "",
        answer: Answer | None = None,
    ) -> None:
        """One call's outcome (e.g. ``"COMMAND_STATE_ACCEPTED"`` or ``"UNAVAILABLE"``).

        ``answer``: what the client was told in full, checked against Kafka by ``verify``.
        """
        now = answer.at if answer is not None and answer.at else time.monotonic()
        with self._lock:
            entry = self.entries.setdefault(command_id, CommandEntry(command_id, rpc))
            entry.sends += 1
            if accepted and entry.accepted_at is None:
                entry.accepted_at = now
            entry.accepted = entry.accepted or accepted
            entry.outcomes.append(outcome)
            if answer is not None:
                entry.answers.append(answer)
            entry.pull_request_id = entry.pull_request_id or pull_request_id
            self.calls += 1

    def accepted_since(self, since: float) -> int:
        """Command ids first accepted at or after ``since`` (``time.monotonic()`` seconds)."""
        with self._lock:
            return sum(
                1
                for e in self.entries.values()
                if e.accepted_at is not None and e.accepted_at >= since
            )

    def wait_accepted_since(self, since: float, count: int, timeout: float) -> int:
        """Wait until ``count`` command ids were accepted at or after ``since``; returns how
        many were. Fails the test after ``timeout`` seconds: the load did not go on."""
        deadline = time.monotonic() + timeout
        while (found := self.accepted_since(since)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {found} commands accepted in the {timeout}s after the fault "
                    f"(want {count}): the load did not go on"
                )
            time.sleep(0.05)
        return found

    def accepted_ids(self) -> set[str]:
        with self._lock:
            return {c for c, e in self.entries.items() if e.accepted}

    def outcome_counts(self) -> Counter[str]:
        with self._lock:
            return Counter(o for e in self.entries.values() for o in e.outcomes)

    def snapshot(self) -> dict[str, CommandEntry]:
        with self._lock:
            return dict(self.entries)
