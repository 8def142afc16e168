"""``prgate processor`` / ``python -m processor``: settings, start-up checks, signals, run.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 after a fatal Kafka error (a restart
resumes from the committed offsets), 2 when the configuration or the topics are wrong.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from prgate import logs
from prgate.settings import add_arguments, load, redacted
from prgate.tracing import TracingError
from processor.loop import Processor
from processor.observability import ProcessorObservability
from processor.settings import ProcessorSettings
from processor.topics import TopicAdminError, TopicContractError, check_topics

log = logging.getLogger("processor")

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prgate processor",
        description="Run a processor: commands in, events, snapshots and results out, "
        "exactly once (one Kafka transaction per batch).",
    )
    add_arguments(parser, ProcessorSettings)
    return parser


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT ask the loop to stop after the batch in hand."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("event=stop_requested signal=%s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``prgate processor``; returns the exit code."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        settings = load(ProcessorSettings, args)
    except ValueError as exc:
        print(f"prgate processor: invalid settings: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(settings.log_level)  # key=value on a terminal, JSON lines otherwise
    log.info(
        "event=settings %s",
        " ".join(f"{k}={v!r}" for k, v in redacted(settings).items()),
    )
    try:
        # Before any Kafka client: asking for tracing without its packages fails fast.
        observability = ProcessorObservability.from_settings(settings)
    except TracingError as exc:
        print(f"prgate processor: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        # Refuses wrong cleanup policies and co-partitioned topics of different sizes: the
        # state restored from pull-requests partition N must be that of commands partition N.
        check_topics(settings)
    except (TopicContractError, TopicAdminError) as exc:
        log.error("event=topics_refused error=%s", str(exc).replace("\n", " "))
        print(f"prgate processor: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    stop = threading.Event()
    install_signal_handlers(stop)
    return Processor(settings, stop=stop, observability=observability).run()
