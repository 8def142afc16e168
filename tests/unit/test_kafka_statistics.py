"""librdkafka's statistics document turned into metrics (pure logic; the real thing is scraped
from real processes in tests/e2e/test_observability.py)."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from prgate.observability.kafka_statistics import KafkaStatistics

CONSUMER = {
    "name": "prgate-processor#consumer-2",
    "type": "consumer",
    "rxmsgs": 7,
    "brokers": {
        "127.0.0.1:9092/bootstrap": {"nodeid": -1, "rtt": {"avg": 0}, "txerrs": 9},
        "127.0.0.1:9092/1": {
            "nodeid": 1,
            "rtt": {"avg": 1500},
            "txerrs": 2,
            "rxerrs": 0,
            "req_timeouts": 1,
            "txretries": 3,
        },
        "GroupCoordinator": {"nodeid": -1, "rtt": {"avg": 0}},
    },
    "topics": {
        "prgate.commands": {
            "partitions": {
                "0": {"ls_offset": 10, "hi_offset": 10, "app_offset": 4, "committed_offset": 2},
                "1": {"ls_offset": 5, "hi_offset": 5, "app_offset": -1001, "committed_offset": 5},
                "2": {"ls_offset": 0, "app_offset": -1001, "committed_offset": -1001},
                "-1": {"ls_offset": -1, "app_offset": -1001, "committed_offset": -1001},
            }
        }
    },
}
PRODUCER = {
    "name": "prgate-processor-p0#producer-3",
    "type": "producer",
    "txmsgs": 12,
    "msg_cnt": 2,
    "brokers": {},
    "eos": {"txn_state": "InTransaction", "epoch_cnt": 1},
}


def scraped(statistics: KafkaStatistics) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry()
    registry.register(statistics)
    text = generate_latest(registry).decode()
    return {
        sample.name: [(s.labels, s.value) for s in family.samples if s.name == sample.name]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_lag_rtt_errors_and_transaction_state_per_client() -> None:
    statistics = KafkaStatistics()
    statistics.record(json.dumps(CONSUMER))
    statistics.record(json.dumps(PRODUCER))
    found = scraped(statistics)
    client = "prgate-processor#consumer-2"
    # Position from the application's offset, else the committed one; none: left out.
    assert sorted(found["prgate_kafka_consumer_lag"], key=lambda s: s[0]["partition"]) == [
        ({"client": client, "topic": "prgate.commands", "partition": "0"}, 6.0),
        ({"client": client, "topic": "prgate.commands", "partition": "1"}, 0.0),
    ]
    # Only real broker nodes (not bootstrap or coordinator entries); microseconds → seconds.
    broker = {"client": client, "broker": "1"}
    assert found["prgate_kafka_broker_rtt_seconds"] == [(broker, 0.0015)]
    assert found["prgate_kafka_broker_transmit_errors_total"] == [(broker, 2.0)]
    assert found["prgate_kafka_broker_request_timeouts_total"] == [(broker, 1.0)]
    assert found["prgate_kafka_broker_retries_total"] == [(broker, 3.0)]
    assert found["prgate_kafka_consumed_messages_total"] == [({"client": client}, 7.0)]
    producer = {"client": "prgate-processor-p0#producer-3"}
    assert found["prgate_kafka_produced_messages_total"] == [(producer, 12.0)]
    assert found["prgate_kafka_producer_queue_messages"] == [(producer, 2.0)]
    assert found["prgate_kafka_producer_epoch_bumps_total"] == [(producer, 1.0)]
    assert found["prgate_kafka_producer_transaction_state"] == [
        ({**producer, "state": "InTransaction"}, 1.0)
    ]


def test_the_latest_document_wins_and_a_silent_client_is_forgotten() -> None:
    statistics = KafkaStatistics(forget_after_s=0.0)
    statistics.record(json.dumps(PRODUCER))
    assert "prgate_kafka_produced_messages_total" not in scraped(statistics)

    statistics = KafkaStatistics()
    statistics.record(json.dumps(PRODUCER))
    statistics.record(json.dumps({**PRODUCER, "txmsgs": 20}))
    statistics.record("not json")  # never from librdkafka; still must not break a scrape
    found = scraped(statistics)
    assert found["prgate_kafka_produced_messages_total"] == [
        ({"client": "prgate-processor-p0#producer-3"}, 20.0)
    ]
