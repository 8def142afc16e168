"""``prgate processor`` / ``python -m processor``: settings, start-up checks, signals, run.

Exit codes (:data:`EXIT_CODES`), each with one log line that gives the reason: 0 after a clean
stop (SIGTERM/SIGINT), 1 after a fatal Kafka error such as a fenced producer, or an unexpected
one (a restart resumes from the committed offsets), 2 when the settings or the topics are
wrong, 3 when the metrics address cannot be bound, 4 when Kafka did not answer at start.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace

from confluent_kafka import KafkaException

from prgate.kafka.topic_checks import TopicContractError
from prgate.kafka.topics import TopicAdminError, check_topics
from prgate.observability import logs
from prgate.observability.metrics import MetricsListenError
from prgate.observability.tracing import TracingError
from prgate.settings import add_arguments, load, redacted
from prgate.signals import stop_on_signals
from prgate.workers import Supervisor, nth_address
from processor.loop import EXIT_FATAL, EXIT_OK, Processor
from processor.observability import ProcessorObservability
from processor.settings import ProcessorSettings

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
EXIT_LISTEN = 3
EXIT_KAFKA_UNREACHABLE = 4
EXIT_CODES = {
    EXIT_OK: "stopped on request",
    EXIT_FATAL: "fatal error; a restart resumes from the committed offsets",
    EXIT_CONFIG: "settings or topics refused",
    EXIT_LISTEN: "cannot serve metrics",
    EXIT_KAFKA_UNREACHABLE: "Kafka did not answer at start",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prgate processor",
        description="Run a processor: commands in, events, snapshots and results out, "
        "exactly once (one Kafka transaction per batch).",
    )
    add_arguments(parser, ProcessorSettings)
    return parser


def failed(exit_code: int, error: object = None) -> int:
    """Log the one line of a failed start or run; returns ``exit_code``.

    Without ``error`` (the run's own failure) the reason is in the run's
    ``processor_failed`` line before it.
    """
    fields: dict[str, object] = {"code": exit_code, "reason": EXIT_CODES[exit_code]}
    if error is not None:
        fields["error"] = str(error).replace("\n", " ")
    log.error("processor_exit", extra=fields)
    return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``prgate processor``; returns the exit code."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        settings = load(ProcessorSettings, args)
    except (SystemExit, ValueError) as exc:
        reason = exc.code if isinstance(exc, SystemExit) else exc
        print(f"prgate processor: invalid settings: {reason}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        logs.configure(settings.log_level)  # logfmt on a terminal, JSON lines otherwise
    except ValueError as exc:
        print(f"prgate processor: invalid settings: log level: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log.info("settings", extra={"settings": redacted(settings)})
    if settings.instances != 1:
        return supervise(settings)
    return run(settings)


def supervise(settings: ProcessorSettings) -> int:
    """``--instances N``: N processor processes (prgate/workers.py) until SIGTERM/SIGINT.

    Instance ``i`` is ``<instance_id>-<i>``: its own group member and ``transactional.id``,
    stable across restarts when ``instance_id`` is set. Exit codes are a single processor's:
    the first failing instance's.
    """
    if settings.instances < 1:
        return failed(EXIT_CONFIG, f"--instances must be at least 1, not {settings.instances}")
    try:
        [nth_address(settings.metrics_listen, i) for i in range(settings.instances)]
    except ValueError as exc:
        return failed(EXIT_CONFIG, f"--metrics-listen: {exc}")
    base = settings.resolved_instance_id
    code = Supervisor("processor", settings.instances, _instance_main, (settings, base)).run()
    if code:
        return failed(
            code if code in EXIT_CODES else EXIT_FATAL, "an instance failed (see its line)"
        )
    return EXIT_OK


def _instance_main(settings: ProcessorSettings, base: str, index: int) -> int:
    """One instance of ``--instances N`` (its own process)."""
    settings = replace(
        settings,
        instances=1,
        instance_id=f"{base}-{index}",
        metrics_listen=nth_address(settings.metrics_listen, index),
    )
    logs.configure(settings.log_level)
    log.info("instance_started", extra={"index": index, "instance_id": settings.instance_id})
    return run(settings)


def run(settings: ProcessorSettings) -> int:
    """One processor process with ``settings``, until stopped; returns the exit code."""
    try:
        # Before any Kafka client: asking for tracing without its packages fails fast.
        observability = ProcessorObservability.from_settings(settings)
    except TracingError as exc:
        return failed(EXIT_CONFIG, exc)
    try:
        # Refuses wrong cleanup policies and co-partitioned topics of different sizes: the
        # state restored from pull-requests partition N must be that of commands partition N.
        check_topics(settings)
    except TopicContractError as exc:
        return failed(EXIT_CONFIG, exc)
    except KafkaException as exc:  # librdkafka refused a client property when building one
        return failed(EXIT_CONFIG, f"Kafka client settings refused: {exc}")
    except TopicAdminError as exc:
        return failed(EXIT_KAFKA_UNREACHABLE, exc)
    try:
        observability.start()  # /metrics: a taken address stops us before any Kafka client
    except MetricsListenError as exc:
        return failed(EXIT_LISTEN, exc)
    stop = threading.Event()
    stop_on_signals(stop, log)
    code = Processor(settings, stop=stop, observability=observability).run()
    if code != EXIT_OK:
        return failed(code)
    return code
