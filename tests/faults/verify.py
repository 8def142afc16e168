"""What every fault test checks afterwards, written once: read a prefix's topics back with
``read_committed`` and hold them against what the gateway told its clients.

    ledger = Ledger()                   # the load generator records every call in it
    ...inject faults...
    verdict = verify(kafka, ledger)     # waits (bounded) for the accepted commands' results
    verdict.assert_ok()

Invariants (docs/contract.md, "Consistency and delivery"):

- every command the gateway reported ACCEPTED or SUCCEEDED (or DEADLINE_EXCEEDED with reason
  RESULT_NOT_IN_TIME, which says "accepted, result late") has exactly one terminal result that
  is not flagged ``duplicate``; a ``duplicate=True`` result exists only for a command whose
  record the commands topic holds more than once, at most one per extra record (each command
  record is answered exactly once): a client's idempotent retry writes the record again, and
  so can the gateway's idempotent producer when in-flight requests time out across a broker
  outage (the processor then applies the command once and answers the copy as a duplicate);
- no command id, accepted or not, has two non-duplicate results;
- per pull request the events topic holds versions 1..n in offset order: no gap, no repeat,
  no event id twice;
- the events of a command are exactly the events in its SUCCEEDED result, and every event was
  caused by a command that SUCCEEDED;
- the compacted topic's last snapshot of each pull request equals the fold of its events
  (ignoring ``recent_commands``, the processor's bookkeeping), at version n;
- every answer a client was told (recorded with its :class:`~tests.faults.ledger.Answer`)
  agrees with the command's terminal result on the results topic: a SUCCEEDED / REJECTED
  receipt names this command and has its result's state, pull request, version and events
  (an idempotent retry's answer, ``duplicate=True``, the original's state and version); a
  refusal with a domain reason is the processor's REJECTED result with that reason, or there
  is no result at all (the gateway refused before producing); COMMAND_FAILED is a FAILED
  result; RESULT_NOT_IN_TIME and ACCEPTED have a result (see ``lost``). Answers that say
  nothing about the outcome (UNAVAILABLE, a deadline without reason) are not counted in
  ``answers_checked``. These answer checks are :mod:`tests.faults.verify_answers`.

A verdict also tells whether the load ran across the faults: :meth:`Verdict.window` counts
the commands accepted (and of those, completed) in a span of ``time.monotonic()`` seconds,
e.g. after each injected fault (``Row.fault`` records when), and :func:`assert_load_after`
fails a test whose load did not go on after a fault.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prgate.domain import fold
from prgate.kafka.settings import KafkaSettings
from prgate.v1.events_pb2 import EventEnvelope
from prgate.v1.outcome_pb2 import (
    COMMAND_STATE_SUCCEEDED,
    CommandState,
)
from prgate.v1.pull_request_pb2 import PullRequest
from prgate.v1.results_pb2 import CommandResult
from tests.faults.ledger import CommandEntry, Ledger
from tests.faults.readback import (
    command_records,
    read_events,
    read_snapshots,
    wait_for_results,
)
from tests.faults.verify_answers import check_answers

TERMINAL_STATES = frozenset({2, 3, 4})  # SUCCEEDED, REJECTED, FAILED
QUIET_TRIES = 20
QUIET_PAUSE_S = 0.5


def _public(entity: PullRequest) -> PullRequest:
    copy = PullRequest()
    copy.CopyFrom(entity)
    copy.ClearField("recent_commands")
    return copy


@dataclass
class Verdict:
    """The numbers of one verification and every broken invariant found."""

    commands: int = 0
    accepted: int = 0
    results: int = 0
    completed: int = 0  # accepted commands with their terminal result
    succeeded: int = 0
    flagged_duplicates: int = 0
    events: int = 0
    pull_requests: int = 0
    lost: list[str] = field(default_factory=list)
    double_results: list[str] = field(default_factory=list)
    unexpected_duplicates: list[str] = field(default_factory=list)
    # Command ids the commands topic holds more often than the client sent them (a producer
    # wrote them again); not a problem as long as each extra record got one duplicate result.
    rewritten_commands: list[str] = field(default_factory=list)
    duplicated_events: int = 0
    version_errors: list[str] = field(default_factory=list)
    event_result_errors: list[str] = field(default_factory=list)
    snapshot_errors: list[str] = field(default_factory=list)
    # Answers compared with the terminal result (or its absence) on the results topic.
    answers_checked: int = 0
    # Answers that disagree with the results topic (a gateway that lied to its client).
    answer_errors: list[str] = field(default_factory=list)
    # Per accepted command id: when it was accepted (time.monotonic()) and whether completed.
    accepted_at: dict[str, float] = field(default_factory=dict)
    completed_ids: set[str] = field(default_factory=set)

    def window(self, since: float, until: float = float("inf")) -> tuple[int, int]:
        """(accepted, completed): commands first accepted in ``[since, until)``
        (``time.monotonic()`` seconds) and, of those, the ones with their terminal result."""
        ids = [c for c, at in self.accepted_at.items() if since <= at < until]
        return len(ids), sum(1 for c in ids if c in self.completed_ids)

    def problems(self) -> list[str]:
        out: list[str] = []
        for name in (
            "lost",
            "double_results",
            "unexpected_duplicates",
            "version_errors",
            "event_result_errors",
            "snapshot_errors",
            "answer_errors",
        ):
            items: list[str] = getattr(self, name)
            if items:
                out.append(f"{name} ({len(items)}): {items[:5]}")
        if self.duplicated_events:
            out.append(f"duplicated_events: {self.duplicated_events}")
        return out

    def assert_ok(self) -> None:
        problems = self.problems()
        assert not problems, "invariants broken:\n  " + "\n  ".join(problems)

    def summary(self) -> str:
        return (
            f"commands={self.commands} accepted={self.accepted} completed={self.completed} "
            f"results={self.results} succeeded={self.succeeded} events={self.events} "
            f"pull_requests={self.pull_requests} flagged_duplicates={self.flagged_duplicates} "
            f"rewritten_commands={len(self.rewritten_commands)} "
            f"lost={len(self.lost)} duplicated_events={self.duplicated_events} "
            f"answers_checked={self.answers_checked}"
        )


def assert_load_after(
    verdict: Verdict,
    since: float,
    *,
    min_accepted: int,
    min_completed: int,
    until: float = float("inf"),
    what: str = "the fault",
) -> tuple[int, int]:
    """Fail unless at least ``min_accepted`` commands were accepted in ``[since, until)``
    (``time.monotonic()`` seconds, e.g. from ``Row.fault``) and ``min_completed`` of them got
    their terminal result: a fault test whose load stopped before the fault proves nothing.
    Returns the two counts."""
    assert min_accepted >= 1 and min_completed >= 1, "a minimum of 0 would let an empty load pass"
    accepted, completed = verdict.window(since, until)
    assert accepted >= min_accepted and completed >= min_completed, (
        f"the load did not run across {what}: {accepted} commands accepted and {completed} "
        f"completed after it (want >= {min_accepted} and >= {min_completed}); "
        f"{verdict.summary()}"
    )
    return accepted, completed


def assert_load_across_faults(
    verdict: Verdict, fault_at: Sequence[float], *, per_fault: int, after_last: int
) -> None:
    """:func:`assert_load_after` for each fault up to the next one (``per_fault`` commands
    accepted and completed in between) and after the last one (``after_last``)."""
    assert fault_at, "no fault was injected"
    ends = [*fault_at[1:], float("inf")]
    for n, (since, until) in enumerate(zip(fault_at, ends, strict=True)):
        least = after_last if n == len(fault_at) - 1 else per_fault
        assert_load_after(
            verdict,
            since,
            until=until,
            min_accepted=least,
            min_completed=least,
            what=f"fault {n + 1} of {len(fault_at)}",
        )


def verify(
    kafka: KafkaSettings,
    ledger: Ledger,
    *,
    result_timeout: float = 60.0,
    ignore_keys: frozenset[str] = frozenset(),
) -> Verdict:
    """Wait (bounded) for the accepted commands' results, then check every invariant."""
    entries = ledger.snapshot()
    accepted = {c for c, e in entries.items() if e.accepted}
    results = wait_for_results(kafka, accepted, timeout=result_timeout)
    # Commands the ledger could not count as accepted (e.g. ACCEPT_NOT_CONFIRMED) may still be
    # processed while we read; events and snapshots are compared only once two reads of the
    # events, around the read of the snapshots, agree (bounded).
    for _ in range(QUIET_TRIES):
        events = read_events(kafka)
        snapshots = read_snapshots(kafka, ignore_keys)
        if len(read_events(kafka)) == len(events):
            break
        time.sleep(QUIET_PAUSE_S)
    # Such a command's events may have been read after the results were: read the results
    # again once every command with events has its own (same bounded wait).
    caused = {e.command_id for e in events}
    if not caused <= {r.command_id for r in results}:
        results = wait_for_results(kafka, accepted | caused, timeout=result_timeout)
    return check(entries, results, events, snapshots, command_records(kafka))


def check(
    entries: dict[str, CommandEntry],
    results: list[CommandResult],
    events: list[EventEnvelope],
    snapshots: dict[str, PullRequest],
    records: Mapping[str, int] | None = None,
) -> Verdict:
    """The invariants over what was read (pure, so it is easy to test on its own).

    ``records``: how many records of each command id the commands topic holds
    (:func:`~tests.faults.readback.command_records`); ``None`` assumes one per send the
    ledger counted (a history without a commands topic, in the checker's own tests).
    """
    verdict = Verdict(commands=len(entries), results=len(results), events=len(events))
    originals: dict[str, list[CommandResult]] = defaultdict(list)
    duplicates: Counter[str] = Counter()
    for result in results:
        if result.state not in TERMINAL_STATES:
            verdict.event_result_errors.append(
                f"{result.command_id}: result state {CommandState.Name(result.state)}"
            )
        if result.duplicate:
            duplicates[result.command_id] += 1
        else:
            originals[result.command_id].append(result)
    verdict.flagged_duplicates = sum(duplicates.values())
    verdict.succeeded = sum(
        1 for rs in originals.values() if rs[0].state == COMMAND_STATE_SUCCEEDED
    )

    for command_id, entry in entries.items():
        if entry.accepted:
            verdict.accepted += 1
            if entry.accepted_at is not None:
                verdict.accepted_at[command_id] = entry.accepted_at
            if originals.get(command_id):
                verdict.completed += 1
                verdict.completed_ids.add(command_id)
            else:
                verdict.lost.append(f"{command_id} ({entry.rpc}, told {entry.outcomes})")
    for command_id, found in originals.items():
        if len(found) > 1:
            verdict.double_results.append(f"{command_id}: {len(found)} non-duplicate results")
    for command_id, count in duplicates.items():
        entry = entries.get(command_id)
        sends = entry.sends if entry else 0
        on_topic = sends if records is None else records.get(command_id, 0)
        # Every command record has exactly one result: the first applied, each copy a duplicate.
        if count > on_topic - 1:
            verdict.unexpected_duplicates.append(
                f"{command_id}: {count} duplicate=True results for {on_topic} record(s) on "
                f"the commands topic, sent {sends} time(s)"
            )
    if records is not None:
        verdict.rewritten_commands = sorted(
            f"{command_id}: {on_topic} records, sent {entries[command_id].sends} time(s)"
            for command_id, on_topic in records.items()
            if command_id in entries and on_topic > entries[command_id].sends
        )

    for command_id, entry in entries.items():
        check_answers(verdict, entry, originals.get(command_id, []))
    _check_events(verdict, originals, events)
    _check_snapshots(verdict, events, snapshots)
    return verdict


def _check_events(
    verdict: Verdict, originals: dict[str, list[CommandResult]], events: list[EventEnvelope]
) -> None:
    by_pr: dict[str, list[EventEnvelope]] = defaultdict(list)
    by_command: dict[str, set[str]] = defaultdict(set)
    seen_ids: set[str] = set()
    for event in events:
        if event.event_id in seen_ids:
            verdict.duplicated_events += 1
        seen_ids.add(event.event_id)
        by_pr[event.pull_request_id].append(event)
        by_command[event.command_id].add(event.event_id)
    verdict.pull_requests = len(by_pr)
    for pr, history in by_pr.items():
        versions = [e.version for e in history]
        repeats = len(versions) - len(set(versions))
        verdict.duplicated_events += repeats
        if versions != list(range(1, len(versions) + 1)):
            verdict.version_errors.append(f"{pr}: versions {versions[:20]}")
    for command_id, event_ids in by_command.items():
        found = originals.get(command_id)
        if not found or found[0].state != COMMAND_STATE_SUCCEEDED:
            verdict.event_result_errors.append(f"{command_id}: events without a SUCCEEDED result")
            continue
        in_result = {e.event_id for e in found[0].events}
        if in_result != event_ids:
            verdict.event_result_errors.append(
                f"{command_id}: result names {len(in_result)} events, topic has {len(event_ids)}"
            )
    for command_id, found in originals.items():
        result = found[0]
        if (
            result.state == COMMAND_STATE_SUCCEEDED
            and result.events
            and command_id not in by_command
        ):
            verdict.event_result_errors.append(
                f"{command_id}: SUCCEEDED with {len(result.events)} events, none on the topic"
            )


def _check_snapshots(
    verdict: Verdict, events: list[EventEnvelope], snapshots: dict[str, PullRequest]
) -> None:
    by_pr: dict[str, list[EventEnvelope]] = defaultdict(list)
    for event in events:
        by_pr[event.pull_request_id].append(event)
    for pr in sorted(set(by_pr) | set(snapshots)):
        history = by_pr.get(pr, [])
        snapshot = snapshots.get(pr)
        if snapshot is None:
            verdict.snapshot_errors.append(f"{pr}: {len(history)} events but no snapshot")
            continue
        if not history:
            verdict.snapshot_errors.append(f"{pr}: snapshot v{snapshot.version} without events")
            continue
        folded = fold(history)
        assert folded is not None
        if _public(folded) != _public(snapshot):
            verdict.snapshot_errors.append(
                f"{pr}: snapshot v{snapshot.version} != fold of {len(history)} events "
                f"(v{folded.version})"
            )
