"""``prgate dev``: the whole system in one foreground command.

Starts the project's broker (unless a remote cluster is configured, or a broker already serves
on the port), ensures the topics, runs ``python -m processor``, ``python -m gateway`` and
``python -m archive`` (the audit archive, into :data:`DEV_ARCHIVE_ROOT` unless
``PRGATE_ARCHIVE_ROOT`` says otherwise) as child processes, and on Ctrl-C or SIGTERM stops the
children, then the broker if it started it. Each child serves Prometheus ``/metrics`` on its own
port (``METRICS_LISTEN``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from prgate.cli.kafka import local_broker, remote_bootstrap
from prgate.kafka.cluster import LocalCluster
from prgate.kafka.local import LocalKafka, LocalKafkaSettings, foreign_broker_serves
from prgate.kafka.provision import cache_root
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics
from prgate.settings import (
    CONFIG_ENV,
    add_arguments,
    config_path,
    format_properties,
    load,
    read_config_file,
)

log = logging.getLogger(__name__)

CHILDREN = ("processor", "gateway", "archive")
CHILD_STOP_TIMEOUT_S = 15.0
DEFAULT_LISTEN = "127.0.0.1:50051"
# /metrics of each child: one port each, as both read the same PRGATE_METRICS_LISTEN.
METRICS_LISTEN = {
    "gateway": "127.0.0.1:9464",
    "processor": "127.0.0.1:9465",
    "archive": "127.0.0.1:9466",
}
# Where `prgate dev` archives: the archive's own default (archive.settings.default_root), under
# the project's cache, so `prgate audit` reads it without flags.
DEV_ARCHIVE_ROOT = cache_root() / "archive"


# A child that needs an optional extra is skipped (with a warning) when the extra is missing.
CHILD_NEEDS = {"archive": "deltalake"}  # pip install 'prgate[archive]'


def child_available(module: str) -> bool:
    """True when ``python -m <module>`` can run (the package has a ``__main__``, and the extra
    it needs is installed)."""
    try:
        found = importlib.util.find_spec(f"{module}.__main__") is not None
        needs = CHILD_NEEDS.get(module)
        return found and (needs is None or importlib.util.find_spec(needs) is not None)
    except ImportError:
        return False


def child_environment(kafka: KafkaSettings) -> dict[str, str]:
    """The children's environment: ours, plus the Kafka settings this command resolved."""
    env = dict(os.environ)
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.bootstrap_servers
    env["PRGATE_TOPIC_PREFIX"] = kafka.topic_prefix
    env["PRGATE_PARTITIONS"] = str(kafka.partitions)
    if kafka.kafka_properties:
        # The file's properties are folded in already; commas in values stay escaped.
        env["PRGATE_KAFKA_PROPERTIES"] = format_properties(kafka.kafka_properties)
        env.pop("PRGATE_KAFKA_PROPERTIES_FILE", None)
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
    if "archive" in running:
        lines += [
            f"archive: Delta tables in {os.environ.get('PRGATE_ARCHIVE_ROOT', DEV_ARCHIVE_ROOT)}"
            "; for example:",
            "  prgate audit refusals",
            "  prgate audit pr ID",
        ]
    for name, address in (metrics or {}).items():
        lines.append(f"{name} metrics at http://{address}/metrics")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def _stop_children(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for name, proc in children.items():
        if proc.poll() is None:
            log.info("child_stopping", extra={"child": name, "pid": proc.pid})
            proc.terminate()
    for name, proc in children.items():
        try:
            code = proc.wait(CHILD_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("child_kill", extra={"child": name, "pid": proc.pid})
            proc.kill()
            code = proc.wait(5.0)
        log.info("child_stopped", extra={"child": name, "code": code})


def run_dev(
    kafka: KafkaSettings,
    *,
    broker: LocalKafka | LocalCluster | None,
    start_timeout: float,
    config: str | None = None,
) -> int:
    """Run everything until Ctrl-C/SIGTERM or a child exits; return the exit code.

    ``broker`` is the local broker (or local cluster, ``PRGATE_KAFKA_BROKERS=3``) to use
    (None: ``kafka.bootstrap_servers`` is a remote cluster). A broker that already serves on
    its port is used and left running. ``config``: the TOML configuration file the children
    read too (``PRGATE_CONFIG_FILE``).
    """
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("dev_signal", extra={"signal": signal.Signals(signum).name})
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
                log.info("dev_broker_reused", extra={"bootstrap": broker.bootstrap_servers})
            else:
                broker.start(start_timeout)
                started_broker = True
        ensure_topics(kafka)
        env = child_environment(kafka)
        if config:
            env[CONFIG_ENV] = str(Path(config).resolve())
        for name in CHILDREN:
            if stop.is_set():
                break
            if not child_available(name):
                log.warning(
                    "dev_child_skipped", extra={"child": name, "reason": "no __main__ module"}
                )
                continue
            child_env = dict(env)
            if free_listen(METRICS_LISTEN[name]):
                child_env["PRGATE_METRICS_LISTEN"] = metrics[name] = METRICS_LISTEN[name]
            else:
                log.warning("dev_metrics_port_busy", extra={"child": name})
                child_env["PRGATE_METRICS_LISTEN"] = ""
            children[name] = subprocess.Popen([sys.executable, "-m", name], env=child_env)
            log.info("child_started", extra={"child": name, "pid": children[name].pid})
        from_file = read_config_file(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else {}
        listen = env.get("PRGATE_LISTEN") or str(from_file.get("listen") or DEFAULT_LISTEN)
        print(usage_hint(kafka, listen, list(children), metrics))
        while not stop.wait(0.5):
            exited = {n: p.returncode for n, p in children.items() if p.poll() is not None}
            if exited:
                log.error("dev_child_exited", extra={"children": exited})
                code = 1
                break
    finally:
        _stop_children(children)
        if started_broker and broker is not None:
            broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def dev(args: argparse.Namespace) -> int:
    """``prgate dev``: the local broker (or the remote cluster the flags name) and the rest."""
    kafka = load(KafkaSettings, args)
    local = local_broker(args, os.environ)
    broker: LocalKafka | LocalCluster | None = None
    if remote_bootstrap(args, os.environ) is None:
        broker = local.cluster() if local.brokers > 1 else local.broker()
    return run_dev(
        kafka,
        broker=broker,
        start_timeout=local.start_timeout,
        config=config_path(args, os.environ),
    )


def register(sub: Any) -> None:
    """Add ``prgate dev`` to the top-level subparsers of ``prgate``."""
    p = sub.add_parser("dev", help="broker, topics, processor and gateway; Ctrl-C stops all")
    add_arguments(p, KafkaSettings)
    add_arguments(p, LocalKafkaSettings)
    p.set_defaults(func=dev)
