"""Gateway failover (issue 14 item 5): SIGKILL one of three gateways under load. Clients spread
over the three retry a call that the dead gateway cut off, with the same idempotency key, on
the next gateway; each command is applied once, whichever gateway ended up answering it, and
the verifier's invariants hold (no accepted command lost, one terminal result per command,
versions 1..n without gap or repeat, snapshot equal to the fold of its events)."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict

from tests.faults.conftest import FaultStack, Scale
from tests.faults.ledger import Ledger
from tests.faults.load import Call, Client, Load, first_success
from tests.faults.summary import Row
from tests.faults.verify import assert_load_after, verify

# Answers of a retry that say the command was decided (applied once, or refused by a rule).
DECIDED = frozenset({"OK", "FAILED_PRECONDITION", "NOT_FOUND", "ABORTED", "INVALID_ARGUMENT"})


def wait_for(condition: object, timeout: float, what: str) -> float:
    """Poll ``condition()`` (cheap, in-process) until true; seconds it took, or fail."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_sigkill_one_of_three_gateways_retries_elsewhere_apply_each_command_once(
    stack: FaultStack, scale: Scale, seed: int, fault_row: Row
) -> None:
    rng = random.Random(seed)
    stack.processor()
    gateways = [stack.gateway(name=f"g{n}") for n in (1, 2, 3)]
    victim = rng.choice(gateways)
    ledger = Ledger()
    # A call cut off with UNAVAILABLE is retried with its key on the next gateway (twice at
    # most: the next one may be the dead one again only after a full turn).
    client = Client(lambda: gateways, ledger, deadline_s=6.0, retries=2)
    first_success(client, timeout=60)

    # Workers start their calls on gateway (worker index mod 3): load on all three.
    load = Load(client, workers=scale.workers * 3, max_commands=scale.max_commands, seed=seed)
    load.start()
    wait_for(
        lambda: (
            sum(c.target == victim.name for c in client.snapshot()) >= 30 and client.in_flight >= 2
        ),
        timeout=60,
        what=f"calls in flight on {victim.name}",
    )
    in_flight = client.in_flight
    stack.kill(victim)
    killed_at = fault_row.fault(f"SIGKILL gateway ({victim.name} of 3)")
    before = len(client.snapshot())
    # Keep the load on until the survivors have answered plenty after the kill.
    recovered_s = wait_for(
        lambda: sum(c.code == "OK" for c in client.snapshot()[before:]) >= 100,
        timeout=120,
        what="100 successful calls after the kill",
    )
    load.stop()
    fault_row.note(f"{in_flight} calls in flight at the kill")

    calls = client.snapshot()
    by_key: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        by_key[call.key].append(call)
    # Keys whose call the dead gateway cut off (or refused, once dead) and that were sent again
    # to another gateway, in the order the client made them.
    failed_over = {
        key: attempts
        for key, attempts in by_key.items()
        if any(a.target == victim.name and a.code == "UNAVAILABLE" for a in attempts)
        and any(a.target != victim.name for a in attempts)
    }
    assert failed_over, f"no call was retried on another gateway: {Counter(c.code for c in calls)}"
    for key, attempts in failed_over.items():
        assert len({a.command_id for a in attempts}) == 1, (key, attempts)  # one command
        assert attempts[-1].target != victim.name
        assert attempts[-1].code in DECIDED, (key, attempts)
    retried_ok = sum(attempts[-1].code == "OK" for attempts in failed_over.values())
    fault_row.note(
        f"{len(failed_over)} commands failed over to another gateway ({retried_ok} OK);"
        f" 100 OK calls {recovered_s:.1f}s after the kill"
    )

    stack.assert_alive()
    verdict = verify(stack.kafka, ledger, result_timeout=60)
    fault_row.take(verdict, len(calls))
    fault_row.note(verdict.summary())
    verdict.assert_ok()
    # Applied once: no command id has two results that both applied it, and no event twice.
    assert verdict.duplicated_events == 0 and not verdict.double_results
    # The load went on through the survivors: commands accepted and completed after the kill.
    assert_load_after(verdict, killed_at, min_accepted=20, min_completed=20, what="the kill")
