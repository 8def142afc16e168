"""A real single-node Kafka (KRaft broker+controller) provisioned and run by the project.

Kafka is resolved from Maven Central with Maven (``prgate/kafka/pom.xml``) into a cache outside
the repository, once; later runs reuse it without calling Maven. Each broker lives in a state
directory holding ``server.properties``, ``kafka.pid``, ``kafka.log`` and the data under
``data/``; stopping and starting again keeps the data (no reformat), which fault tests rely on.
What a node runs (``server.properties``, the JVM commands) is rendered by
prgate/kafka/node_config.py; the port, broker and process probes are prgate/kafka/node_probes.py.

    broker = LocalKafka(port=19092, state_dir=tmp)
    broker.start()          # returns once the broker answers metadata requests
    broker.bootstrap_servers
    broker.restart()        # same data, same ports
    broker.stop()           # SIGTERM, bounded wait, then SIGKILL
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from prgate.kafka.node_config import (
    HOST,
    broker_command,
    random_cluster_id,
    server_properties,
    storage_format_command,
)
from prgate.kafka.node_probes import (
    broker_answers,
    foreign_broker_serves,
    pid_alive,
    port_in_use,
    tail,
)
from prgate.kafka.provision import (
    KAFKA_VERSION,
    LocalKafkaError,
    MissingToolError,
    cache_root,
    check_tools,
    default_kafka_home,
    file_lock,
    provision,
)
from prgate.settings import setting

if TYPE_CHECKING:
    from prgate.kafka.cluster import LocalCluster

__all__ = [
    "KAFKA_VERSION",
    "LocalKafka",
    "LocalKafkaError",
    "LocalKafkaSettings",
    "MissingToolError",
    "broker_answers",
    "check_tools",
    "foreign_broker_serves",
    "provision",
]

log = logging.getLogger(__name__)

_COMMAND_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LocalKafkaSettings:
    """How ``prgate kafka start`` and ``prgate dev`` run the local broker."""

    port: int = setting(9092, "PRGATE_KAFKA_PORT", "port of the local broker's client listener")
    controller_port: int = setting(
        0, "PRGATE_KAFKA_CONTROLLER_PORT", "port of the local controller listener (0: port+1)"
    )
    state_dir: str = setting(
        "",
        "PRGATE_KAFKA_STATE_DIR",
        "pid, log and data of the local broker (default: cache/run/PORT)",
    )
    kafka_home: str = setting(
        "", "PRGATE_KAFKA_HOME", f"cache of the Kafka jars (default: cache/kafka-{KAFKA_VERSION})"
    )
    heap: str = setting(
        "512m", "PRGATE_KAFKA_HEAP", "maximum JVM heap of the local broker (of each node: 384m)"
    )
    brokers: int = setting(
        1,
        "PRGATE_KAFKA_BROKERS",
        "nodes of the local cluster: 1, or 3 (KRaft broker+controller each, client ports "
        "port, port+2, port+4, controller ports one above each)",
    )
    start_timeout: float = setting(
        120.0, "PRGATE_KAFKA_START_TIMEOUT", "seconds to wait for the broker to serve"
    )

    def broker(self) -> LocalKafka:
        """The single local broker these settings describe."""
        return LocalKafka(
            port=self.port,
            controller_port=self.controller_port or None,
            state_dir=Path(self.state_dir) if self.state_dir else None,
            kafka_home=Path(self.kafka_home) if self.kafka_home else None,
            heap=self.heap,
        )

    def cluster(self, brokers: int | None = None) -> LocalCluster:
        """The local cluster of ``brokers`` (default: the setting, at least 2) nodes: node i
        (0-based) listens on ``port + 2i`` and ``controller_port + 2i`` (``port + 2i + 1``) and
        keeps its state in ``<state_dir or cache/run/cluster-PORT>/node-<i+1>``."""
        from prgate.kafka.cluster import LocalCluster

        count = max(2, brokers or self.brokers)
        first_controller = self.controller_port or self.port + 1
        state = (
            Path(self.state_dir)
            if self.state_dir
            else cache_root() / "run" / f"cluster-{self.port}"
        )
        heap = self.heap if self.heap != "512m" else "384m"
        return LocalCluster.on_ports(
            [self.port + 2 * i for i in range(count)],
            [first_controller + 2 * i for i in range(count)],
            state_dir=state,
            kafka_home=Path(self.kafka_home) if self.kafka_home else None,
            heap=heap,
        )


def default_state_dir(port: int) -> Path:
    """``PRGATE_KAFKA_STATE_DIR`` or ``~/.cache/prgate/run/<port>``."""
    env = os.environ.get("PRGATE_KAFKA_STATE_DIR")
    return Path(env) if env else cache_root() / "run" / str(port)


class LocalKafka:
    """One local single-node broker+controller on loopback with its own state directory."""

    def __init__(
        self,
        port: int = 9092,
        *,
        controller_port: int | None = None,
        state_dir: Path | None = None,
        data_dir: Path | None = None,
        kafka_home: Path | None = None,
        heap: str = "512m",
        node_id: int = 1,
        quorum_voters: str | None = None,
        cluster_id: str | None = None,
        replication: int = 1,
        extra_properties: dict[str, str] | None = None,
        host: str = HOST,
        launcher: Sequence[str] = (),
    ) -> None:
        """One node. Alone (the defaults) it is its own quorum; in a :class:`LocalCluster`
        ``node_id``, ``quorum_voters`` (``id@host:port,...``), ``cluster_id`` (shared by every
        node, used when formatting) and ``replication`` (of the internal topics, and the broker's
        default ``min.insync.replicas`` = min(2, replication)) come from the cluster. ``host`` is
        the address its listeners bind and advertise (loopback by default); ``launcher`` is a
        command prefix the JVM is started under, e.g. ``["ip", "netns", "exec", "h1"]`` to run
        it in a network namespace (it must exec the JVM so the pid stays the JVM's)."""
        self.port = port
        self.controller_port = controller_port or port + 1
        self.node_id = node_id
        self.host = host
        self.launcher = list(launcher)
        self.quorum_voters = quorum_voters or f"{node_id}@{host}:{self.controller_port}"
        self.cluster_id = cluster_id
        self.replication = replication
        self.extra_properties = dict(extra_properties or {})
        self.state_dir = state_dir or default_state_dir(port)
        self.data_dir = data_dir or self.state_dir / "data"
        self.kafka_home = kafka_home or default_kafka_home()
        self.heap = heap
        self.pid_file = self.state_dir / "kafka.pid"
        self.log_file = self.state_dir / "kafka.log"
        self.properties_file = self.state_dir / "server.properties"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def pid(self) -> int | None:
        """The pid of this broker's JVM if it runs (a stale pid file is ignored)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if self._proc is not None and self._proc.pid == pid:
            # Our own child: ask it. (Right after exec, /proc/PID/cmdline can still be empty.)
            return pid if self._proc.poll() is None else None
        if not pid_alive(pid):
            return None
        try:  # the pid may have been reused by an unrelated process
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        return pid if "kafka.Kafka" in cmdline and str(self.properties_file) in cmdline else None

    def is_serving(self, timeout: float = 5.0) -> bool:
        return self.pid() is not None and broker_answers(self.bootstrap_servers, timeout)

    def start(self, timeout: float = 120.0) -> None:
        """Provision, format on first use, start detached; return once it serves metadata."""
        self.launch(timeout)
        self.wait_until_serving(timeout)

    def launch(self, timeout: float = 120.0) -> None:
        """Provision, format on first use and start detached, without waiting for it to serve
        (a cluster's nodes serve only once a majority of the controllers runs)."""
        libs = provision(self.kafka_home)
        java = check_tools(need_maven=False)
        with file_lock(self.state_dir / ".lock", timeout):
            if self.pid() is not None:
                log.info(
                    "kafka_already_running",
                    extra={"pid": self.pid(), "bootstrap": self.bootstrap_servers},
                )
            else:
                for port in (self.port, self.controller_port):
                    if port_in_use(port, self.host):
                        raise LocalKafkaError(
                            f"port {port} on {self.host} is already in use by another process; "
                            "choose other ports (--port/--controller-port) or point "
                            "KAFKA_BOOTSTRAP_SERVERS at the Kafka that runs there"
                        )
                self._write_config()
                self._format_if_needed(java, libs)
                self._spawn(java, libs)

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. False when it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        log.info("kafka_stopping", extra={"pid": pid, "bootstrap": self.bootstrap_servers})
        os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout):
            log.warning(
                "kafka_kill",
                extra={"pid": pid, "reason": "no_exit_after_sigterm", "seconds": round(timeout, 0)},
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 10.0):
                raise LocalKafkaError(f"Kafka (pid {pid}) did not exit even after SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        self._proc = None
        log.info("kafka_stopped", extra={"pid": pid})
        return True

    def kill(self, timeout: float = 30.0) -> bool:
        """SIGKILL (a crash: no controlled shutdown) and wait for the exit; False when it was
        not running. The data stays; :meth:`start` brings the node back."""
        pid = self.pid()
        if pid is None:
            return False
        log.info("kafka_sigkill", extra={"pid": pid, "node_id": self.node_id})
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not self._wait_exit(pid, timeout):
            raise LocalKafkaError(f"Kafka (pid {pid}) did not exit after SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        self._proc = None
        return True

    def restart(self, timeout: float = 120.0) -> None:
        """Stop and start again with the same data and ports (no reformat)."""
        self.stop()
        self.start(timeout)

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _write_config(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = server_properties(
            node_id=self.node_id,
            quorum_voters=self.quorum_voters,
            port=self.port,
            controller_port=self.controller_port,
            data_dir=self.data_dir,
            replication=self.replication,
            extra=self.extra_properties,
            host=self.host,
        )
        body = "".join(f"{k}={v}\n" for k, v in props.items())
        self.properties_file.write_text("# written by prgate/kafka/local.py\n" + body)

    def _format_if_needed(self, java: str, libs: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return  # restart: keep the data and the cluster id
        cmd = storage_format_command(
            java, libs, self.cluster_id or random_cluster_id(), self.properties_file
        )
        try:
            result = subprocess.run(
                cmd, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise LocalKafkaError(f"formatting {self.data_dir} timed out") from exc
        if result.returncode != 0:
            raise LocalKafkaError(
                f"formatting {self.data_dir} failed:\n{result.stdout}{result.stderr}"
            )
        log.info("kafka_formatted", extra={"data_dir": self.data_dir})

    def _spawn(self, java: str, libs: Path) -> None:
        log4j = resources.files("prgate").joinpath("kafka/log4j2.properties")
        log4j_file = self.state_dir / "log4j2.properties"
        log4j_file.write_bytes(log4j.read_bytes())
        cmd = self.launcher + broker_command(
            java,
            libs,
            heap=self.heap,
            state_dir=self.state_dir,
            log4j_file=log4j_file,
            properties_file=self.properties_file,
        )
        with self.log_file.open("ab") as out:
            out.write(f"=== prgate: starting Kafka {KAFKA_VERSION} at {time.ctime()}\n".encode())
            out.flush()
            # A session of its own: Ctrl-C in the starting terminal must not kill the broker.
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        log.info(
            "kafka_spawned",
            extra={
                "pid": self._proc.pid,
                "bootstrap": self.bootstrap_servers,
                "log": self.log_file,
            },
        )

    def wait_until_serving(self, timeout: float) -> None:
        """Return once this node answers metadata requests; stop it and raise
        :class:`LocalKafkaError` (with its log's tail) when it exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise LocalKafkaError(
                    f"Kafka exited while starting; last lines of {self.log_file}:\n"
                    + tail(self.log_file)
                )
            if port_in_use(self.port, self.host) and broker_answers(self.bootstrap_servers, 3.0):
                log.info(
                    "kafka_serving", extra={"bootstrap": self.bootstrap_servers, "pid": self.pid()}
                )
                return
            time.sleep(0.25)
        self.stop(timeout=10.0)
        raise LocalKafkaError(
            f"Kafka did not answer metadata requests at {self.bootstrap_servers} within "
            f"{timeout:.0f}s (stopped it); last lines of {self.log_file}:\n" + tail(self.log_file)
        )
