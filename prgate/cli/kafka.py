"""``prgate kafka start|stop|status``: the project's local broker, or a local cluster of three
(``--brokers 3`` / ``PRGATE_KAFKA_BROKERS=3``).

The broker itself is :mod:`prgate.kafka.local`; this module turns flags and the environment into
its settings and prints what happened. A non-loopback ``--bootstrap-servers`` /
``KAFKA_BOOTSTRAP_SERVERS`` selects a remote cluster (nothing is started); a loopback one
selects the local broker's port. :func:`local_broker` and :func:`remote_bootstrap` are shared
with ``prgate dev``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

from prgate.kafka.cluster import LocalCluster
from prgate.kafka.local import (
    KAFKA_VERSION,
    LocalKafkaError,
    LocalKafkaSettings,
    broker_answers,
    foreign_broker_serves,
)
from prgate.kafka.settings import KafkaSettings
from prgate.settings import add_arguments, config_path, load, read_config_file


def loopback_port(bootstrap: str) -> int | None:
    """The (first) port of a ``127.0.0.1:PORT`` / ``localhost:PORT`` bootstrap, or of a list of
    only such addresses (the local cluster's), else None."""
    ports: list[int] = []
    for address in bootstrap.split(","):
        host, sep, port = address.strip().rpartition(":")
        if not (sep and host in ("127.0.0.1", "localhost") and port.isdigit()):
            return None
        ports.append(int(port))
    return ports[0] if ports else None


def _from_config(args: argparse.Namespace, environ: Mapping[str, str], key: str) -> str | None:
    """The configuration file's value of ``key`` (``--config`` / ``PRGATE_CONFIG_FILE``)."""
    path = config_path(args, environ)
    value = read_config_file(path).get(key) if path else None
    return None if value is None else str(value)


def chosen_bootstrap(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """--bootstrap-servers, else KAFKA_BOOTSTRAP_SERVERS, else the configuration file's."""
    return (
        args.bootstrap_servers
        or environ.get("KAFKA_BOOTSTRAP_SERVERS")
        or _from_config(args, environ, "bootstrap_servers")
    )


def remote_bootstrap(args: argparse.Namespace, environ: Mapping[str, str]) -> str | None:
    """A non-loopback cluster chosen by --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS (or the
    configuration file's ``bootstrap_servers``).

    Then no local broker is started. A loopback address instead selects the local broker's
    port (unless --port is given), so the same variable drives both cases.
    """
    if getattr(args, "port", None) is not None:
        return None
    chosen = chosen_bootstrap(args, environ)
    return chosen if chosen and loopback_port(chosen) is None else None


def local_broker(args: argparse.Namespace, environ: Mapping[str, str]) -> LocalKafkaSettings:
    """Local broker settings; without --port/PRGATE_KAFKA_PORT the port follows a loopback
    bootstrap address, so ``KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 prgate kafka stop`` works."""
    settings = load(LocalKafkaSettings, args, environ)
    unset = "PRGATE_KAFKA_PORT" not in environ and _from_config(args, environ, "port") is None
    if args.port is None and unset:
        port = loopback_port(chosen_bootstrap(args, environ) or "")
        if port is not None:
            settings = dataclasses.replace(settings, port=port)
    return settings


def start(args: argparse.Namespace) -> int:
    """``prgate kafka start``: 0 once the broker (or the remote cluster) answers.

    Raises :class:`LocalKafkaError` when it cannot (missing tool, port taken, timeout).
    """
    remote = remote_bootstrap(args, os.environ)
    if remote is not None:
        if not broker_answers(remote, timeout=10.0):
            raise LocalKafkaError(
                f"KAFKA_BOOTSTRAP_SERVERS={remote} is set but no broker answers there; unset "
                "it to start the project's own broker"
            )
        print(f"using the Kafka cluster at {remote}; not starting a local broker")
        return 0
    settings = local_broker(args, os.environ)
    if settings.brokers > 1:
        return _start_cluster(settings)
    broker = settings.broker()
    if foreign_broker_serves(broker):
        print(f"a Kafka broker not started by prgate already serves at {broker.bootstrap_servers}")
        return 0
    broker.start(settings.start_timeout)
    port_flag = f" --port {broker.port}" if broker.port != 9092 else ""
    print(
        f"Kafka {KAFKA_VERSION} serves at {broker.bootstrap_servers} (pid {broker.pid()}, "
        f"log {broker.log_file}); stop it with `prgate kafka stop{port_flag}`"
    )
    if broker.port != 9092:
        print(f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
    return 0


def _start_cluster(settings: LocalKafkaSettings) -> int:
    cluster = settings.cluster()
    if cluster.running() and len(cluster.running()) == len(cluster.nodes):
        print(f"the local cluster already runs at {cluster.bootstrap_servers}")
        return 0
    cluster.start(settings.start_timeout)
    port_flag = f" --port {cluster.port}" if cluster.port != 9092 else ""
    print(
        f"Kafka {KAFKA_VERSION}: {len(cluster.nodes)} nodes serve at {cluster.bootstrap_servers} "
        f"(state {cluster.state_dir}); stop them with `prgate kafka stop{port_flag}`"
    )
    print(f"export KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap_servers}")
    return 0


def _cluster_of(settings: LocalKafkaSettings) -> LocalCluster | None:
    """The local cluster at these settings' port when one was set up there (any node's state
    directory exists), else None."""
    cluster = settings.cluster(max(settings.brokers, 3))
    return cluster if settings.brokers > 1 or cluster.running() else None


def stop(args: argparse.Namespace) -> int:
    """``prgate kafka stop``: stop the local broker and every node of a local cluster at that
    port; 0 whether or not one was running."""
    settings = local_broker(args, os.environ)
    cluster = _cluster_of(settings)
    if cluster is not None and cluster.running():
        cluster.stop()
        print(f"stopped the local cluster at {cluster.bootstrap_servers}")
        return 0
    broker = settings.broker()
    if broker.stop():
        print(f"stopped the Kafka broker at {broker.bootstrap_servers}")
    else:
        print(f"no Kafka broker started by prgate runs at {broker.bootstrap_servers}")
    return 0


def cluster_status(cluster: LocalCluster, kafka: KafkaSettings) -> int:
    """Print each node, the active controller and the leaders of the contract topics' partitions
    (``topic[partition]=node``); 0 when every node serves."""
    nodes = cluster.status()
    for node in nodes:
        state = "serving" if node.serving else ("starting or unhealthy" if node.pid else "down")
        print(
            f"node {node.node_id} {state}: bootstrap={node.bootstrap} controller={node.controller}"
            f" pid={node.pid or '-'} state_dir={node.state_dir}"
        )
    if not any(node.serving for node in nodes):
        return 1
    try:
        print(f"active controller: node {cluster.active_controller()}")
    except LocalKafkaError as exc:
        print(f"active controller: unknown ({str(exc).splitlines()[0]})")
    names = [spec.name for spec in kafka.topics.specs(kafka.partitions)]
    leaders = cluster.leaders(names)
    for name in names:
        found = sorted((p, n) for (t, p), n in leaders.items() if t == name)
        shown = " ".join(f"{p}={n}" for p, n in found) if found else "(missing)"
        print(f"leaders {name}: {shown}")
    lagging = cluster.under_replicated()
    print(f"under-replicated partitions: {len(lagging)}")
    for line in lagging[:20]:
        print(f"  {line}")
    return 0 if all(node.serving for node in nodes) else 1


def status(args: argparse.Namespace) -> int:
    """``prgate kafka status``: 0 when the local broker (every node of a local cluster) runs
    and serves, else 1."""
    settings = local_broker(args, os.environ)
    cluster = _cluster_of(settings)
    if cluster is not None:
        kafka = dataclasses.replace(
            load(KafkaSettings, args), bootstrap_servers=cluster.bootstrap_servers
        )
        return cluster_status(cluster, kafka)
    broker = settings.broker()
    pid = broker.pid()
    serving = pid is not None and broker_answers(broker.bootstrap_servers, timeout=5.0)
    state = "serving" if serving else ("starting or unhealthy" if pid else "not running")
    if pid is None and foreign_broker_serves(broker):
        state = "not running (a broker not started by prgate serves on that port)"
    print(
        f"kafka {state}: bootstrap={broker.bootstrap_servers} pid={pid or '-'} "
        f"state_dir={broker.state_dir} log={broker.log_file}"
    )
    return 0 if serving else 1


def register(sub: Any) -> None:
    """Add ``prgate kafka start|stop|status`` to the top-level subparsers of ``prgate``."""
    kafka = sub.add_parser("kafka", help=f"the project's local Kafka {KAFKA_VERSION} broker")
    actions_sub = kafka.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
        "start": (start, "provision (cached) and start; return once it serves"),
        "stop": (stop, "stop it (SIGTERM, then SIGKILL after a bound)"),
        "status": (status, "show whether it runs and serves (exit 1 if not)"),
    }
    for action, (func, help_text) in actions.items():
        p = actions_sub.add_parser(action, help=help_text)
        add_arguments(p, KafkaSettings)
        add_arguments(p, LocalKafkaSettings)
        p.set_defaults(func=func)
