"""Restore: how fast the gateway's read model and a processor rebuild N pull requests.

The compacted topic (of its own topic prefix) is filled quickly by a plain idempotent producer
with valid PullRequest snapshots of realistic size (the sample life's merged snapshot under N
distinct ids), then both restore paths run on it, with the code and configs the services use:
:func:`processor.restore.restore_partitions` over the processor's ``restore_config`` for all
partitions (one processor owning everything), and :class:`gateway.read_model.ReadModel` until
``caught_up``. Both run in the benchmark's process while nothing else is loaded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from bench import payloads
from gateway.read_model import ReadModel, ReadModelState
from prgate.kafka import codec
from prgate.kafka.contract import TYPE_PULL_REQUEST
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics
from prgate.state import SnapshotStore, StoreIdentity, StoreResources
from prgate.v1.pull_request_pb2 import PullRequest
from processor.restore import restore_partitions
from processor.settings import ProcessorSettings
from processor.state_store import MemoryPartition, PartitionState, StoredPartition

log = logging.getLogger(__name__)


def _template() -> bytes:
    """The merged sample snapshot without its id (field 1 is prepended per record)."""
    snapshot = PullRequest.FromString(payloads.snapshot_for("x"))
    snapshot.ClearField("pull_request_id")
    return snapshot.SerializeToString()


def fill(kafka: KafkaSettings, count: int, timeout_s: float = 600.0) -> dict[str, Any]:
    """Write ``count`` snapshots to the pull-requests topic; returns ids and the fill rate."""
    ensure_topics(kafka)
    topic = kafka.topics.pull_requests
    producer = Producer(
        kafka.client_config(
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 500_000,
            }
        )
    )
    rest = _template()
    headers = codec.record_headers(TYPE_PULL_REQUEST)
    started = time.perf_counter()
    for i in range(count):
        # Ids the latency steps can name (pr-00000000 ...), in random order over partitions.
        key = f"pr-{i:08d}".encode()
        # Field 1 (pull_request_id), length-delimited, then the rest: a valid PullRequest.
        value = b"\x0a" + bytes([len(key)]) + key + rest
        while True:
            try:
                producer.produce(topic, key=key, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(timeout_s)
    seconds = time.perf_counter() - started
    if remaining:
        raise RuntimeError(f"restore fill: {remaining} snapshots not delivered")
    return {"count": count, "fill_seconds": round(seconds, 3), "fill_rate": round(count / seconds)}


def restore_processor(kafka: KafkaSettings, expected: int, timeout_s: float) -> dict[str, Any]:
    """A processor's restore of every partition, as on assignment."""
    settings = ProcessorSettings(
        bootstrap_servers=kafka.bootstrap_servers,
        topic_prefix=kafka.topic_prefix,
        partitions=kafka.partitions,
    )
    consumer = Consumer(settings.restore_config())
    try:
        consumer.list_topics(kafka.topics.pull_requests, 10.0)  # connect, as run() does first
        started, cpu = time.perf_counter(), time.process_time()
        states: dict[int, PartitionState] = {p: MemoryPartition() for p in range(kafka.partitions)}
        restore_partitions(consumer, kafka.topics.pull_requests, states, timeout_s)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        consumer.close()
    restored = sum(s.count() for s in states.values())
    return _rates("processor", restored, expected, seconds, cpu)


def bare_consumer(kafka: KafkaSettings, expected: int, timeout_s: float) -> dict[str, Any]:
    """The baseline: the same consumer config reading every record to the end, no decoding."""
    settings = ProcessorSettings(
        bootstrap_servers=kafka.bootstrap_servers,
        topic_prefix=kafka.topic_prefix,
        partitions=kafka.partitions,
    )
    consumer = Consumer(settings.restore_config())
    topic = kafka.topics.pull_requests
    records = 0
    try:
        consumer.list_topics(topic, 10.0)
        started, cpu = time.perf_counter(), time.process_time()
        deadline = started + timeout_s
        pending = set(range(kafka.partitions))
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        while pending and time.perf_counter() < deadline:
            for msg in consumer.consume(1000, 0.2):
                error = msg.error()
                if error is None:
                    records += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition() or 0)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        consumer.close()
    return _rates("bare_consumer", records, expected, seconds, cpu)


async def restore_read_model(
    kafka: KafkaSettings, expected: int, timeout_s: float
) -> dict[str, Any]:
    """The gateway read model's catch-up from the beginning of the compacted topic."""
    model = ReadModel(kafka)
    started, cpu = time.perf_counter(), time.process_time()
    await model.start()
    try:
        caught_up = await model.wait_caught_up(timeout_s)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        restored = model.stats()["entities"]
    finally:
        await model.close()
    record = _rates("gateway_read_model", restored, expected, seconds, cpu)
    record["caught_up"] = caught_up
    return record


def _rates(
    who: str, restored: int, expected: int, seconds: float, cpu_seconds: float | None = None
) -> dict[str, Any]:
    """Restored count and rates; with ``cpu_seconds`` (the bench process's CPU time over the
    same span, every thread: librdkafka's, RocksDB's, the decoding) also the rate per CPU
    second, which a machine shared with other jobs does not distort the way it does the rate
    per second of wall time."""
    record = {
        "who": who,
        "restored": restored,
        "expected": expected,
        "seconds": round(seconds, 3),
        "per_second": round(restored / seconds) if seconds > 0 else None,
    }
    if cpu_seconds is not None:
        record["cpu_seconds"] = round(cpu_seconds, 3)
        record["per_cpu_second"] = round(restored / cpu_seconds) if cpu_seconds > 0 else None
    return record


def measure(kafka: KafkaSettings, count: int, timeout_s: float = 900.0) -> dict[str, Any]:
    """Fill, then restore with both paths; returns the JSON record."""
    filled = fill(kafka, count)
    log.info("restore_filled", extra={"result": filled})
    bare = bare_consumer(kafka, count, timeout_s)
    # The stores first: their RSS growth must not be hidden by memory the in-memory
    # restores freed.
    stores = measure_stores(kafka, count, timeout_s)
    processor = restore_processor(kafka, count, timeout_s)
    log.info("restore_processor", extra={"result": processor})
    read_model = asyncio.run(restore_read_model(kafka, count, timeout_s))
    log.info("restore_read_model", extra={"result": read_model})
    return {
        "n": count,
        **filled,
        "bare_consumer": bare,
        "processor": processor,
        "gateway_read_model": read_model,
        "state_stores": stores,
    }


# -- state stores (issue 16) ---------------------------------------------------------------


def _rss_bytes() -> int:
    """This process's resident set size now (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    if not ordered:
        return {"p50_us": float("nan"), "p99_us": float("nan")}
    return {
        "p50_us": round(ordered[len(ordered) // 2] * 1e6, 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6, 1),
    }


def _get_latency(model: ReadModel, ids: list[str], rounds: int = 20_000) -> dict[str, Any]:
    """get() latency over ``ids`` chosen at random (``rounds`` calls, one timer each)."""
    rng = random.Random(16)
    samples: list[float] = []
    for _ in range(rounds):
        key = rng.choice(ids)
        started = time.perf_counter()
        model.get(key)
        samples.append(time.perf_counter() - started)
    return _percentiles(samples)


def _list_latency(model: ReadModel, rounds: int = 500) -> dict[str, Any]:
    samples: list[float] = []
    for i in range(rounds):
        started = time.perf_counter()
        model.list(after=f"{i % 100:02d}", limit=100)
        samples.append(time.perf_counter() - started)
    return _percentiles(samples)


def restore_processor_store(
    kafka: KafkaSettings, state_dir: Path, expected: int, timeout_s: float
) -> dict[str, Any]:
    """A processor's restore of every partition into RocksDB stores: cold (empty stores), then
    warm (the stores reopened, as after a restart or a re-assignment)."""
    settings = ProcessorSettings(
        bootstrap_servers=kafka.bootstrap_servers,
        topic_prefix=kafka.topic_prefix,
        partitions=kafka.partitions,
    )
    resources = StoreResources(settings.state_memory())
    consumer = Consumer(settings.restore_config())
    topic = kafka.topics.pull_requests
    out: dict[str, Any] = {}
    try:
        cluster = consumer.list_topics(topic, 10.0).cluster_id or ""
        for phase in ("cold", "warm"):
            rss_before = _rss_bytes()
            started, cpu = time.perf_counter(), time.process_time()
            states: dict[int, PartitionState] = {}
            for p in range(kafka.partitions):
                store, _ = SnapshotStore.open(
                    state_dir / f"{topic}-{p}", StoreIdentity(cluster, topic, (p,)), resources
                )
                states[p] = StoredPartition(store, p, settings.state_cache_entries)
            stats = restore_partitions(consumer, topic, states, timeout_s)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            restored = sum(s.count() for s in states.values())
            rss_after = _rss_bytes()
            for state in states.values():
                state.close()
            out[phase] = {
                **_rates(f"processor_store_{phase}", restored, expected, seconds, cpu),
                "records_replayed": stats.records,
                "rss_growth_bytes_per_pull_request": round((rss_after - rss_before) / expected, 1),
            }
    finally:
        consumer.close()
    return out


async def restore_read_model_store(
    kafka: KafkaSettings, state_dir: Path, expected: int, timeout_s: float
) -> dict[str, Any]:
    """The gateway read model with a store: cold catch-up, RSS growth, then a warm restart, and
    get/list latency from the warm one (cache hits: a working set of 1,000 ids; misses: ids
    across all N with the entry cache at its default)."""
    settings = ProcessorSettings()  # only for the state defaults shared with the gateway
    resources = StoreResources(settings.state_memory())
    state = ReadModelState(state_dir, resources, settings.state_cache_entries)
    out: dict[str, Any] = {}
    for phase in ("cold", "warm"):
        rss_before = _rss_bytes()
        model = ReadModel(kafka, state=state)
        started, cpu = time.perf_counter(), time.process_time()
        await model.start()
        try:
            caught_up = await model.wait_caught_up(timeout_s)
            seconds, cpu_used = time.perf_counter() - started, time.process_time() - cpu
            rss_after = _rss_bytes()
            entities = model.stats()["entities"]
            out[phase] = {
                **_rates(f"gateway_store_{phase}", entities, expected, seconds, cpu_used),
                "caught_up": caught_up,
                "records_replayed": model.stats()["records"],
                "rss_growth_bytes_per_pull_request": round((rss_after - rss_before) / expected, 1),
            }
            # A cold load leaves RocksDB's compaction of what it wrote to the background (the
            # gateway serves meanwhile); its CPU is part of the load's cost.
            deadline = time.perf_counter() + timeout_s
            while model.compacting() and time.perf_counter() < deadline:  # noqa: ASYNC110 (a RocksDB property, no event to wait on)
                await asyncio.sleep(0.05)
            with_compaction = time.process_time() - cpu
            out[phase]["compaction_cpu_seconds"] = round(with_compaction - cpu_used, 3)
            out[phase]["per_cpu_second_with_compaction"] = (
                round(entities / with_compaction) if with_compaction > 0 else None
            )
            if phase == "warm":
                ids = [f"pr-{i:08d}" for i in range(expected)]
                hot = ids[:1000]
                _get_latency(model, hot, 2000)  # fill the cache
                out["get_cache_hit"] = _get_latency(model, hot)
                out["get_any"] = _get_latency(model, ids)
                out["list_100"] = _list_latency(model)
        finally:
            await model.close()
    return out


async def read_model_memory_latency(
    kafka: KafkaSettings, expected: int, timeout_s: float
) -> dict[str, Any]:
    """Today's in-memory read model: RSS growth per pull request and get/list latency."""
    rss_before = _rss_bytes()
    model = ReadModel(kafka)
    await model.start()
    try:
        await model.wait_caught_up(timeout_s)
        rss_after = _rss_bytes()
        ids = [f"pr-{i:08d}" for i in range(expected)]
        return {
            "rss_growth_bytes_per_pull_request": round((rss_after - rss_before) / expected, 1),
            "get_cache_hit": _get_latency(model, ids[:1000]),
            "get_any": _get_latency(model, ids),
            "list_100": _list_latency(model),
        }
    finally:
        await model.close()


def measure_stores(kafka: KafkaSettings, count: int, timeout_s: float = 900.0) -> dict[str, Any]:
    """The state-store step on an already filled topic: processor and gateway, cold and warm,
    and the in-memory read model's figures of the same run as the baseline (measured last, so
    the stores' RSS growth is not hidden by memory the in-memory model freed)."""
    with tempfile.TemporaryDirectory(prefix="prgate-bench-state-") as tmp:
        processor = restore_processor_store(kafka, Path(tmp) / "processor", count, timeout_s)
        log.info("restore_processor_store", extra={"result": processor})
        gateway = asyncio.run(
            restore_read_model_store(kafka, Path(tmp) / "gateway", count, timeout_s)
        )
        log.info("restore_read_model_store", extra={"result": gateway})
    memory = asyncio.run(read_model_memory_latency(kafka, count, timeout_s))
    log.info("read_model_memory", extra={"result": memory})
    return {"processor": processor, "gateway": gateway, "gateway_in_memory": memory}
