"""Prometheus metrics of the gateway, the processor and the archive, served over HTTP.

Each process owns one registry (:func:`new_registry`): the standard ``process_*`` and
``python_*`` collectors, ``prgate_build_info``, librdkafka's statistics
(:mod:`prgate.observability.kafka_statistics`) and the process's own metrics. Counters and
histograms are updated on the hot path (cheap label lookups only); values that already live
elsewhere (waiting calls, read-model counts, consumer lag) are read at scrape time through
:class:`CallbackCollector`, so nothing has to keep them in sync. Running totals are counters
(``_total``), current values gauges, as Prometheus' naming conventions ask.
"""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from prgate.observability.kafka_statistics import KAFKA_STATISTICS

log = logging.getLogger(__name__)

# Latency buckets for a command's path: sub-millisecond to the default 10 s wait.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


def version() -> str:
    """prgate's installed version (the package metadata), ``unknown`` when not installed."""
    try:
        return metadata.version("prgate")
    except metadata.PackageNotFoundError:
        return "unknown"


def new_registry() -> CollectorRegistry:
    """A process's registry: ``process_*`` (CPU, memory, file descriptors, start time),
    ``python_info``, ``python_gc_*``, ``prgate_build_info`` and librdkafka's statistics."""
    import confluent_kafka  # here: admission's telemetry imports this module without Kafka
    import grpc

    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, KAFKA_STATISTICS):
        registry.register(collector)
    Info(
        "prgate_build",
        "prgate's version and the versions of the libraries on its wire paths (value 1)",
        registry=registry,
    ).info(
        {
            "version": version(),
            "python_version": platform.python_version(),
            "grpc_version": grpc.__version__,
            "confluent_kafka_version": confluent_kafka.version()[0],
            "librdkafka_version": confluent_kafka.libversion()[0],
        }
    )
    return registry


class CallbackCollector(Collector):
    """Gauges and counters whose values are read from callables when Prometheus scrapes.

    A counter's callable returns a running total that only grows during the process's life
    (it is exported with the ``_total`` suffix); a gauge's returns a current value.
    """

    def __init__(self) -> None:
        self._gauges: list[tuple[str, str, Callable[[], float], bool]] = []
        self._families: list[tuple[str, str, str, Callable[[], Mapping[str, float]]]] = []

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._gauges.append((name, documentation, read, False))

    def counter(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A counter named ``name`` (without ``_total``; the exposition adds it)."""
        self._gauges.append((name, documentation, read, True))

    def labelled(
        self, name: str, documentation: str, label: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        """One gauge per key of the mapping ``read`` returns, labelled ``label=key``."""
        self._families.append((name, documentation, label, read))

    def collect(self) -> Iterable[Any]:
        for name, documentation, read, total in self._gauges:
            try:
                value = float(read())
            except Exception:  # a scrape must never take the process down
                log.exception("metric_read_failed", extra={"metric": name})
                continue
            if total:
                yield CounterMetricFamily(name, documentation, value=value)
            else:
                yield GaugeMetricFamily(name, documentation, value=value)
        for name, documentation, label, read_all in self._families:
            family = GaugeMetricFamily(name, documentation, labels=[label])
            try:
                for key, value in read_all().items():
                    family.add_metric([key], float(value))
            except Exception:
                log.exception("metric_read_failed", extra={"metric": name})
                continue
            yield family


class GatewayMetrics:
    """What the gateway counts: commands by type and outcome, and how long they took."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or new_registry()
        self.commands = Counter(
            "prgate_gateway_commands",
            "Command calls by command type and outcome (accepted, succeeded, rejected, or the"
            " gRPC code of a refusal)",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.accept_seconds = Histogram(
            "prgate_gateway_accept_seconds",
            "From the call's arrival until the broker acknowledged the command",
            ["command"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.round_trip_seconds = Histogram(
            "prgate_gateway_round_trip_seconds",
            "From the call's arrival until the processor's result (COMPLETED mode)",
            ["command"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.callbacks = CallbackCollector()
        self.registry.register(self.callbacks)


# What became of a command in the processor (processor.handler.Outcome values).
PROCESSOR_OUTCOMES = ("succeeded", "rejected", "duplicate", "dead_letter", "failed")


class ProcessorMetrics:
    """What the processor counts: commands, transactions, dead letters, lag.

    ``command_types`` are pre-created as ``command`` labels with every outcome,
    ``reply_refusals`` as the ``reason`` labels of the reply-to fallbacks, ``record_errors`` as
    the ``error`` labels of the records Kafka refused.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        command_types: Iterable[str] = (),
        *,
        reply_refusals: Iterable[str] = (),
        record_errors: Iterable[str] = (),
    ) -> None:
        self.registry = registry or new_registry()
        self.commands = Counter(
            "prgate_processor_commands",
            "Commands in committed transactions by command type and outcome (succeeded,"
            " rejected, duplicate, dead_letter, failed)",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.transactions = Counter(
            "prgate_processor_transactions",
            "Kafka transactions by outcome (committed, aborted)",
            ["outcome"],
            registry=self.registry,
        )
        self.dlq_records = Counter(
            "prgate_processor_dlq_records",
            "Records sent to the dead-letter topic (in committed transactions)",
            registry=self.registry,
        )
        self.batch_records = Histogram(
            "prgate_processor_batch_records",
            "Commands per transaction",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=self.registry,
        )
        self.transaction_seconds = Histogram(
            "prgate_processor_transaction_seconds",
            "From a batch's first command until its transaction committed",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.reply_refused = Counter(
            "prgate_processor_reply_to_refused",
            "Commands answered on the results topic instead of their reply-to header's topic,"
            " by reason (in committed transactions)",
            ["reason"],
            registry=self.registry,
        )
        self.records_refused = Counter(
            "prgate_processor_records_refused",
            "Records Kafka refused to write (too large, not authorized, ...) whose command was"
            " then failed, by error (in committed transactions)",
            ["error"],
            registry=self.registry,
        )
        for reason in reply_refusals:
            self.reply_refused.labels(reason)
        for error in record_errors:
            self.records_refused.labels(error)
        self.callbacks = CallbackCollector()
        self.registry.register(self.callbacks)
        # Label children resolved once: the loop then pays one dict lookup and one add per
        # command. Creating them up front also exports zeros, so rate() works from the start.
        self.committed = self.transactions.labels("committed")
        self.aborted = self.transactions.labels("aborted")
        self._command_children: dict[tuple[str, str], Any] = {}
        for command in command_types:
            for outcome in PROCESSOR_OUTCOMES:
                self.command(command, outcome)

    def command(self, command: str, outcome: str) -> Any:
        """The counter child of one command type and outcome (created on first use)."""
        key = (command, outcome)
        child = self._command_children.get(key)
        if child is None:
            child = self._command_children[key] = self.commands.labels(command, outcome)
        return child


class MetricsListenError(Exception):
    """``/metrics`` cannot be served on the address (taken, not local, not host:port)."""


def serve(listen: str, registry: CollectorRegistry) -> Any:
    """Serve ``/metrics`` on ``host:port`` (empty: do nothing). Returns the HTTP server.

    Raises :class:`MetricsListenError` with the reason when the address cannot be bound: the
    processes turn it into one log line and their "cannot listen" exit code.
    """
    if not listen:
        return None
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise MetricsListenError(f"--metrics-listen {listen!r} is not host:port")
    try:
        server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    except OSError as exc:  # socket.gaierror too
        raise MetricsListenError(
            f"cannot serve metrics on {listen} (--metrics-listen): {exc.strerror or exc}"
        ) from None
    log.info("metrics_serving", extra={"listen": listen})
    return server


def close(server: Any) -> None:
    """Stop a server :func:`serve` returned (None: nothing to do)."""
    if server is not None:
        server.shutdown()
        server.server_close()
