"""``--workers N``: N gateway processes sharing one port, under a supervisor.

The supervisor checks the listen addresses, holds a port-0 address's port for the workers
(:func:`reserve_port`), and runs them with :class:`prgate.workers.Supervisor`; each worker is
:func:`gateway.server._worker_main`, a complete gateway.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import replace

from gateway import connect_http
from gateway.exits import EXIT_CODES, EXIT_CONFIG, EXIT_FAILED, EXIT_LISTEN, EXIT_OK, failed
from gateway.settings import GatewaySettings
from gateway.transport import ListenError, check_can_listen
from prgate.kafka.settings import KafkaSettings
from prgate.workers import Supervisor, nth_address

log = logging.getLogger(__name__)


def supervise(
    settings: GatewaySettings,
    kafka: KafkaSettings,
    worker_main: Callable[[GatewaySettings, KafkaSettings, int], int],
) -> int:
    """``--workers N``: check the addresses, then run N workers on one port until stopped.

    Port 0 is resolved here (a socket bound with SO_REUSEPORT keeps the port while the workers
    run), so every worker listens on the same port. Exit codes are a single gateway's: the
    supervisor's own (2, 3) or the first failing worker's (prgate/workers.py).

    ``worker_main(settings, kafka, index)`` runs one worker in its own spawned process, so it
    is a module-level function (``gateway.server._worker_main``).
    """
    if settings.workers < 1:
        return failed(EXIT_CONFIG, f"--workers must be at least 1, not {settings.workers}")
    try:
        check_can_listen(settings.listen)
        metrics = [nth_address(settings.metrics_listen, i) for i in range(settings.workers)]
        for address in metrics if settings.metrics_listen else ():
            check_can_listen(address, "--metrics-listen")
        connect_http.check_shared_listen(settings.http_listen)
    except (ListenError, ValueError) as exc:
        return failed(EXIT_LISTEN, exc)
    with contextlib.ExitStack() as stack:
        listen = settings.listen
        host, _, port = listen.rpartition(":")
        if int(port) == 0:
            reserved = stack.enter_context(reserve_port(host))
            listen = f"{host}:{reserved}"
        supervisor = Supervisor(
            "gateway",
            settings.workers,
            worker_main,
            (replace(settings, listen=listen), kafka),
            forward=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP),
        )
        log.info("gateway_supervisor", extra={"workers": settings.workers, "listen": listen})
        code = supervisor.run()
    if code:
        return failed(code if code in EXIT_CODES else EXIT_FAILED, "a worker failed (see its line)")
    log.info("gateway_exit", extra={"code": "0", "reason": EXIT_CODES[EXIT_OK]})
    return EXIT_OK


@contextlib.contextmanager
def reserve_port(host: str) -> Iterator[int]:
    """A free port on ``host``, held (bound with SO_REUSEPORT, not listening) while in use."""
    bind_host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind((bind_host, 0))
        yield int(holder.getsockname()[1])
