"""The gateway process's exit codes, and the one log line a failure to run gets.

:func:`gateway.server.main` returns one of :data:`EXIT_CODES`; with ``--workers N`` the
supervisor (:mod:`gateway.supervision`) returns its own or the first failing worker's.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

EXIT_OK = 0  # stopped by SIGTERM/SIGINT after draining
EXIT_FAILED = 1  # an unexpected error (a bug): the log line names it
EXIT_CONFIG = 2  # settings, TLS files, token file, tracing or Kafka client properties refused
EXIT_LISTEN = 3  # the gRPC or the metrics address cannot be bound (taken, not local)
EXIT_CODES = {
    EXIT_OK: "stopped on request",
    EXIT_FAILED: "failed unexpectedly",
    EXIT_CONFIG: "configuration refused",
    EXIT_LISTEN: "cannot listen",
}


class StartupError(Exception):
    """The gateway cannot start; ``exit_code`` is one of :data:`EXIT_CODES`."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def failed(exit_code: int, error: object) -> int:
    """Log the ``gateway_exit`` line (code, reason, the error on one line); return the code."""
    log.error(
        "gateway_exit",
        extra={
            "code": exit_code,
            "reason": EXIT_CODES[exit_code],
            "error": str(error).replace("\n", " "),
        },
    )
    return exit_code
