"""A real three-node Kafka cluster (KRaft, each node broker and controller) run by the project.

The nodes are :class:`prgate.kafka.local.LocalKafka` processes from the same Maven-provisioned
jars, each with its own client port, controller port and state directory, one KRaft quorum of
all three controllers (``controller.quorum.voters``) and one cluster id (kept in
``<state_dir>/cluster.id``). Internal topics have 3 replicas and ``min.insync.replicas=2``.

    cluster = LocalCluster.on_ports([19092, 19094, 19096], [19093, 19095, 19097], state_dir=tmp)
    cluster.start()                        # returns once every node serves and sees the others
    cluster.bootstrap_servers              # "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    victim = cluster.leader("prgate.commands", 0)
    cluster.node(victim).kill()            # SIGKILL; cluster.node(victim).stop() is SIGTERM
    cluster.node(victim).start()           # same data and ports
    cluster.wait_fully_replicated()        # every partition's ISR holds all its replicas
    cluster.stop()

Who leads what is read from the cluster: partition leaders from metadata, the group coordinator
from DescribeGroups, the transaction coordinator as the leader of the ``__transaction_state``
partition Kafka assigns the ``transactional.id`` to (``TransactionsCommand`` confirms it in the
tests), the active controller from DescribeQuorum (``MetadataQuorumCommand``).
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from prgate.kafka.local import LocalKafka, LocalKafkaError, broker_answers
from prgate.kafka.node_config import HOST, random_cluster_id
from prgate.kafka.provision import check_tools, default_kafka_home, provision, provision_tools

__all__ = ["LocalCluster", "NodeStatus", "coordinator_partition", "java_string_hash"]

log = logging.getLogger(__name__)

TRANSACTION_STATE_TOPIC = "__transaction_state"
OFFSETS_TOPIC = "__consumer_offsets"
# Faster failure detection than Kafka's defaults (9 s / 2 s), still far above this machine's
# scheduling hiccups: a SIGKILLed node is fenced and its leaderships move after about 6 s.
CLUSTER_PROPERTIES = {
    "broker.session.timeout.ms": "6000",
    "broker.heartbeat.interval.ms": "1000",
}
_TOOL_TIMEOUT_S = 60.0


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (signed 32-bit, over UTF-16 code units)."""
    value = 0
    data = text.encode("utf-16-be")
    for i in range(0, len(data), 2):
        value = (31 * value + int.from_bytes(data[i : i + 2], "big")) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def coordinator_partition(key: str, partitions: int) -> int:
    """The partition of ``__transaction_state`` / ``__consumer_offsets`` that holds ``key`` (a
    transactional.id or group id): Kafka's ``Utils.abs(key.hashCode()) % partitions``."""
    value = java_string_hash(key)
    return (0 if value == -(1 << 31) else abs(value)) % partitions


@dataclass(frozen=True)
class NodeStatus:
    """One node as ``prgate kafka status`` shows it."""

    node_id: int
    bootstrap: str
    controller: str
    pid: int | None
    serving: bool
    state_dir: Path


class LocalCluster:
    """Three (or more) local KRaft nodes forming one cluster; same life cycle as LocalKafka."""

    def __init__(self, nodes: Sequence[LocalKafka], state_dir: Path) -> None:
        if len(nodes) < 2:
            raise ValueError("a cluster has at least 2 nodes; use LocalKafka for one")
        self.nodes = list(nodes)
        self.state_dir = state_dir

    @classmethod
    def on_ports(
        cls,
        ports: Sequence[int],
        controller_ports: Sequence[int],
        *,
        state_dir: Path,
        kafka_home: Path | None = None,
        heap: str = "384m",
        hosts: Sequence[str] | None = None,
        launchers: Sequence[Sequence[str]] | None = None,
    ) -> LocalCluster:
        """Nodes 1..n with client ``ports[i]``, controller ``controller_ports[i]`` and state
        under ``state_dir/node-<id>``. The cluster id is made once and kept in
        ``state_dir/cluster.id``, so a restart finds the formatted data again.

        ``hosts[i]`` is node i's address (default: loopback for all) and ``launchers[i]`` the
        command prefix its JVM starts under (default: none): the fault tests put each node on a
        test host of its own (a network namespace, ``ip netns exec``) to cut or slow its links.
        """
        if len(ports) != len(controller_ports):
            raise ValueError("one controller port per client port")
        hosts = list(hosts or [HOST] * len(ports))
        launchers = list(launchers or [()] * len(ports))
        if not len(hosts) == len(launchers) == len(ports):
            raise ValueError("one host and one launcher per node")
        state_dir.mkdir(parents=True, exist_ok=True)
        id_file = state_dir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(random_cluster_id() + "\n")
        cluster_id = id_file.read_text().strip()
        voters = ",".join(
            f"{i + 1}@{host}:{port}"
            for i, (host, port) in enumerate(zip(hosts, controller_ports, strict=True))
        )
        replication = min(3, len(ports))
        nodes = [
            LocalKafka(
                port,
                controller_port=controller_port,
                state_dir=state_dir / f"node-{i + 1}",
                kafka_home=kafka_home,
                heap=heap,
                node_id=i + 1,
                quorum_voters=voters,
                cluster_id=cluster_id,
                replication=replication,
                extra_properties=CLUSTER_PROPERTIES,
                host=hosts[i],
                launcher=launchers[i],
            )
            for i, (port, controller_port) in enumerate(zip(ports, controller_ports, strict=True))
        ]
        return cls(nodes, state_dir)

    # -- life cycle ------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """Every node's client listener, comma-separated."""
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def port(self) -> int:
        """The first node's client port (what a single-broker caller would look at)."""
        return self.nodes[0].port

    @property
    def log_file(self) -> Path:
        return self.nodes[0].log_file

    def node(self, node_id: int) -> LocalKafka:
        """The node with this ``node.id`` (1-based)."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id} in this cluster")

    def pid(self) -> int | None:
        """The first node's pid when every node runs, else None."""
        pids = [node.pid() for node in self.nodes]
        return pids[0] if all(p is not None for p in pids) else None

    def running(self) -> list[int]:
        """node.ids of the nodes whose JVM runs."""
        return [node.node_id for node in self.nodes if node.pid() is not None]

    def start(self, timeout: float = 180.0) -> None:
        """Start every node that is not running (in parallel: none serves before a majority of
        the controllers runs); return once each serves and metadata lists all of them."""
        for node in self.nodes:
            node.launch(timeout)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.wait_until_serving(max(1.0, deadline - time.monotonic()))
        self.wait_brokers(len(self.nodes), max(1.0, deadline - time.monotonic()))

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM every node at once (then SIGKILL after ``timeout``); False when none was
        running. At once: a node stopped last would wait for a quorum that is already gone."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            stopped = list(pool.map(lambda node: node.stop(timeout), self.nodes))
        return any(stopped)

    def restart(self, timeout: float = 180.0) -> None:
        self.stop()
        self.start(timeout)

    def start_node(self, node_id: int, timeout: float = 120.0) -> None:
        """Bring one node back (same data and ports) and wait until it serves."""
        self.node(node_id).start(timeout)

    # -- who does what -----------------------------------------------------------------------

    def admin(self, node_ids: Sequence[int] | None = None) -> AdminClient:
        """An AdminClient bootstrapped from the running nodes (or ``node_ids``)."""
        chosen = node_ids or self.running() or [n.node_id for n in self.nodes]
        bootstrap = ",".join(self.node(i).bootstrap_servers for i in chosen)
        return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})

    def brokers(self, timeout: float = 10.0) -> list[int]:
        """node.ids of the brokers the cluster's metadata lists (registered and not fenced)."""
        return sorted(self.admin().list_topics(timeout=timeout).brokers)

    def wait_brokers(self, count: int, timeout: float) -> None:
        """Wait until metadata lists ``count`` brokers; LocalKafkaError after ``timeout``."""
        deadline = time.monotonic() + timeout
        seen: list[int] = []
        while time.monotonic() < deadline:
            try:
                seen = self.brokers(timeout=5.0)
            except KafkaException:
                seen = []
            if len(seen) >= count:
                return
            time.sleep(0.25)
        raise LocalKafkaError(f"metadata lists brokers {seen}, not {count}, after {timeout:.0f}s")

    def leader(self, topic: str, partition: int, timeout: float = 10.0) -> int:
        """node.id of the partition's leader (-1 while it has none)."""
        metadata = self.admin().list_topics(topic=topic, timeout=timeout)
        return int(metadata.topics[topic].partitions[partition].leader)

    def leaders(self, topics: Sequence[str], timeout: float = 10.0) -> dict[tuple[str, int], int]:
        """``(topic, partition) -> leader node.id`` of every partition of ``topics`` that exists."""
        metadata = self.admin().list_topics(timeout=timeout)
        found: dict[tuple[str, int], int] = {}
        for topic in topics:
            info = metadata.topics.get(topic)
            if info is None or info.error is not None:
                continue
            for number, partition in info.partitions.items():
                found[(topic, number)] = int(partition.leader)
        return found

    def transaction_coordinator(self, transactional_id: str, timeout: float = 10.0) -> int:
        """node.id of the transaction coordinator of ``transactional_id``: the leader of the
        ``__transaction_state`` partition it hashes to (exists once a producer initialised)."""
        metadata = self.admin().list_topics(topic=TRANSACTION_STATE_TOPIC, timeout=timeout)
        partitions = metadata.topics[TRANSACTION_STATE_TOPIC].partitions
        if not partitions:
            raise LocalKafkaError(f"{TRANSACTION_STATE_TOPIC} does not exist yet")
        number = coordinator_partition(transactional_id, len(partitions))
        return int(partitions[number].leader)

    def group_coordinator(self, group_id: str, timeout: float = 10.0) -> int:
        """node.id of the group coordinator of ``group_id`` (DescribeGroups)."""
        admin = self.admin()  # must outlive its futures
        futures = admin.describe_consumer_groups([group_id], request_timeout=timeout)
        description = futures[group_id].result(timeout=timeout)
        return int(description.coordinator.id)

    def active_controller(self, timeout: float = _TOOL_TIMEOUT_S) -> int:
        """node.id of the KRaft quorum's leader (the active controller), from DescribeQuorum
        through Kafka's own ``MetadataQuorumCommand`` (confluent-kafka has no such call)."""
        output = self.kafka_tool(
            "org.apache.kafka.tools.MetadataQuorumCommand",
            "--bootstrap-server",
            self._running_bootstrap(),
            "describe",
            "--status",
            timeout=timeout,
        )
        match = re.search(r"^LeaderId:\s*(\d+)", output, re.MULTILINE)
        if match is None:
            raise LocalKafkaError(f"no LeaderId in MetadataQuorumCommand's answer:\n{output}")
        return int(match.group(1))

    def described_transaction_coordinator(self, transactional_id: str) -> int:
        """The transaction coordinator as Kafka's ``TransactionsCommand describe`` reports it
        (slow: one JVM; :meth:`transaction_coordinator` is the fast way)."""
        output = self.kafka_tool(
            "org.apache.kafka.tools.TransactionsCommand",
            "--bootstrap-server",
            self._running_bootstrap(),
            "describe",
            "--transactional-id",
            transactional_id,
        )
        lines = [line.split() for line in output.strip().splitlines() if line.strip()]
        header = next(row for row in lines if "CoordinatorId" in row)
        values = lines[lines.index(header) + 1]
        return int(values[header.index("CoordinatorId")])

    def kafka_tool(self, main_class: str, *args: str, timeout: float = _TOOL_TIMEOUT_S) -> str:
        """Run one of Kafka's command-line tools from the provisioned jars; its stdout."""
        home = self.nodes[0].kafka_home or default_kafka_home()
        libs, tools = provision(home), provision_tools(home)
        java = check_tools(need_maven=False)
        command = [java, "-Xmx128m", "-cp", f"{tools}/*:{libs}/*", main_class, *args]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise LocalKafkaError(
                f"{main_class.rsplit('.', 1)[-1]} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result.stdout

    def _running_bootstrap(self) -> str:
        return ",".join(self.node(i).bootstrap_servers for i in self.running())

    # -- replication ------------------------------------------------------------------------

    def under_replicated(self, timeout: float = 10.0) -> list[str]:
        """``topic[partition] isr=[..] replicas=[..]`` of every partition (internal topics
        included) whose in-sync replicas are fewer than its replicas."""
        metadata = self.admin().list_topics(timeout=timeout)
        out: list[str] = []
        for name, topic in sorted(metadata.topics.items()):
            for number, partition in sorted(topic.partitions.items()):
                if set(partition.isrs) != set(partition.replicas):
                    out.append(
                        f"{name}[{number}] leader={partition.leader} isr={sorted(partition.isrs)}"
                        f" replicas={sorted(partition.replicas)}"
                    )
        return out

    def wait_fully_replicated(self, timeout: float = 120.0) -> float:
        """Wait until every node is a registered broker and no partition is under-replicated;
        returns the seconds it took, raises LocalKafkaError naming the laggards."""
        started = time.monotonic()
        self.wait_brokers(len(self.nodes), timeout)
        lagging: list[str] = []
        while time.monotonic() - started < timeout:
            try:
                lagging = self.under_replicated()
            except KafkaException as exc:
                lagging = [str(exc)]
            if not lagging:
                return time.monotonic() - started
            time.sleep(0.25)
        raise LocalKafkaError(
            f"partitions still under-replicated after {timeout:.0f}s: {lagging[:10]}"
        )

    def status(self, timeout: float = 5.0) -> list[NodeStatus]:
        """Each node: pid, whether it answers metadata itself."""
        out: list[NodeStatus] = []
        for node in self.nodes:
            pid = node.pid()
            out.append(
                NodeStatus(
                    node.node_id,
                    node.bootstrap_servers,
                    f"{node.host}:{node.controller_port}",
                    pid,
                    pid is not None and broker_answers(node.bootstrap_servers, timeout),
                    node.state_dir,
                )
            )
        return out
