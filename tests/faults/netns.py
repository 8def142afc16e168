"""Test hosts for network faults: one Linux network namespace per Kafka node, each joined to a
bridge in the test's own (root) namespace by a veth pair, with nftables rules and a ``tc``
token bucket in the node's namespace to cut, thin out or slow its link.

    net = TestNetwork(3)
    net.create()                       # namespaces, bridge, veth pairs; addresses 10.A.B.1..3
    net.address(1)                     # "10.A.B.1": node 1's address, reachable from the tests
    net.launcher(1)                    # ["ip", "netns", "exec", "<ns>"]: run a JVM on host 1
    net.cut(1)                         # host 1 drops every packet in and out (a partition)
    net.heal(1)                        # and back
    net.shape(1, loss_percent=5, rate_kbit=2000)   # a lossy, slow link
    net.remove()                       # everything above deleted

Every path between two nodes, and between a node and the clients (gateways, processors and
the test itself stay in the root namespace, on the bridge's address ``10.A.B.254``), crosses
the node's own veth pair, so rules on it act on all of the node's traffic: its client
listener, its replication fetches and its KRaft controller votes. A cut drops packets
silently (no reset, no ICMP), as on a partitioned network; established TCP connections
survive it and resume after :meth:`heal`.

Why not ``tc netem`` (fixed delay, loss): this machine type's kernel is built without it
(``CONFIG_NET_SCH_NETEM`` unset; likewise tc's actions), so loss is an nftables ``numgen
random`` rule and a slow link a ``tbf`` rate limit (delay builds up in its queue).

Needs root (CAP_NET_ADMIN), iproute2's ``ip`` and ``tc`` and ``nft`` (Debian: nftables);
:func:`require` raises with the reason when they are missing, so the tests fail loudly instead
of skipping. Names carry the test run's pid, so parallel runs on one machine do not collide;
:meth:`create` also deletes leftovers of earlier runs whose process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess

PREFIX = "prgt"
_TABLE = "prgate_faults"
_TIMEOUT_S = 20.0


class NetworkSetupError(RuntimeError):
    """The test hosts could not be created (not root, no iproute2, a failed ``ip`` call)."""


def run(*args: str, namespace: str | None = None, stdin: str | None = None) -> str:
    """Run ``ip``/``tc``/``nft`` (inside ``namespace`` when given, ``stdin`` as its input); its
    stdout, NetworkSetupError on failure."""
    command = ["ip", "netns", "exec", namespace, *args] if namespace else list(args)
    result = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise NetworkSetupError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout


def require() -> None:
    """Raise NetworkSetupError unless this process can make namespaces, veths and qdiscs."""
    if os.geteuid() != 0:
        raise NetworkSetupError("network fault tests need root (ip netns, tc netem)")
    missing = [tool for tool in ("ip", "tc", "nft") if shutil.which(tool) is None]
    if missing:
        raise NetworkSetupError(
            f"network fault tests need {missing} (Debian: apt-get install iproute2 nftables)"
        )


class TestNetwork:
    """``hosts`` namespaces on one bridge; see the module docstring."""

    __test__ = False  # not a pytest test class

    def __init__(self, hosts: int, tag: str | None = None) -> None:
        if not 1 <= hosts <= 9:
            raise ValueError("1 to 9 test hosts")
        self.hosts = hosts
        self.tag = tag or f"{os.getpid() % 100000:05d}"
        number = int(self.tag) if self.tag.isdigit() else sum(map(ord, self.tag))
        # 10.200.0.0 - 10.255.255.0: a /24 per run, unlikely to be in use on a test machine.
        self.subnet = f"10.{200 + number // 256 % 56}.{number % 256}"
        self.bridge = f"{PREFIX}b{self.tag}"
        self.created = False

    def namespace(self, host: int) -> str:
        return f"{PREFIX}-{self.tag}-{host}"

    def address(self, host: int) -> str:
        """Host ``host``'s (1-based) IPv4 address."""
        return f"{self.subnet}.{host}"

    @property
    def gateway_address(self) -> str:
        """The root namespace's address on the bridge (where the clients' packets come from)."""
        return f"{self.subnet}.254"

    def launcher(self, host: int) -> list[str]:
        """The command prefix that runs a program on host ``host`` (``ip netns exec`` execs it,
        so the program keeps the pid it was started with)."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def _veth(self, host: int) -> str:
        return f"{PREFIX}v{self.tag}{host}"  # root-namespace end; the other end is eth0

    def create(self) -> None:
        """Create the bridge and every host; NetworkSetupError (after cleaning up) on failure."""
        require()
        remove_stale()
        try:
            run("ip", "link", "add", self.bridge, "type", "bridge")
            run("ip", "addr", "add", f"{self.gateway_address}/24", "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")
            self.created = True
            for host in range(1, self.hosts + 1):
                ns, veth, peer = (
                    self.namespace(host),
                    self._veth(host),
                    f"{PREFIX}p{self.tag}{host}",
                )
                run("ip", "netns", "add", ns)
                run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
                run("ip", "link", "set", peer, "netns", ns)
                run("ip", "link", "set", peer, "name", "eth0", namespace=ns)
                run("ip", "addr", "add", f"{self.address(host)}/24", "dev", "eth0", namespace=ns)
                run("ip", "link", "set", "eth0", "up", namespace=ns)
                run("ip", "link", "set", "lo", "up", namespace=ns)
                run("ip", "link", "set", veth, "master", self.bridge)
                run("ip", "link", "set", veth, "up")
        except (NetworkSetupError, subprocess.TimeoutExpired):
            self.remove()
            raise

    def remove(self) -> None:
        """Delete the hosts and the bridge (a namespace's end of a veth goes with it)."""
        for host in range(1, self.hosts + 1):
            with contextlib.suppress(NetworkSetupError):
                run("ip", "netns", "del", self.namespace(host))
            with contextlib.suppress(NetworkSetupError):
                run("ip", "link", "del", self._veth(host))
        with contextlib.suppress(NetworkSetupError):
            run("ip", "link", "del", self.bridge)
        self.created = False

    # -- faults -----------------------------------------------------------------------------

    def _rules(self, host: int, rule: str) -> None:
        """Replace host ``host``'s fault rules with ``rule`` on everything its eth0 sends and
        receives (an nftables table in its namespace; its loopback traffic is left alone)."""
        self._drop_rules(host)
        ruleset = (
            f"table inet {_TABLE} {{\n"
            f'  chain incoming {{ type filter hook input priority 0; iifname "eth0" {rule}; }}\n'
            f'  chain outgoing {{ type filter hook output priority 0; oifname "eth0" {rule}; }}\n'
            "}\n"
        )
        run("nft", "-f", "-", namespace=self.namespace(host), stdin=ruleset)

    def _drop_rules(self, host: int) -> None:
        with contextlib.suppress(NetworkSetupError):  # none installed
            run("nft", "delete", "table", "inet", _TABLE, namespace=self.namespace(host))

    def cut(self, host: int) -> None:
        """Host ``host`` silently drops every packet it sends or receives (no reset, no ICMP):
        a network partition of that host from the other hosts and from the clients."""
        self._rules(host, "drop")

    def shape(self, host: int, *, loss_percent: int = 0, rate_kbit: int = 0) -> None:
        """Host ``host``'s link drops ``loss_percent`` of the packets in each direction (chosen
        at random per packet) and, with ``rate_kbit``, carries at most that many kbit/s each way
        (a token bucket; what exceeds it queues for up to 200 ms, then is dropped)."""
        if loss_percent:
            self._rules(host, f"numgen random mod 100 < {loss_percent} drop")
        if rate_kbit:
            burst = max(4096, rate_kbit * 1000 // 8 // 50)  # 20 ms worth
            for device, ns in ((self._veth(host), None), ("eth0", self.namespace(host))):
                run("tc", "qdisc", "replace", "dev", device, "root", "tbf", "rate",
                    f"{rate_kbit}kbit", "burst", str(burst), "latency", "200ms",
                    namespace=ns)  # fmt: skip

    def heal(self, host: int) -> None:
        """Remove any cut or shaping from host ``host``'s link."""
        self._drop_rules(host)
        for device, ns in ((self._veth(host), None), ("eth0", self.namespace(host))):
            with contextlib.suppress(NetworkSetupError):  # none installed
                run("tc", "qdisc", "del", "dev", device, "root", namespace=ns)

    def heal_all(self) -> None:
        for host in range(1, self.hosts + 1):
            self.heal(host)


def remove_stale() -> None:
    """Delete the namespaces and bridges of earlier runs whose process no longer exists."""
    with contextlib.suppress(NetworkSetupError):
        for line in run("ip", "netns", "list").splitlines():
            match = re.match(rf"{PREFIX}-(\d+)-\d+\b", line)
            if match and not _pid_tag_alive(match.group(1)):
                with contextlib.suppress(NetworkSetupError):
                    run("ip", "netns", "del", line.split()[0])
    with contextlib.suppress(NetworkSetupError):
        for match in re.finditer(rf"\d+: ({PREFIX}b(\d+))[:@]", run("ip", "-o", "link", "show")):
            if not _pid_tag_alive(match.group(2)):
                with contextlib.suppress(NetworkSetupError):
                    run("ip", "link", "del", match.group(1))


def _pid_tag_alive(tag: str) -> bool:
    """Whether a process with a pid ending in ``tag`` (pid modulo 100000) still runs."""
    number = int(tag)
    return any(name.isdigit() and int(name) % 100000 == number for name in os.listdir("/proc"))
