"""The processor's /metrics over HTTP, after real commands on the test's broker.

First ``python -m processor`` (the whole start-up path, PRGATE_METRICS_LISTEN from the
environment) handles a success, a rejection (whose reply-to, ``__consumer_offsets``, is refused),
a redelivered command and an undecodable record;
then a second processor of the same group starts on the committed offsets and must report no
lag although it has consumed nothing (librdkafka has no position before the first record).
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.ids import bound_id
from helpers.kafka import free_port
from integration.processor_commands import CommandProducer, approve, command_headers, open_pr
from integration.processor_helpers import processor_settings, wait_results
from integration.processor_runners import ProcessorProcess, ThreadedProcessor
from prometheus_client.parser import text_string_to_metric_families

from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
README = Path(__file__).resolve().parents[2] / "README.md"


def scrape(port: int) -> Samples:
    """Every sample of the /metrics page, by name and labels; empty while nothing serves."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return {}
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def family(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {
        dict(labels)[label]: value
        for (sample, labels), value in samples.items()
        if sample == name and label in dict(labels)
    }


def base_name(sample: str) -> str:
    """The metric a sample belongs to (README lists counters with ``_total``)."""
    for suffix in ("_bucket", "_count", "_sum", "_created", "_total"):
        sample = sample.removesuffix(suffix)
    return sample


def wait_metrics(port: int, ok: Callable[[Samples], bool], what: str, timeout: float) -> Samples:
    """Scrape until ``ok`` holds (counters move right after the commit the results show)."""
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    while time.monotonic() < deadline:
        samples = scrape(port)
        if samples and ok(samples):
            return samples
        time.sleep(0.2)
    shown = "\n".join(f"{k[0]}{dict(k[1])} {v}" for k, v in sorted(samples.items(), key=str))
    raise AssertionError(f"metrics never showed {what}:\n{shown[:5000]}")


def test_processor_metrics_after_real_commands(
    kafka_settings: KafkaSettings,
    ensured_topics: Topics,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = open_pr("pr-m1", author="alice")
    self_approval = approve("pr-m1", "alice")  # the author may not approve: rejected
    producer = CommandProducer(kafka_settings)
    producer.send(opened)
    # Answered on the results topic: Kafka's internal topics are never a reply-to.
    producer.raw(
        b"pr-m1",
        self_approval.SerializeToString(),
        command_headers(self_approval.command_id, "__consumer_offsets"),
    )
    producer.send(opened)  # redelivered: answered again, no new events
    junk = bound_id("junk-1", "pr-m1")
    producer.raw(b"pr-m1", b"\xff not a command", command_headers(junk, ensured_topics.results))
    producer.close()

    settings = processor_settings(kafka_settings)
    first_port = free_port()
    monkeypatch.setenv("PRGATE_METRICS_LISTEN", f"127.0.0.1:{first_port}")
    process = ProcessorProcess(settings, tmp_path, "processor-metrics")
    try:
        wait_results(
            kafka_settings, {opened.command_id, self_approval.command_id, junk}, timeout=60
        )
        commands = "prgate_processor_commands_total"
        samples = wait_metrics(
            first_port,
            lambda s: (
                get(s, commands, command="unknown", outcome="dead_letter") == 1
                and get(s, commands, command="OpenPullRequest", outcome="duplicate") == 1
            ),
            "all four commands",
            timeout=30,
        )
        assert get(samples, commands, command="OpenPullRequest", outcome="succeeded") == 1
        assert get(samples, commands, command="ApprovePullRequest", outcome="rejected") == 1
        # Pre-created children: every command type and outcome is exported from the start.
        assert get(samples, commands, command="MergePullRequest", outcome="failed") == 0
        assert get(samples, "prgate_processor_dlq_records_total") == 1
        refused = "prgate_processor_reply_to_refused_total"
        assert get(samples, refused, reason="internal_topic") == 1
        assert get(samples, refused, reason="not_allowed") == 0  # pre-created, like the next
        assert (
            get(samples, "prgate_processor_records_refused_total", error="MSG_SIZE_TOO_LARGE") == 0
        )
        committed = get(samples, "prgate_processor_transactions_total", outcome="committed")
        assert committed is not None and committed >= 1
        assert get(samples, "prgate_processor_transactions_total", outcome="aborted") == 0
        batches = get(samples, "prgate_processor_batch_records_count")
        assert batches is not None and batches == committed
        assert get(samples, "prgate_processor_batch_records_sum") == 4
        assert get(samples, "prgate_processor_transaction_seconds_count") == committed
        # Gauges are refreshed by the loop about once a second.
        samples = wait_metrics(
            first_port,
            lambda s: (
                len(family(s, "prgate_processor_consumer_lag", "partition")) == 3
                and get(s, "prgate_processor_pull_requests") == 1
            ),
            "lag of three partitions and one pull request",
            timeout=15,
        )
        lag = family(samples, "prgate_processor_consumer_lag", "partition")
        assert set(lag) == {"0", "1", "2"} and set(lag.values()) == {0.0}, lag
        assert get(samples, "prgate_processor_assigned_partitions") == 3
        # Every metric on the page is in the README's list.
        listed = set(re.findall(r"`(prgate_\w+)`", README.read_text()))
        names = {base_name(name) for name, _ in samples if name.startswith("prgate_")}
        undocumented = {n for n in names if not {n, f"{n}_total"} & listed}
        assert not undocumented, f"README Metrics misses {sorted(undocumented)}"
        assert process.terminate() == 0
    finally:
        process.close()

    # A restarted member: committed offsets at the end, nothing left to consume.
    second_port = free_port()
    with ThreadedProcessor(
        processor_settings(kafka_settings, metrics_listen=f"127.0.0.1:{second_port}")
    ):
        samples = wait_metrics(
            second_port,
            lambda s: (
                get(s, "prgate_processor_assigned_partitions") == 3
                and len(family(s, "prgate_processor_consumer_lag", "partition")) == 3
            ),
            "three assigned partitions with their lag",
            timeout=60,
        )
        lag = family(samples, "prgate_processor_consumer_lag", "partition")
        assert set(lag.values()) == {0.0}, lag
        assert get(samples, "prgate_processor_pull_requests") == 1  # restored from Kafka
        assert get(samples, "prgate_processor_transactions_total", outcome="committed") == 0
