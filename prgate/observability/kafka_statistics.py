"""librdkafka's statistics as Prometheus metrics: consumer lag, broker round trips, errors.

Every client the project creates gets ``statistics.interval.ms`` and a ``stats_cb`` from
:meth:`prgate.kafka.settings.KafkaSettings.client_config` (``PRGATE_KAFKA_PROPERTIES`` may set
another interval, 0 turns them off). librdkafka hands the callback one JSON document per
interval, delivered from the client's ``poll()``; the callback only keeps the latest string
of each client and the scrape parses it, so a process nobody scrapes pays nearly nothing.

What is exported (labels: ``client`` is librdkafka's handle name, e.g. ``rdkafka#consumer-3``,
``broker`` the broker's node id); the fields are librdkafka's STATISTICS.md ones:

=============================================== ======= ==========================================
``prgate_kafka_consumer_lag``                    gauge   per assigned partition, see below
``prgate_kafka_broker_rtt_seconds``              gauge   ``rtt.avg`` (mean of the last interval)
``prgate_kafka_broker_request_timeouts_total``   counter ``req_timeouts``
``prgate_kafka_broker_transmit_errors_total``    counter ``txerrs``
``prgate_kafka_broker_receive_errors_total``     counter ``rxerrs``
``prgate_kafka_broker_retries_total``            counter ``txretries``
``prgate_kafka_produced_messages_total``         counter ``txmsgs`` (producers)
``prgate_kafka_consumed_messages_total``         counter ``rxmsgs`` (consumers)
``prgate_kafka_producer_queue_messages``         gauge   ``msg_cnt``: not yet delivered
``prgate_kafka_producer_epoch_bumps_total``      counter ``eos.epoch_cnt``: idempotent/
                                                         transactional producer epoch bumps
``prgate_kafka_producer_transaction_state``      gauge   1 for ``eos.txn_state`` (``state``)
=============================================== ======= ==========================================

The consumer lag is the partition's end (``ls_offset``, the last stable offset, else
``hi_offset``) minus the application's position (``app_offset``, else ``committed_offset``):
librdkafka's own ``consumer_lag`` counts from the committed offset it knows, which a consumer
whose offsets are committed through a producer's transaction (the processor) never learns.
Partitions with no position yet are left out.

A client that stopped reporting (closed) is dropped after :data:`FORGET_AFTER_S`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

STATISTICS_INTERVAL_MS = 5000
FORGET_AFTER_S = 60.0

_BROKER_COUNTERS = (
    ("request_timeouts", "req_timeouts", "Requests that timed out"),
    ("transmit_errors", "txerrs", "Errors sending requests"),
    ("receive_errors", "rxerrs", "Errors receiving responses"),
    ("retries", "txretries", "Requests retried"),
)


class KafkaStatistics(Collector):
    """The latest statistics of every client of the process, exported at scrape time.

    :meth:`record` is the ``stats_cb`` (any thread); :meth:`collect` is the scrape.
    """

    def __init__(self, forget_after_s: float = FORGET_AFTER_S) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[float, str]] = {}
        self._forget_after_s = forget_after_s

    def record(self, statistics: str) -> None:
        """Keep one client's statistics document (the JSON string librdkafka emitted)."""
        # The handle name is the document's first field; a full parse waits for a scrape.
        start = statistics.find('"name":')
        name = statistics[start + 7 :].split('"', 2)[1] if start >= 0 else "unknown"
        with self._lock:
            self._latest[name] = (time.monotonic(), statistics)

    def _documents(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            self._latest = {
                k: v for k, v in self._latest.items() if now - v[0] < self._forget_after_s
            }
            raw = [text for _at, text in self._latest.values()]
        documents = []
        for text in raw:
            try:
                documents.append(json.loads(text))
            except ValueError:
                log.warning("kafka_statistics_unreadable", extra={"length": len(text)})
        return documents

    def collect(self) -> Iterable[Any]:
        documents = self._documents()
        lag = GaugeMetricFamily(
            "prgate_kafka_consumer_lag",
            "Messages behind the partition's high watermark, per assigned partition (librdkafka"
            " statistics consumer_lag)",
            labels=["client", "topic", "partition"],
        )
        rtt = GaugeMetricFamily(
            "prgate_kafka_broker_rtt_seconds",
            "Mean request round trip to the broker over the last statistics interval",
            labels=["client", "broker"],
        )
        broker_counters = {
            field: CounterMetricFamily(
                f"prgate_kafka_broker_{name}",
                f"{text}, per broker (librdkafka statistics {field})",
                labels=["client", "broker"],
            )
            for name, field, text in _BROKER_COUNTERS
        }
        produced = CounterMetricFamily(
            "prgate_kafka_produced_messages",
            "Messages sent to brokers by the producer",
            labels=["client"],
        )
        consumed = CounterMetricFamily(
            "prgate_kafka_consumed_messages",
            "Messages received from brokers by the consumer",
            labels=["client"],
        )
        queued = GaugeMetricFamily(
            "prgate_kafka_producer_queue_messages",
            "Messages produced but not yet delivered (librdkafka statistics msg_cnt)",
            labels=["client"],
        )
        epochs = CounterMetricFamily(
            "prgate_kafka_producer_epoch_bumps",
            "Producer epoch bumps of an idempotent or transactional producer (after errors)",
            labels=["client"],
        )
        txn_state = GaugeMetricFamily(
            "prgate_kafka_producer_transaction_state",
            "1 for the transactional producer's current state (librdkafka eos.txn_state)",
            labels=["client", "state"],
        )
        for doc in documents:
            client = str(doc.get("name", "unknown"))
            kind = doc.get("type")
            for broker in (doc.get("brokers") or {}).values():
                node = broker.get("nodeid", -1)
                if not isinstance(node, int) or node < 0:
                    continue  # bootstrap and coordinator entries: no node of their own
                labels = [client, str(node)]
                rtt.add_metric(labels, float((broker.get("rtt") or {}).get("avg", 0)) / 1e6)
                for field, family in broker_counters.items():
                    family.add_metric(labels, float(broker.get(field, 0)))
            if kind == "producer":
                produced.add_metric([client], float(doc.get("txmsgs", 0)))
                queued.add_metric([client], float(doc.get("msg_cnt", 0)))
                eos = doc.get("eos") or {}
                if eos:
                    epochs.add_metric([client], float(eos.get("epoch_cnt", 0)))
                    if eos.get("txn_state"):
                        txn_state.add_metric([client, str(eos["txn_state"])], 1.0)
            elif kind == "consumer":
                consumed.add_metric([client], float(doc.get("rxmsgs", 0)))
                for topic, data in (doc.get("topics") or {}).items():
                    for partition, part in (data.get("partitions") or {}).items():
                        behind = _lag(part)
                        if partition != "-1" and behind is not None:
                            lag.add_metric([client, topic, partition], float(behind))
        yield lag
        yield rtt
        yield from broker_counters.values()
        yield from (produced, consumed, queued, epochs, txn_state)


def _lag(partition: dict[str, Any]) -> int | None:
    """End minus position of one partition's statistics (module docstring); None: unknown."""
    end = next(
        (o for o in (partition.get("ls_offset"), partition.get("hi_offset")) if _valid(o)), None
    )
    position = next(
        (o for o in (partition.get("app_offset"), partition.get("committed_offset")) if _valid(o)),
        None,
    )
    if not isinstance(end, int) or not isinstance(position, int):
        return None
    return max(0, end - position)


def _valid(offset: object) -> bool:
    return isinstance(offset, int) and offset >= 0


KAFKA_STATISTICS = KafkaStatistics()
