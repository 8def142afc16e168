"""The gateway's Prometheus metrics read from its components at scrape time.

Running totals become counters, current values gauges; the calls' own metrics
(:mod:`gateway.rpc_metrics`, :mod:`gateway.command_telemetry`) are counted where they happen.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.producer import CommandProducer
from gateway.read_model import ReadModel
from gateway.refusal_log import KafkaRefusalLog
from gateway.reply_router import ReplyRouter
from prgate.observability.metrics import GatewayMetrics


def gateway_metrics(
    router: ReplyRouter,
    read_model: ReadModel,
    producer: CommandProducer,
    refusal_log: KafkaRefusalLog | None = None,
    *,
    metrics: GatewayMetrics | None = None,
) -> GatewayMetrics:
    """The gateway's metrics (``metrics``, else new ones), with the values read from its
    components at scrape time: running totals as counters, current values as gauges."""
    metrics = metrics or GatewayMetrics()
    gauges = metrics.callbacks
    gauges.gauge(
        "prgate_gateway_waiting_calls",
        "Calls and WatchCommand streams waiting for a result",
        router.waiting_count,
    )
    gauges.gauge(
        "prgate_gateway_read_model_caught_up",
        "1 once the read model reached the end offsets seen at start",
        lambda: float(read_model.caught_up()),
    )
    gauges.gauge(
        "prgate_gateway_replies_caught_up",
        "1 once the reply router reached the end offsets seen at start",
        lambda: float(router.caught_up()),
    )
    gauges.gauge(
        "prgate_gateway_kafka_producer_healthy",
        "0 while the broker is unreachable for the command producer",
        lambda: float(producer.healthy()),
    )
    if refusal_log is not None:
        gauges.counter(
            "prgate_gateway_refusals_recorded",
            "Synchronous refusals written to the command-refusals topic (acknowledged)",
            lambda: float(refusal_log.recorded),
        )
        gauges.counter(
            "prgate_gateway_refusals_dropped",
            "Synchronous refusals not written (queue full, delivery failed): best effort",
            lambda: float(refusal_log.dropped),
        )
    for name, documentation, read in _component_metrics(read_model, router):
        if name.endswith("_total"):
            gauges.counter(name.removesuffix("_total"), documentation, read)
        else:
            gauges.gauge(name, documentation, read)
    return metrics


def _component_metrics(
    read_model: ReadModel, router: ReplyRouter
) -> list[tuple[str, str, Callable[[], float]]]:
    """(name, help, read) of the read model's and the reply router's numbers (their
    ``stats()``); a name ending ``_total`` is a running total."""
    model = read_model.stats
    replies = router.stats
    return [
        ("prgate_gateway_read_model_pull_requests", "Pull requests held by the read model",
         lambda: model()["entities"]),
        ("prgate_gateway_read_model_watchers", "Open watches of the read model",
         lambda: model()["watchers"]),
        ("prgate_gateway_read_model_records_total", "Snapshot records the read model consumed",
         lambda: model()["records"]),
        ("prgate_gateway_read_model_updates_total", "Pull request versions the read model applied",
         lambda: model()["updates"]),
        ("prgate_gateway_read_model_garbage_records_total",
         "Snapshot records the read model could not decode (skipped)",
         lambda: model()["garbage"]),
        ("prgate_gateway_read_model_tombstones_total", "Tombstones the read model applied",
         lambda: model()["tombstones"]),
        ("prgate_gateway_read_model_folded_results_total",
         "Pull request versions folded from command results ahead of their snapshot",
         lambda: model()["folded"]),
        ("prgate_gateway_read_model_stale_records_total",
         "Snapshot records older than the version held (ignored)",
         lambda: model()["stale"]),
        ("prgate_gateway_read_model_version_waits_total",
         "Calls that waited for a pull request version (read-your-writes, consistency tokens)",
         lambda: model()["version_waits"]),
        ("prgate_gateway_read_model_version_waiters",
         "Calls waiting for a pull request version now (each ends by its deadline)",
         lambda: model()["version_waiters"]),
        ("prgate_gateway_read_model_version_waits_timed_out_total",
         "Version waits the read model did not reach in time",
         lambda: model()["version_waits_timed_out"]),
        ("prgate_gateway_read_model_consumer_errors_total",
         "Errors the read model's consumer reported",
         lambda: model()["errors"]),
        ("prgate_gateway_result_cache_entries", "Command results held in the reply cache",
         lambda: replies()["cached"]),
        ("prgate_gateway_results_total", "Command results the reply router consumed",
         lambda: replies()["results"]),
        ("prgate_gateway_results_garbage_records_total",
         "Result records the reply router could not decode (skipped)",
         lambda: replies()["garbage"]),
        ("prgate_gateway_result_cache_evictions_total",
         "Results evicted from the reply cache (size or age)",
         lambda: replies()["evicted"]),
        ("prgate_gateway_results_consumer_errors_total",
         "Errors the reply router's consumer reported",
         lambda: replies()["errors"]),
    ]  # fmt: skip
