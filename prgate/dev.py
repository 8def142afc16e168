"""``prgate dev``: the whole system in one foreground command.

Starts the project's broker (unless a remote cluster is configured, or a broker already serves
on the port), ensures the topics, runs ``python -m processor`` and ``python -m gateway`` as child
processes, and on Ctrl-C or SIGTERM stops the children, then the broker if it started it.
Each child serves Prometheus ``/metrics`` on its own port (``METRICS_LISTEN``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from types import FrameType

from prgate.kafka_settings import KafkaSettings
from prgate.local_kafka import LocalKafka, foreign_broker_serves
from processor.topics import ensure_topics

log = logging.getLogger("prgate.dev")

CHILDREN = ("processor", "gateway")
CHILD_STOP_TIMEOUT_S = 15.0
DEFAULT_LISTEN = "127.0.0.1:50051"
# /metrics of each child: one port each, as both read the same PRGATE_METRICS_LISTEN.
METRICS_LISTEN = {"gateway": "127.0.0.1:9464", "processor": "127.0.0.1:9465"}


def child_available(module: str) -> bool:
    """True when ``python -m <module>`` can run (the package has a ``__main__``)."""
    try:
        return importlib.util.find_spec(f"{module}.__main__") is not None
    except ImportError:
        return False


def child_environment(kafka: KafkaSettings) -> dict[str, str]:
    """The children's environment: ours, plus the Kafka settings this command resolved."""
    env = dict(os.environ)
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.bootstrap_servers
    env["PRGATE_TOPIC_PREFIX"] = kafka.topic_prefix
    env["PRGATE_PARTITIONS"] = str(kafka.partitions)
    if kafka.kafka_properties:
        env["PRGATE_KAFKA_PROPERTIES"] = ",".join(
            f"{k}={v}" for k, v in kafka.kafka_properties.items()
        )
    return env


def free_listen(listen: str) -> bool:
    """Whether ``host:port`` can be bound now (another dev run may hold it)."""
    host, _, port = listen.rpartition(":")
    with socket.socket() as sock:
        try:
            sock.bind((host, int(port)))
        except OSError:
            return False
    return True


def usage_hint(
    kafka: KafkaSettings, listen: str, running: list[str], metrics: dict[str, str] | None = None
) -> str:
    example = (
        '{"command": {"repository": "octo/hello", "title": "Add a README", "author": "alice", '
        '"sourceBranch": "readme", "targetBranch": "main"}}'
    )
    lines = [
        f"prgate dev: Kafka at {kafka.bootstrap_servers}, topics prefixed {kafka.topic_prefix!r}",
        f"running: {', '.join(running) or 'broker and topics only'}",
    ]
    if "gateway" in running:
        lines += [
            f"gateway at {listen}; for example:",
            f"  grpcurl -plaintext -d '{example}' {listen} "
            "prgate.v1.PullRequestCommandService/OpenPullRequest",
            f'  grpcurl -plaintext -d \'{{"pullRequestId": "ID"}}\' {listen} '
            "prgate.v1.PullRequestQueryService/GetPullRequest",
        ]
    for name, address in (metrics or {}).items():
        lines.append(f"{name} metrics at http://{address}/metrics")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def _stop_children(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for name, proc in children.items():
        if proc.poll() is None:
            log.info("event=child_stopping name=%s pid=%d", name, proc.pid)
            proc.terminate()
    for name, proc in children.items():
        try:
            code = proc.wait(CHILD_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("event=child_kill name=%s pid=%d", name, proc.pid)
            proc.kill()
            code = proc.wait(5.0)
        log.info("event=child_stopped name=%s code=%s", name, code)


def run_dev(kafka: KafkaSettings, *, broker: LocalKafka | None, start_timeout: float) -> int:
    """Run everything until Ctrl-C/SIGTERM or a child exits; return the exit code.

    ``broker`` is the local broker to use (None: ``kafka.bootstrap_servers`` is a remote
    cluster). A broker that already serves on its port is used and left running.
    """
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("event=dev_signal signal=%s", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started_broker = False
    children: dict[str, subprocess.Popen[bytes]] = {}
    metrics: dict[str, str] = {}
    code = 0
    try:
        if broker is not None:
            kafka = dataclasses.replace(kafka, bootstrap_servers=broker.bootstrap_servers)
            if broker.pid() is not None or foreign_broker_serves(broker):
                log.info("event=dev_broker_reused bootstrap=%s", broker.bootstrap_servers)
            else:
                broker.start(start_timeout)
                started_broker = True
        ensure_topics(kafka)
        env = child_environment(kafka)
        for name in CHILDREN:
            if stop.is_set():
                break
            if not child_available(name):
                log.warning("event=dev_child_skipped name=%s reason=no_%s.__main__", name, name)
                continue
            child_env = dict(env)
            if free_listen(METRICS_LISTEN[name]):
                child_env["PRGATE_METRICS_LISTEN"] = metrics[name] = METRICS_LISTEN[name]
            else:
                log.warning("event=dev_metrics_port_busy name=%s", name)
                child_env["PRGATE_METRICS_LISTEN"] = ""
            children[name] = subprocess.Popen([sys.executable, "-m", name], env=child_env)
            log.info("event=child_started name=%s pid=%d", name, children[name].pid)
        listen = env.get("PRGATE_LISTEN", DEFAULT_LISTEN)
        print(usage_hint(kafka, listen, list(children), metrics))
        while not stop.wait(0.5):
            exited = {n: p.returncode for n, p in children.items() if p.poll() is not None}
            if exited:
                log.error("event=dev_child_exited children=%s", exited)
                code = 1
                break
    finally:
        _stop_children(children)
        if started_broker and broker is not None:
            broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
