"""A real single-node Kafka (KRaft broker+controller) provisioned and run by the project.

Kafka is resolved from Maven Central with Maven (``prgate/kafka/pom.xml``) into a cache outside
the repository, once; later runs reuse it without calling Maven. Each broker lives in a state
directory holding ``server.properties``, ``kafka.pid``, ``kafka.log`` and the data under
``data/``; stopping and starting again keeps the data (no reformat), which fault tests rely on.

    broker = LocalKafka(port=19092, state_dir=tmp)
    broker.start()          # returns once the broker answers metadata requests
    broker.bootstrap_servers
    broker.restart()        # same data, same ports
    broker.stop()           # SIGTERM, bounded wait, then SIGKILL
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from confluent_kafka.admin import AdminClient

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

HOST = "127.0.0.1"
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
    heap: str = setting("512m", "PRGATE_KAFKA_HEAP", "maximum JVM heap of the local broker")
    start_timeout: float = setting(
        120.0, "PRGATE_KAFKA_START_TIMEOUT", "seconds to wait for the broker to serve"
    )

    def broker(self) -> LocalKafka:
        return LocalKafka(
            port=self.port,
            controller_port=self.controller_port or None,
            state_dir=Path(self.state_dir) if self.state_dir else None,
            kafka_home=Path(self.kafka_home) if self.kafka_home else None,
            heap=self.heap,
        )


def default_state_dir(port: int) -> Path:
    """``PRGATE_KAFKA_STATE_DIR`` or ``~/.cache/prgate/run/<port>``."""
    env = os.environ.get("PRGATE_KAFKA_STATE_DIR")
    return Path(env) if env else cache_root() / "run" / str(port)


def random_cluster_id() -> str:
    """A Kafka-style Uuid: 16 random bytes, URL-safe base64 without padding, no leading '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def broker_answers(bootstrap: str, timeout: float = 5.0) -> bool:
    """True when a broker at ``bootstrap`` returns metadata with at least one broker."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return len(admin.list_topics(timeout=timeout).brokers) > 0
    except Exception:  # a KafkaException of any kind means "not serving yet"
        return False


def foreign_broker_serves(broker: LocalKafka) -> bool:
    """True when a Kafka that ``broker`` did not start answers on its port (reuse it)."""
    return (
        broker.pid() is None
        and port_in_use(broker.port)
        and broker_answers(broker.bootstrap_servers, timeout=5.0)
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie has exited already
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


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
    ) -> None:
        self.port = port
        self.controller_port = controller_port or port + 1
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
        return f"{HOST}:{self.port}"

    def pid(self) -> int | None:
        """The pid of this broker's JVM if it runs (a stale pid file is ignored)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if self._proc is not None and self._proc.pid == pid:
            # Our own child: ask it. (Right after exec, /proc/PID/cmdline can still be empty.)
            return pid if self._proc.poll() is None else None
        if not _pid_alive(pid):
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
        libs = provision(self.kafka_home)
        java = check_tools(need_maven=False)
        with file_lock(self.state_dir / ".lock", timeout):
            if self.pid() is not None:
                log.info(
                    "event=kafka_already_running pid=%s bootstrap=%s",
                    self.pid(),
                    self.bootstrap_servers,
                )
            else:
                for port in (self.port, self.controller_port):
                    if port_in_use(port):
                        raise LocalKafkaError(
                            f"port {port} on {HOST} is already in use by another process; "
                            "choose other ports (--port/--controller-port) or point "
                            "KAFKA_BOOTSTRAP_SERVERS at the Kafka that runs there"
                        )
                self._write_config()
                self._format_if_needed(java, libs)
                self._spawn(java, libs)
        self._wait_until_serving(timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. False when it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        log.info("event=kafka_stopping pid=%d bootstrap=%s", pid, self.bootstrap_servers)
        os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout):
            log.warning(
                "event=kafka_kill pid=%d reason=no_exit_after_sigterm seconds=%.0f", pid, timeout
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 10.0):
                raise LocalKafkaError(f"Kafka (pid {pid}) did not exit even after SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        self._proc = None
        log.info("event=kafka_stopped pid=%d", pid)
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
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _write_config(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # One node: every internal topic has one replica, and few partitions start faster.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            # The project creates its topics with their configs; a typo must not create one.
            "auto.create.topics.enable": "false",
            "num.network.threads": "3",
            "num.io.threads": "4",
        }
        body = "".join(f"{k}={v}\n" for k, v in props.items())
        self.properties_file.write_text("# written by prgate/local_kafka.py\n" + body)

    def _format_if_needed(self, java: str, libs: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return  # restart: keep the data and the cluster id
        cmd = [
            java,
            "-Xmx256m",
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            random_cluster_id(),
            "-c",
            str(self.properties_file),
        ]
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
        log.info("event=kafka_formatted data_dir=%s", self.data_dir)

    def _spawn(self, java: str, libs: Path) -> None:
        log4j = resources.files("prgate").joinpath("kafka/log4j2.properties")
        log4j_file = self.state_dir / "log4j2.properties"
        log4j_file.write_bytes(log4j.read_bytes())
        cmd = [
            java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j_file}",
            f"-Dkafka.logs.dir={self.state_dir}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(self.properties_file),
        ]
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
            "event=kafka_spawned pid=%d bootstrap=%s log=%s",
            self._proc.pid,
            self.bootstrap_servers,
            self.log_file,
        )

    def _wait_until_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise LocalKafkaError(
                    f"Kafka exited while starting; last lines of {self.log_file}:\n"
                    + tail(self.log_file)
                )
            if port_in_use(self.port) and broker_answers(self.bootstrap_servers, 3.0):
                log.info(
                    "event=kafka_serving bootstrap=%s pid=%s", self.bootstrap_servers, self.pid()
                )
                return
            time.sleep(0.25)
        self.stop(timeout=10.0)
        raise LocalKafkaError(
            f"Kafka did not answer metadata requests at {self.bootstrap_servers} within "
            f"{timeout:.0f}s (stopped it); last lines of {self.log_file}:\n" + tail(self.log_file)
        )
