"""Probes of a local Kafka node: is a port taken, does a broker answer, is a process alive.

Used by :class:`prgate.kafka.local.LocalKafka` and :class:`prgate.kafka.cluster.LocalCluster`
to decide whether to start, reuse or wait for a broker; ``tail`` shows a failed node's log.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from confluent_kafka.admin import AdminClient

from prgate.kafka.node_config import HOST

if TYPE_CHECKING:
    from prgate.kafka.cluster import LocalCluster
    from prgate.kafka.local import LocalKafka


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something accepts TCP connections on ``host:port`` (0.5 s to connect)."""
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


def foreign_broker_serves(broker: LocalKafka | LocalCluster) -> bool:
    """True when a Kafka that ``broker`` did not start answers on its port (reuse it)."""
    return (
        broker.pid() is None
        and port_in_use(broker.port)
        and broker_answers(broker.bootstrap_servers, timeout=5.0)
    )


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists and has not exited (a zombie counts as exited)."""
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
    """The last ``lines`` lines of the log at ``path`` ("(no log)" when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
