"""The load of the cluster fault tests (tests/faults/test_cluster_faults.py,
tests/faults/test_network_faults.py): two processors and two gateways on a cluster, a client
that spreads its calls over the gateways by round robin, and the measurements and checks every
fault ends with (time until commands succeed again, the calls that failed in the window, the
verifier's invariants).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from prgate.kafka.cluster import LocalCluster
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics
from tests.e2e.stack import GatewayProcess
from tests.faults.conftest import FaultStack, Scale, close_stack, open_stack
from tests.faults.ledger import Ledger
from tests.faults.load import Call, Client, Load, first_success
from tests.faults.summary import Row
from tests.faults.verify import verify

DEADLINE_S = 6.0
# Slack for the answer to travel back and for this (busy, two-core) machine's scheduling.
LATE_SLACK_S = 1.0
# How long commands may fail after one broker died: the controller fences it after
# broker.session.timeout.ms (6 s, prgate.kafka.cluster), then leaders move; clients and
# coordinators rediscover them. Generous: this is a bound, not a benchmark.
RECOVERY_BOUND_S = 90.0
FAILED = ("UNAVAILABLE", "DEADLINE_EXCEEDED")


@dataclass(frozen=True)
class Timed:
    """One command as its client saw it: when it started and ended (monotonic seconds)."""

    started: float
    ended: float
    call: Call


class RoundRobin(Client):
    """A client that spreads its calls over the gateways in turn (client-side round robin) and
    remembers when each command started and ended."""

    def __init__(
        self, targets: Callable[[], Sequence[GatewayProcess]], ledger: Ledger, **kwargs: Any
    ) -> None:
        super().__init__(targets, ledger, **kwargs)
        self._turn = itertools.count()
        self._timed_lock = threading.Lock()
        self.timed: list[Timed] = []

    def send(
        self,
        rpc: str,
        fields: dict[str, Any],
        mode: int,
        *,
        key: str | None = None,
        first_target: int = 0,
    ) -> Call:
        started = time.monotonic()
        call = super().send(rpc, fields, mode, key=key, first_target=next(self._turn))
        with self._timed_lock:
            self.timed.append(Timed(started, time.monotonic(), call))
        return call

    def since(self, moment: float) -> list[Timed]:
        with self._timed_lock:
            return [t for t in self.timed if t.ended >= moment]


@dataclass
class Running:
    """Two processors and two gateways on the cluster, a round-robin client and its load."""

    kafka: KafkaSettings
    stack: FaultStack
    gateways: list[GatewayProcess]
    client: RoundRobin
    ledger: Ledger
    load: Load
    seed: int  # the test's random seed (PRGATE_FAULTS_SEED replays it)


@contextmanager
def open_running(
    cluster: LocalCluster, topic_prefix: str, tmp_path: Path, scale: Scale, seed: int
) -> Iterator[Running]:
    """Topics (3 partitions) under ``topic_prefix``, processors p0 and p1, gateways g0 and
    g1, a round-robin client that has seen one command succeed, and its (not yet started)
    load; everything stopped on exit."""
    kafka = KafkaSettings(
        bootstrap_servers=cluster.bootstrap_servers, topic_prefix=topic_prefix, partitions=3
    )
    ensure_topics(kafka)
    stack = open_stack(kafka, tmp_path)
    try:
        stack.processor("p0")
        stack.processor("p1")
        gateways = [stack.gateway(name="g0"), stack.gateway(name="g1")]
        ledger = Ledger()
        client = RoundRobin(lambda: gateways, ledger, deadline_s=DEADLINE_S, retries=2)
        first_success(client, timeout=90)
        load = Load(client, workers=scale.workers, max_commands=scale.max_commands, seed=seed)
        yield Running(kafka, stack, gateways, client, ledger, load, seed)
    finally:
        close_stack(stack)


def wait_ok_calls(client: RoundRobin, count: int, since: float, timeout: float) -> None:
    """Wait until ``count`` commands that started after ``since`` ended OK."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            sum(1 for t in client.since(since) if t.started >= since and t.call.code == "OK")
            >= count
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} OK commands within {timeout}s")


def wait_leaderships_moved(cluster: LocalCluster, node_id: int, timeout: float) -> float:
    """Seconds until metadata shows no partition (internal topics included) led by ``node_id``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        led: list[str]
        try:
            leaders = cluster.leaders(cluster_topics(cluster))
            led = [f"{topic}[{number}]" for (topic, number), v in leaders.items() if v == node_id]
        except KafkaException as exc:  # metadata from a node that is going away: ask again
            led = [str(exc)]
        if not led:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"node {node_id} still leads partitions after {timeout}s")


def cluster_topics(cluster: LocalCluster) -> list[str]:
    return list(cluster.admin().list_topics(timeout=10).topics)


def report_window(row: Row, client: RoundRobin, fault_at: float, label: str) -> list[Timed]:
    """Note the commands that ended UNAVAILABLE / DEADLINE_EXCEEDED after ``fault_at`` and the
    window they span; returns them."""
    failed = [t for t in client.since(fault_at) if t.call.code in FAILED]
    if failed:
        last = max(t.ended for t in failed) - fault_at
        shown = ", ".join(
            f"{t.call.code}{'/' + t.call.reason if t.call.reason else ''} {t.call.command_id}"
            for t in failed[:6]
        )
        more = f" (+{len(failed) - 6} more)" if len(failed) > 6 else ""
        row.note(
            f"{label}: {len(failed)} call(s) failed, the last ended {last:.1f}s after the fault: "
            f"{shown}{more}"
        )
    else:
        row.note(f"{label}: no call ended UNAVAILABLE or DEADLINE_EXCEEDED")
    return failed


def finish(run: Running, row: Row, cluster: LocalCluster) -> None:
    """Heal the cluster, stop the load, check the answers and the invariants."""
    for node in cluster.nodes:
        if node.pid() is None:
            node.start(timeout=180)
            row.fault(f"node {node.node_id} restarted")
    healed = cluster.wait_fully_replicated(timeout=180)
    row.note(f"fully replicated again {healed:.1f}s after the restart")
    wait_ok_calls(run.client, 5, time.monotonic(), timeout=RECOVERY_BOUND_S)
    run.load.stop()
    run.stack.assert_alive()
    calls = run.client.snapshot()
    late = [c for c in calls if c.wall_s > c.deadline_s + LATE_SLACK_S]
    assert not late, f"calls answered after their deadline: {late[:3]}"
    errors = Counter(c.code for c in calls if c.code != "OK")
    assert not {"INTERNAL", "UNKNOWN"} & set(errors), errors
    row.note(f"gateway answers: {dict(Counter(c.state or c.code for c in calls))}")
    verdict = verify(run.kafka, run.ledger, result_timeout=120)
    row.take(verdict, run.ledger.calls)
    row.note(verdict.summary())
    verdict.assert_ok()
    assert verdict.completed == verdict.accepted >= 30, verdict.summary()
    run.stack.assert_alive()  # also through the verification's minutes


def start_load(run: Running) -> None:
    """Start the load and wait until it runs (20 commands OK)."""
    run.load.start()
    wait_ok_calls(run.client, 20, time.monotonic(), timeout=60)
