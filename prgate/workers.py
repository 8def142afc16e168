"""Several copies of one service from one command: ``--workers N`` / ``--instances N``.

Python runs one thread of Python at a time, so one gateway or processor process uses about
one core. :class:`Supervisor` starts N child processes (``multiprocessing``'s spawn context:
fresh interpreters, no fork after gRPC or librdkafka threads), each a complete service, and
stays in the foreground:

- SIGTERM and SIGINT (and, for the gateway, SIGHUP) are forwarded to every child (the
  gateway's drain, the processor's stop after the batch in hand, the gateway's token
  reload); the supervisor waits
  for all of them and exits 0 when every child did, else with the first child's non-zero code.
- A child that exits on its own (a refused setting, a taken address, a fatal Kafka error, a
  SIGKILL) is logged (``event=worker_exited``); the supervisor then stops the others with
  SIGTERM and exits with that child's code (1 for a child killed by a signal), so the whole
  group is restarted by whatever restarts the command, as a single process would be.

Each child's function gets its index (0 .. N-1) and returns its exit code.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_KILLED = 1  # a child ended by a signal it did not handle (SIGKILL, a crash)


def nth_address(address: str, index: int) -> str:
    """``host:port+index``: the address of worker ``index`` for a per-process listener.

    Empty (off) and port 0 (any free port) stay as they are. Raises ValueError for an address
    that is not ``host:port``.
    """
    if not address or index == 0:
        return address
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise ValueError(f"{address!r} is not host:port")
    port = int(port_text)
    return address if port == 0 else f"{host}:{port + index}"


class Supervisor:
    """Runs ``target(*args, index)`` in ``count`` child processes; see the module's doc."""

    def __init__(
        self,
        name: str,
        count: int,
        target: Callable[..., int],
        args: Sequence[Any],
        *,
        forward: Sequence[signal.Signals] = STOP_SIGNALS,
    ) -> None:
        """``forward``: the signals passed on to every child (SIGTERM and SIGINT stop)."""
        if count < 1:
            raise ValueError(f"{name}: the number of processes must be at least 1, not {count}")
        self.name = name
        self.count = count
        self._target = target
        self._args = tuple(args)
        self._children: list[Any] = []
        self._stopping = False
        self._signals = tuple(forward)

    @property
    def pids(self) -> list[int]:
        """The children's process ids, in index order (after :meth:`run` started them)."""
        return [int(child.pid) for child in self._children]

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        if signum in STOP_SIGNALS:
            self._stopping = True
        for child in self._children:
            if child.exitcode is None and child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)

    def run(self) -> int:
        """Start the children, forward signals, wait for all; returns the exit code."""
        context = multiprocessing.get_context("spawn")
        previous = {signum: signal.signal(signum, self._forward) for signum in self._signals}
        try:
            for index in range(self.count):
                child = context.Process(
                    target=_child_main,
                    args=(self._target, (*self._args, index)),
                    name=f"{self.name}-{index}",
                )
                child.start()
                self._children.append(child)
                log.info(
                    "worker_started",
                    extra={"workers": self.name, "index": index, "pid": child.pid},
                )
            return self._wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _wait(self) -> int:
        code = 0
        running = {child.sentinel: child for child in self._children}
        while running:
            for sentinel in wait(list(running)):
                child = running.pop(sentinel)
                child.join()
                exit_code = child.exitcode if child.exitcode >= 0 else EXIT_KILLED
                log.log(
                    logging.INFO if exit_code == 0 and self._stopping else logging.ERROR,
                    "worker_exited",
                    extra={
                        "workers": self.name,
                        "worker": child.name,
                        "pid": child.pid,
                        "code": child.exitcode,
                        "stopping": self._stopping,
                    },
                )
                if exit_code and not code:
                    code = exit_code
                if not self._stopping:  # one went on its own: stop the rest
                    self._forward(signal.SIGTERM, None)
        return code


def _child_main(target: Callable[..., int], args: tuple[Any, ...]) -> None:
    # A spawned child is a new interpreter: Python's default signal handlers until the
    # service installs its own.
    raise SystemExit(target(*args))
