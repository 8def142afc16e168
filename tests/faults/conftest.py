"""Fault suite fixtures: processes to kill, a private broker to stop, the outcome table.

Short mode (CI, the default) keeps the whole suite within a few minutes on two cores.
``PRGATE_FAULTS_LONG=1`` runs the long mode for people: more commands, more kills, more
rebalances, more hypothesis examples. ``PRGATE_FAULTS_SEED=<int>`` replays a run's random
choices (the seed of each test is printed, and shown by pytest when the test fails).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers.kafka import free_port

from prgate.kafka.contract import Topics
from prgate.kafka.local import LocalKafka
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics
from tests.e2e.stack import GatewayProcess, ServiceProcess, Stack
from tests.faults import summary

LONG = os.environ.get("PRGATE_FAULTS_LONG", "") not in ("", "0", "false", "no")
# Processors keep their state in RocksDB stores unless PRGATE_FAULTS_STATE_STORES=0.
STATE_STORES = os.environ.get("PRGATE_FAULTS_STATE_STORES", "1") not in ("", "0", "false", "no")
# The broker's group.min.session.timeout.ms: a killed processor's partitions move after this.
SESSION_TIMEOUT_MS = "6000"


@dataclass(frozen=True)
class Scale:
    """How much each test does: short for CI, long for people."""

    long: bool
    workers: int
    kills: int
    max_commands: int
    rebalances: int
    examples: int


SHORT_SCALE = Scale(long=False, workers=4, kills=3, max_commands=1000, rebalances=1, examples=25)
LONG_SCALE = Scale(long=True, workers=8, kills=10, max_commands=20000, rebalances=4, examples=150)


@pytest.fixture(scope="session")
def scale() -> Scale:
    return LONG_SCALE if LONG else SHORT_SCALE


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """This test's random seed (PRGATE_FAULTS_SEED to replay one)."""
    value = int(os.environ.get("PRGATE_FAULTS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"{request.node.name}: PRGATE_FAULTS_SEED={value}")
    return value


@pytest.fixture
def fault_row(request: pytest.FixtureRequest) -> Iterator[summary.Row]:
    """This test's row in the summary table; timed and marked passed/failed automatically."""
    row = summary.Row(request.node.name)
    started = time.monotonic()
    yield row
    row.seconds = time.monotonic() - started
    report = getattr(request.node, "rep_call", None)
    row.outcome = report.outcome if report is not None else "error"
    summary.add(row)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = summary.render() if summary.ROWS else []
    if not lines:
        return
    mode = "long" if LONG else "short (PRGATE_FAULTS_LONG=1 for the long mode)"
    terminalreporter.write_sep("=", f"fault suite: {mode}")
    for line in lines:
        terminalreporter.write_line(line)


# -- processes ----------------------------------------------------------------------------------


@dataclass
class FaultStack(Stack):
    """A Stack whose processors use a consumer group of this test alone and the shortest
    session timeout the broker allows, so a killed processor's partitions move quickly.

    Every processor keeps its state in RocksDB stores, one state directory per
    instance name: a restarted or re-assigned instance replays only the tail, and every fault
    test runs with the stores on (``PRGATE_FAULTS_STATE_STORES=0``, or ``PRGATE_STATE_DIR=""``
    in ``env``, turns them off)."""

    def processor(self, instance: str = "p0", **env: str) -> ServiceProcess:
        defaults = {
            "PRGATE_PROCESSOR_GROUP_ID": f"{self.kafka.topic_prefix}processor",
            "PRGATE_PROCESSOR_SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS,
            "PRGATE_STATE_DIR": str(self.state_root / instance) if STATE_STORES else "",
        }
        return super().processor(instance, **{**defaults, **env})

    def gateway(self, port: int = 0, name: str = "g0", **env: str) -> GatewayProcess:
        return super().gateway(port or free_port(), name, **env)

    retired: list[ServiceProcess] = field(default_factory=list)
    # Outside the test's directory: its path (the test's name) would show in the processors'
    # log lines, which tests search for event names.
    state_root: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="prgate-faults-state-"))
    )

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.state_root, ignore_errors=True)

    def kill(self, service: ServiceProcess) -> None:
        """SIGKILL ``service`` on purpose (assert_alive no longer expects it to run)."""
        self.retired.append(service)
        service.kill()

    def stop(self, service: ServiceProcess) -> int | None:
        """SIGTERM ``service`` on purpose and wait; returns its exit code."""
        self.retired.append(service)
        return service.stop()

    def assert_alive(self) -> None:
        """No service of this stack died on its own."""
        dead = [
            f"{s.name} exit={s.process.returncode if s.process else None}:\n{log_tail(s, 20)}"
            for s in self.services
            if not s.alive() and all(s is not r for r in self.retired)
        ]
        assert not dead, "services died:\n" + "\n".join(dead)


def log_tail(service: ServiceProcess, lines: int = 40) -> str:
    """The service's last log lines without librdkafka's own connection chatter."""
    try:
        text = service.log_path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    kept = [line for line in text.splitlines() if '"event": "librdkafka"' not in line]
    return "\n".join(kept[-lines:])


def processor_aborts(processor: ServiceProcess) -> int:
    """The processor's aborted transactions so far, counted in its log."""
    return processor.log_path.read_text(errors="replace").count('"event": "transaction_aborted"')


def wait_log(service: ServiceProcess, text: str, timeout: float) -> float:
    """Wait until ``text`` appears in the service's log; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if text in service.log_path.read_text(errors="replace"):
            return time.monotonic() - started
        if not service.alive():
            break
        time.sleep(0.1)
    raise AssertionError(
        f"{service.name}: no {text!r} in its log within {timeout}s:\n{log_tail(service)}"
    )


def open_stack(kafka: KafkaSettings, log_dir: Path) -> FaultStack:
    return FaultStack(kafka, log_dir)


def close_stack(stack: FaultStack) -> None:
    stack.close()
    for service in stack.services:  # shown by pytest only when the test failed
        print(f"----- {service.name} log tail -----\n{log_tail(service, 60)}")


@pytest.fixture
def stack(
    kafka_settings: KafkaSettings, ensured_topics: Topics, tmp_path: Path
) -> Iterator[FaultStack]:
    """Services on the session's broker, under this test's topic prefix."""
    services = open_stack(kafka_settings, tmp_path)
    try:
        yield services
    finally:
        close_stack(services)


@dataclass
class PrivateKafka:
    broker: LocalKafka
    kafka: KafkaSettings


@pytest.fixture
def private_kafka(local_kafka_factory: Callable[[], LocalKafka], topic_prefix: str) -> PrivateKafka:
    """A broker of this test alone (it may be stopped), with the contract topics created."""
    broker = local_kafka_factory()
    kafka = KafkaSettings(
        bootstrap_servers=broker.bootstrap_servers, topic_prefix=topic_prefix, partitions=3
    )
    ensure_topics(kafka)
    return PrivateKafka(broker, kafka)
