"""The ``prgate`` script's entry point (and ``python -m prgate.cli``'s).

Imports :mod:`prgate.cli.main` only inside the ``try``, so Ctrl-C at any moment ends the
command with exit code 130 and no traceback: also while the CLI's modules (grpc,
confluent-kafka, the generated messages) are still being imported, which takes a second or
more on a busy machine and is when an impatient Ctrl-C usually comes.
"""

from __future__ import annotations

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command ended by Ctrl-C


def main() -> int:
    """Run ``prgate`` with ``sys.argv``; returns the exit code (130 after Ctrl-C)."""
    try:
        from prgate.cli.main import main as run

        return run()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
