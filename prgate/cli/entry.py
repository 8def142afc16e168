"""The ``prgate`` script's entry point (and ``python -m prgate.cli``'s).

Imports :mod:`prgate.cli.main` only inside the ``try``, so Ctrl-C at any moment ends the
command with exit code 130 and no traceback: also while the CLI's modules (grpc,
confluent-kafka, the generated messages) are still being imported, which takes a second or
more on a busy machine and is when an impatient Ctrl-C usually comes.

A reader of the output that goes away (``prgate decode TOPIC | head``, ``prgate pr watch ID |
grep -m1 MERGED``) ends the command with exit code 141, as SIGPIPE ends ``cat``, instead of a
BrokenPipeError traceback.
"""

from __future__ import annotations

import os
import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command ended by Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what shells report for `cat big | head`


def main() -> int:
    """Run ``prgate`` with ``sys.argv``; returns the exit code (130 after Ctrl-C, 141 when
    stdout's reader went away)."""
    try:
        from prgate.cli.main import main as run

        return run()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # What is still buffered for stdout would raise again when Python flushes it at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
