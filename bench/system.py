"""The systems under test: a private broker, processor, gateway and the baseline servers.

Everything runs on loopback, on free ports, with a temporary state directory, so a benchmark
never touches a shared broker. Child processes are started like the end-to-end tests start
them (``python -m <module>`` with ``PRGATE_*`` variables) and are always stopped, SIGTERM
first, SIGKILL after a bound.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from prgate.kafka.local import LocalKafka
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
PRGATE_PREFIX = "bench."
BASELINE_PREFIX = "bench-baseline."
PLAIN_PREFIX = "bench-baseline-plain."
RESTORE_PREFIX = "bench-restore."
ARCHIVE_PREFIX = "bench-archive."
_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(kafka: KafkaSettings, **extra: str) -> dict[str, str]:
    """This process's environment for a service child on ``kafka`` (its cluster, topic prefix
    and partitions, INFO logs, unbuffered output), then ``extra``."""
    env = dict(os.environ)
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "PRGATE_TOPIC_PREFIX": kafka.topic_prefix,
            "PRGATE_PARTITIONS": str(kafka.partitions),
            "PRGATE_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), 0.0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the ")" the fields start at 3 (state): utime is field 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, their children, ...), from /proc; may be empty.

    A ``--workers``/``--instances`` service's CPU is that of its supervisor plus these.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class Child:
    """One child process with its log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def wait_serving(
    target: str, child: Child, timeout: float = 120.0, *, fresh_connection: bool = False
) -> None:
    """Wait until the gRPC health service at ``target`` reports SERVING.

    ``fresh_connection``: on a TCP connection of its own (with ``--workers``, the kernel picks
    the worker per connection).
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    options = [("grpc.use_local_subchannel_pool", 1)] if fresh_connection else []
    with grpc.insecure_channel(target, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if status.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = str(status.status)
            except grpc.RpcError as exc:
                last = exc.code().name
            time.sleep(0.1)
    raise RuntimeError(f"{child.name} not SERVING after {timeout}s ({last}):\n{child.log_tail()}")


@dataclass
class BenchSystem:
    """Broker, processor, gateway, echo server and Kafka replier of one benchmark run."""

    work_dir: Path
    partitions: int = 6
    env_overrides: dict[str, str] = field(default_factory=dict)
    broker: LocalKafka | None = None
    children: dict[str, Child] = field(default_factory=dict)
    gateway_target: str = ""
    echo_target: str = ""

    def kafka(self, prefix: str = PRGATE_PREFIX) -> KafkaSettings:
        assert self.broker is not None
        return KafkaSettings(
            bootstrap_servers=self.broker.bootstrap_servers,
            topic_prefix=prefix,
            partitions=self.partitions,
        )

    def start_broker(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.broker = LocalKafka(
            free_port(), controller_port=free_port(), state_dir=self.work_dir / "kafka"
        )
        self.broker.start(timeout=180.0)
        for prefix in (PRGATE_PREFIX, BASELINE_PREFIX, PLAIN_PREFIX):
            ensure_topics(self.kafka(prefix))

    def _env(self, prefix: str = PRGATE_PREFIX) -> dict[str, str]:
        return service_env(self.kafka(prefix), **self.env_overrides)

    def _child(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        child = Child(name, argv, env, self.work_dir / f"{name}.log")
        child.start()
        self.children[name] = child
        return child

    def start_services(self) -> None:
        """Processor, gateway (waits for SERVING), echo server and Kafka replier."""
        env = self._env() | {"PRGATE_PROCESSOR_INSTANCE_ID": "bench-p0"}
        self._child("processor", [sys.executable, "-m", "processor"], env)
        port = free_port()
        self.gateway_target = f"127.0.0.1:{port}"
        gateway = self._child(
            "gateway",
            [sys.executable, "-m", "gateway"],
            self._env() | {"PRGATE_LISTEN": self.gateway_target},
        )
        echo_port = free_port()
        self.echo_target = f"127.0.0.1:{echo_port}"
        echo = self._child(
            "echo",
            [sys.executable, "-m", "bench.baselines", "echo", self.echo_target],
            self._env(),
        )
        self._child(
            "replier",
            [sys.executable, "-m", "bench.baselines", "replier"],
            self._env(BASELINE_PREFIX) | {"PRGATE_PROCESSOR_INSTANCE_ID": "bench-replier"},
        )
        self._child(
            "replier-plain",
            [sys.executable, "-m", "bench.baselines", "replier"],
            self._env(PLAIN_PREFIX)
            | {"PRGATE_PROCESSOR_INSTANCE_ID": "bench-plain", "BENCH_REPLIER_TRANSACTIONAL": "0"},
        )
        wait_serving(self.gateway_target, gateway)
        wait_serving(self.echo_target, echo)

    def restart_gateway(self, workers: int) -> None:
        """Stop the gateway and start it again on the same port with ``workers`` processes."""
        self.children["gateway"].stop()
        gateway = self._child(
            "gateway",
            [sys.executable, "-m", "gateway"],
            self._env()
            | {"PRGATE_LISTEN": self.gateway_target, "PRGATE_GATEWAY_WORKERS": str(workers)},
        )
        # Every worker, not just the one a channel lands on: fresh connections spread over them.
        for _ in range(4 * workers):
            wait_serving(self.gateway_target, gateway, fresh_connection=True)

    def pids(self) -> dict[str, int]:
        """Component name to pid, for CPU accounting."""
        pids = {name: child.pid for name, child in self.children.items() if child.alive()}
        if self.broker is not None and self.broker.pid() is not None:
            pids["broker"] = self.broker.pid() or 0
        return pids

    def check_alive(self) -> None:
        for child in self.children.values():
            if not child.alive():
                raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")

    def close(self) -> None:
        for child in reversed(list(self.children.values())):
            try:
                child.stop()
            except Exception:
                log.exception("bench_child_stop_failed", extra={"child": child.name})
        if self.broker is not None:
            self.broker.stop()
