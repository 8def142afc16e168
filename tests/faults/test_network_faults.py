"""Network faults on a three-node cluster whose nodes each run on a test host of their own (a
network namespace joined to the tests' namespace by a veth pair, tests/faults/netns.py), under
the same load as tests/faults/test_cluster_faults.py: two gateways (clients round robin over
them and retry a call cut off with UNAVAILABLE on the other with the same idempotency key) and
two processors. Each test injects its fault, measures until commands succeed again, heals the
network, waits for full replication and runs the verifier's invariants.

- A **network partition**: one node (the leader of a commands partition) is cut off from the
  other two and from every client; its JVM keeps running. The other two still form a KRaft
  quorum and an ISR of 2 = ``min.insync.replicas``: the controller fences the cut-off broker
  after ``broker.session.timeout.ms`` and its leaderships move. The cut-off leader cannot
  acknowledge an ``acks=all`` write on its own: its ISR cannot shrink without the controller,
  so nothing acknowledged is lost. Healed, it truncates to the new leaders and rejoins the ISR.
- **Slow and lossy links**: every node's link drops a share of its packets at random in each
  direction and is limited in rate, for a while under load; then healed.

Per fault the summary table notes when leaderships moved, when the first COMPLETED command
succeeded, and the calls that ended UNAVAILABLE or DEADLINE_EXCEEDED with their command ids.
Long mode (``PRGATE_FAULTS_LONG=1``) cuts more nodes (the active controller too), for longer,
and shapes the links harder.

Needs root, iproute2 and nftables (tests/faults/netns.py); without them the tests fail with the
reason, they do not skip.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prgate.kafka.cluster import LocalCluster
from tests.faults.cluster_run import (
    RECOVERY_BOUND_S,
    Running,
    finish,
    open_running,
    report_window,
    start_load,
    wait_leaderships_moved,
    wait_ok_calls,
)
from tests.faults.conftest import Scale
from tests.faults.load import first_success
from tests.faults.netns import TestNetwork
from tests.faults.summary import Row

pytestmark = pytest.mark.cluster

# Each node listens on its own address, so all can use Kafka's usual ports.
CLIENT_PORT = 9092
CONTROLLER_PORT = 9093


@pytest.fixture(scope="module")
def network() -> Iterator[TestNetwork]:
    """Three test hosts on one bridge, removed after the module."""
    net = TestNetwork(3)
    net.create()
    try:
        yield net
    finally:
        net.remove()


@pytest.fixture(scope="module")
def net_cluster(
    network: TestNetwork, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """A three-node cluster, node i on test host i."""
    hosts = range(1, network.hosts + 1)
    cluster = LocalCluster.on_ports(
        [CLIENT_PORT] * network.hosts,
        [CONTROLLER_PORT] * network.hosts,
        state_dir=tmp_path_factory.mktemp("net-cluster"),
        hosts=[network.address(i) for i in hosts],
        launchers=[network.launcher(i) for i in hosts],
    )
    try:
        cluster.start(timeout=240.0)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(net_cluster: LocalCluster, network: TestNetwork) -> Iterator[LocalCluster]:
    """The module's cluster with whole links, fully replicated before and after the test."""
    network.heal_all()
    net_cluster.wait_fully_replicated(timeout=180)
    yield net_cluster
    network.heal_all()
    for node in net_cluster.nodes:
        if node.pid() is None:
            node.start(timeout=180)
    net_cluster.wait_fully_replicated(timeout=180)


@pytest.fixture
def running(
    cluster: LocalCluster, topic_prefix: str, tmp_path: Path, scale: Scale, seed: int
) -> Iterator[Running]:
    with open_running(cluster, topic_prefix, tmp_path, scale, seed) as run:
        yield run


def partition(
    run: Running,
    row: Row,
    cluster: LocalCluster,
    network: TestNetwork,
    *,
    victim: int,
    what: str,
    hold_s: float,
) -> None:
    """Cut node ``victim`` off under the running load; measure until its leaderships moved and
    a COMPLETED command succeeded; keep it cut off for ``hold_s`` more seconds (at least 20
    more commands OK); heal and measure until it is back in every ISR."""
    fault_at = row.fault(f"partition {what}")
    network.cut(victim)
    moved = wait_leaderships_moved(cluster, victim, timeout=RECOVERY_BOUND_S)
    first_success(run.client, timeout=RECOVERY_BOUND_S)
    succeeded_at = time.monotonic() - fault_at
    wait_ok_calls(run.client, 20, time.monotonic(), timeout=RECOVERY_BOUND_S)
    until = time.monotonic() + hold_s
    while time.monotonic() < until:
        time.sleep(0.2)
    report_window(row, run.client, fault_at, f"{what} cut off")
    healed_at = row.fault("heal the partition")
    network.heal(victim)
    rejoined = cluster.wait_fully_replicated(timeout=180)
    row.note(
        f"{what}: node {victim} cut off; its leaderships moved after {moved:.1f}s; a COMPLETED "
        f"command succeeded {succeeded_at:.1f}s after the cut; cut off for "
        f"{healed_at - fault_at:.1f}s; back in every ISR {rejoined:.1f}s after the heal"
    )
    wait_ok_calls(run.client, 10, time.monotonic(), timeout=RECOVERY_BOUND_S)
    report_window(row, run.client, healed_at, f"{what} healed")


def test_partition_one_broker_from_the_others_and_the_clients(
    running: Running,
    cluster: LocalCluster,
    network: TestNetwork,
    fault_row: Row,
    scale: Scale,
) -> None:
    number = running.seed % running.kafka.partitions
    victims = [
        (cluster.leader(running.kafka.topics.commands, number), f"leader of commands[{number}]")
    ]
    if scale.long:
        victims.append((cluster.active_controller(), "active KRaft controller"))
        victims.append(
            (
                cluster.group_coordinator(f"{running.kafka.topic_prefix}processor"),
                "group coordinator",
            )
        )
    start_load(running)
    for victim, what in victims:
        cluster.wait_fully_replicated(timeout=180)
        hold_s = 30.0 if scale.long else 5.0
        partition(running, fault_row, cluster, network, victim=victim, what=what, hold_s=hold_s)
    finish(running, fault_row, cluster)


def test_slow_and_lossy_links(
    running: Running,
    cluster: LocalCluster,
    network: TestNetwork,
    fault_row: Row,
    scale: Scale,
) -> None:
    loss_percent, rate_kbit, commands = (10, 1000, 300) if scale.long else (5, 2000, 40)
    start_load(running)
    fault_at = fault_row.fault(f"every link: {loss_percent}% loss, {rate_kbit} kbit/s")
    for host in range(1, network.hosts + 1):
        network.shape(host, loss_percent=loss_percent, rate_kbit=rate_kbit)
    wait_ok_calls(running.client, commands, fault_at, timeout=4 * RECOVERY_BOUND_S)
    shaped_s = time.monotonic() - fault_at
    done = [t for t in running.client.since(fault_at) if t.started >= fault_at]
    ok = [t for t in done if t.call.code == "OK"]
    fault_row.note(
        f"{len(done)} calls under the shaped links in {shaped_s:.1f}s, {len(ok)} OK; "
        f"median call {sorted(t.ended - t.started for t in ok)[len(ok) // 2]:.2f}s"
    )
    report_window(fault_row, running.client, fault_at, "shaped links")
    healed_at = fault_row.fault("heal every link")
    network.heal_all()
    wait_ok_calls(running.client, 10, healed_at, timeout=RECOVERY_BOUND_S)
    finish(running, fault_row, cluster)
