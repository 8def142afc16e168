"""Prometheus metrics of the gateway and the processor, served over HTTP.

Each process owns one registry. Counters and histograms are updated on the hot path (cheap
label lookups only); values that already live elsewhere (waiting calls, read-model counts,
consumer lag) are read at scrape time through :class:`CallbackCollector`, so nothing has to
keep them in sync.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("prgate.metrics")

# Latency buckets for a command's path: sub-millisecond to the default 10 s wait.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class CallbackCollector(Collector):
    """Gauges whose values are read from callables when Prometheus scrapes."""

    def __init__(self) -> None:
        self._gauges: list[tuple[str, str, Callable[[], float]]] = []
        self._families: list[tuple[str, str, str, Callable[[], Mapping[str, float]]]] = []

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self._gauges.append((name, documentation, read))

    def labelled(
        self, name: str, documentation: str, label: str, read: Callable[[], Mapping[str, float]]
    ) -> None:
        """One gauge per key of the mapping ``read`` returns, labelled ``label=key``."""
        self._families.append((name, documentation, label, read))

    def collect(self) -> Iterable[Any]:
        for name, documentation, read in self._gauges:
            try:
                value = float(read())
            except Exception:  # a scrape must never take the process down
                log.exception("event=metric_read_failed metric=%s", name)
                continue
            yield GaugeMetricFamily(name, documentation, value=value)
        for name, documentation, label, read_all in self._families:
            family = GaugeMetricFamily(name, documentation, labels=[label])
            try:
                for key, value in read_all().items():
                    family.add_metric([key], float(value))
            except Exception:
                log.exception("event=metric_read_failed metric=%s", name)
                continue
            yield family


class GatewayMetrics:
    """What the gateway counts: commands by type and outcome, and how long they took."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
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

    ``command_types`` are pre-created as ``command`` labels with every outcome.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, command_types: Iterable[str] = ()
    ) -> None:
        self.registry = registry or CollectorRegistry()
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


def serve(listen: str, registry: CollectorRegistry) -> Any:
    """Serve ``/metrics`` on ``host:port`` (empty: do nothing). Returns the HTTP server."""
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    log.info("event=metrics_serving listen=%s", listen)
    return server


def close(server: Any) -> None:
    """Stop a server :func:`serve` returned (None: nothing to do)."""
    if server is not None:
        server.shutdown()
        server.server_close()
