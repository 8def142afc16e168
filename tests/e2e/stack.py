"""Processor and gateway processes for end-to-end tests, on the test session's broker.

Each service runs as a real child process (``python -m processor`` / ``python -m gateway``)
so tests can SIGKILL, stop and restart it. Output goes to a log file whose tail is shown when
something does not come up in time.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.system import service_env
from prgate.kafka.settings import KafkaSettings
from prgate.v1 import command_service_pb2_grpc, query_service_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServiceProcess:
    """One child process of the stack."""

    name: str
    module: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process is not None and self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def pause(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.process is None:
            return None
        if self.alive():
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class GatewayProcess(ServiceProcess):
    port: int = 0
    channel: grpc.Channel | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Wait until the health service reports SERVING (read model caught up)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if not self.alive():
                    raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if status.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                    last = health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)
                except grpc.RpcError as exc:
                    last = exc.code().name
                time.sleep(0.1)
        raise AssertionError(
            f"{self.name} not SERVING after {timeout}s ({last}):\n{self.log_tail()}"
        )

    def commands(self) -> command_service_pb2_grpc.PullRequestCommandServiceStub:
        if self.channel is None:
            self.channel = grpc.insecure_channel(self.target)
        return command_service_pb2_grpc.PullRequestCommandServiceStub(self.channel)

    def queries(self) -> query_service_pb2_grpc.PullRequestQueryServiceStub:
        if self.channel is None:
            self.channel = grpc.insecure_channel(self.target)
        return query_service_pb2_grpc.PullRequestQueryServiceStub(self.channel)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        return super().stop(timeout)


def base_env(kafka: KafkaSettings) -> dict[str, str]:
    # No load balancer watches a test's gateways: stop without the drain window (tests of the
    # drain set it).
    return service_env(kafka, PRGATE_DRAIN_S="0")


@dataclass
class Stack:
    """The services of one test; everything is stopped by :meth:`close`."""

    kafka: KafkaSettings
    log_dir: Path
    services: list[ServiceProcess] = field(default_factory=list)

    def processor(self, instance: str = "p0", **env: str) -> ServiceProcess:
        merged = base_env(self.kafka)
        merged.update({"PRGATE_PROCESSOR_INSTANCE_ID": instance, **env})
        service = ServiceProcess(
            f"processor-{instance}", "processor", merged, self.log_dir / f"processor-{instance}.log"
        )
        service.start()
        self.services.append(service)
        return service

    def gateway(self, port: int, name: str = "g0", **env: str) -> GatewayProcess:
        merged = base_env(self.kafka)
        merged.update({"PRGATE_LISTEN": f"127.0.0.1:{port}", **env})
        service = GatewayProcess(
            f"gateway-{name}", "gateway", merged, self.log_dir / f"gateway-{name}.log", port=port
        )
        service.start()
        self.services.append(service)
        service.wait_serving()
        return service

    def close(self) -> None:
        for service in reversed(self.services):
            service.stop()
