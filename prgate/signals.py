"""Stopping a service that runs on a thread: SIGTERM and SIGINT set its stop event."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType


def stop_on_signals(stop: threading.Event, log: logging.Logger) -> None:
    """Install handlers (main thread only) so SIGTERM and SIGINT log ``stop_requested`` with
    the signal's name on ``log`` and set ``stop``; the service ends its current step first."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("stop_requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
