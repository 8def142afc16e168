"""Broker faults on the project's three-node cluster, under load through two gateways (clients
round robin over them, and retry a call cut off with UNAVAILABLE on the other gateway with the
same idempotency key) and two processors. Each test injects one kind of fault, waits until
commands succeed again, brings the cluster back to full replication and runs the verifier's
invariants (tests/faults/verify.py) over everything the clients were told.

Per fault the summary table notes: when the killed node's leaderships had moved, when the first
COMPLETED command after the fault succeeded, the window in which calls failed, and the calls
that ended UNAVAILABLE or DEADLINE_EXCEEDED with their command ids.

Topics are created with 3 replicas and ``min.insync.replicas=2`` (the cluster defaults), and
every producer uses ``acks=all``: a record is acknowledged only once two brokers have it, so
losing any one broker loses no acknowledged command. With two of the three brokers gone nothing
can be acknowledged at all: commands end UNAVAILABLE / DEADLINE_EXCEEDED within their deadline
(``test_two_of_three_brokers_gone_accepts_nothing_and_answers_within_the_deadline``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from prgate.kafka.cluster import LocalCluster
from prgate.v1 import command_service_pb2 as svc
from processor.settings import ProcessorSettings
from tests.faults.cluster_run import (
    DEADLINE_S,
    RECOVERY_BOUND_S,
    RoundRobin,
    Running,
    finish,
    open_running,
    report_window,
    start_load,
    wait_leaderships_moved,
    wait_ok_calls,
)
from tests.faults.conftest import Scale
from tests.faults.load import first_success, open_fields
from tests.faults.summary import Row

pytestmark = pytest.mark.cluster

# What a client may be told while too few brokers remain to acknowledge anything.
DOWN_ANSWERS = {
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED/RESULT_NOT_IN_TIME",
    "DEADLINE_EXCEEDED/ACCEPT_NOT_CONFIRMED",
}


@pytest.fixture
def cluster(session_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The session's cluster, fully replicated before the test and healed after it (every node
    started again, no partition under-replicated), so the next test starts from a whole one."""
    session_cluster.wait_fully_replicated(timeout=180)
    yield session_cluster
    for node in session_cluster.nodes:
        if node.pid() is None:
            node.start(timeout=180)
    session_cluster.wait_fully_replicated(timeout=180)


@pytest.fixture
def running(
    cluster: LocalCluster, topic_prefix: str, tmp_path: Path, scale: Scale, seed: int
) -> Iterator[Running]:
    with open_running(cluster, topic_prefix, tmp_path, scale, seed) as run:
        yield run


def kill_and_recover(run: Running, row: Row, cluster: LocalCluster, victim: int, what: str) -> None:
    """SIGKILL node ``victim`` under the (running) load; measure until its leaderships moved
    and a COMPLETED command succeeded again; note the failed calls; heal and verify."""
    fault_at = time.monotonic()
    cluster.node(victim).kill()
    row.fault(f"SIGKILL {what} (node {victim})")
    moved = wait_leaderships_moved(cluster, victim, timeout=RECOVERY_BOUND_S)
    first_success(run.client, timeout=RECOVERY_BOUND_S)
    succeeded_at = time.monotonic() - fault_at
    row.note(
        f"{what}: node {victim} killed; its leaderships moved after {moved:.1f}s; a COMPLETED "
        f"command succeeded {succeeded_at:.1f}s after the kill"
    )
    wait_ok_calls(run.client, 20, time.monotonic(), timeout=RECOVERY_BOUND_S)
    report_window(row, run.client, fault_at, what)
    finish(run, row, cluster)


LEADER_OF = {
    "commands": lambda k: k.topics.commands,
    "pull-request-events": lambda k: k.topics.events,
    "pull-requests": lambda k: k.topics.pull_requests,
    "command-results": lambda k: k.topics.results,
}


@pytest.mark.parametrize("topic", list(LEADER_OF))
def test_sigkill_the_leader_of_a_partition(
    running: Running, cluster: LocalCluster, fault_row: Row, topic: str, seed: int
) -> None:
    name = LEADER_OF[topic](running.kafka)
    partition = seed % running.kafka.partitions
    victim = cluster.leader(name, partition)
    start_load(running)
    kill_and_recover(running, fault_row, cluster, victim, f"leader of {topic}[{partition}]")


def test_sigkill_the_transaction_coordinator_mid_transaction(
    running: Running, cluster: LocalCluster, fault_row: Row
) -> None:
    transactional_id = ProcessorSettings(topic_prefix=running.kafka.topic_prefix).transactional_id(
        "p0"
    )
    victim = cluster.transaction_coordinator(transactional_id)
    # Under load p0 is almost always inside a transaction; kill while commands are in flight.
    start_load(running)
    deadline = time.monotonic() + 10
    while running.client.in_flight < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    fault_row.note(f"{running.client.in_flight} command(s) in flight at the kill")
    kill_and_recover(
        running, fault_row, cluster, victim, f"transaction coordinator of {transactional_id}"
    )


def test_sigkill_the_group_coordinator(
    running: Running, cluster: LocalCluster, fault_row: Row
) -> None:
    group = f"{running.kafka.topic_prefix}processor"
    victim = cluster.group_coordinator(group)
    start_load(running)
    kill_and_recover(running, fault_row, cluster, victim, f"group coordinator of {group}")


def test_sigkill_the_active_controller(
    running: Running, cluster: LocalCluster, fault_row: Row
) -> None:
    victim = cluster.active_controller()
    start_load(running)
    kill_and_recover(running, fault_row, cluster, victim, "active KRaft controller")
    assert cluster.active_controller() in {n.node_id for n in cluster.nodes}


def test_rolling_restart_of_all_three_brokers(
    running: Running, cluster: LocalCluster, fault_row: Row
) -> None:
    start_load(running)
    for node in cluster.nodes:
        waited = cluster.wait_fully_replicated(timeout=180)
        fault_at = time.monotonic()
        node.stop()
        fault_row.fault("SIGTERM one node, restart, wait for ISR")
        stopped = time.monotonic() - fault_at
        node.start(timeout=180)
        wait_ok_calls(running.client, 10, time.monotonic(), timeout=RECOVERY_BOUND_S)
        fault_row.note(
            f"node {node.node_id}: ISR full after {waited:.1f}s, controlled shutdown "
            f"{stopped:.1f}s, back and serving {time.monotonic() - fault_at:.1f}s after SIGTERM"
        )
        report_window(fault_row, running.client, fault_at, f"node {node.node_id} restart")
    finish(running, fault_row, cluster)


def test_two_of_three_brokers_gone_accepts_nothing_and_answers_within_the_deadline(
    running: Running, cluster: LocalCluster, fault_row: Row
) -> None:
    start_load(running)
    survivor = cluster.active_controller()
    victims = [n.node_id for n in cluster.nodes if n.node_id != survivor]
    for victim in victims:
        cluster.node(victim).kill()
        fault_row.fault(f"SIGKILL node {victim}")
    gone_at = time.monotonic()
    # New commands now, each against its deadline: with one broker of three (and one
    # controller of three: no quorum) no acks=all write can reach min.insync.replicas=2.
    probes = RoundRobin(lambda: running.gateways, running.ledger, deadline_s=DEADLINE_S)
    threads = [
        threading.Thread(
            target=probes.send,
            args=("OpenPullRequest", open_fields(i), svc.RESPONSE_MODE_COMPLETED),
        )
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S + 10)
    # Let the load run into the outage for a while (its calls are checked below too).
    wait_until = time.monotonic() + 2 * DEADLINE_S
    while time.monotonic() < wait_until:
        time.sleep(0.2)
    during = [t for t in running.client.since(gone_at) + probes.timed if t.started >= gone_at]
    told = Counter(
        f"{t.call.code}/{t.call.reason}" if t.call.code == "DEADLINE_EXCEEDED" else t.call.code
        for t in during
    )
    fault_row.note(f"answers while 2 of 3 brokers were gone: {dict(told)}")
    accepted = [t.call for t in during if t.call.accepted]
    assert not accepted, f"accepted while only one broker ran: {accepted[:3]}"
    assert set(told) <= DOWN_ANSWERS | {"NOT_FOUND", "FAILED_PRECONDITION"}, told
    probe_told = Counter(
        f"{c.code}/{c.reason}" if c.code == "DEADLINE_EXCEEDED" else c.code
        for c in probes.snapshot()
    )
    assert sum(probe_told.values()) == 8 and set(probe_told) <= DOWN_ANSWERS, probe_told
    report_window(fault_row, running.client, gone_at, "two brokers gone")
    for victim in victims:
        cluster.node(victim).launch(timeout=180)
    for victim in victims:
        cluster.node(victim).wait_until_serving(timeout=180)
    fault_row.fault("2 nodes restarted")
    recovered = first_success(running.client, timeout=RECOVERY_BOUND_S)
    fault_row.note(f"nodes back and serving: a COMPLETED command succeeded {recovered:.1f}s later")
    finish(running, fault_row, cluster)
