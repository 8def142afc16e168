"""Archive: records archived per second against a bare consumer, and the delay until visible.

On a prefix of its own, the commands, results and events topics are filled with the sample
life's messages (realistic sizes) by a plain idempotent producer. Then, in this order:

1. a bare consumer (read_committed, assigned, no decoding) reads every record to the end: the
   read rate the archive is compared with (target: the archive at >= 0.5x of it);
2. ``python -m archive`` starts on the filled topics; its rate is 90% of the records / (time
   from its assignment, taken from its log, until 90% are visible in the tables): the last
   partial batches wait for the flush interval, which says nothing about the rate;
3. with the archive caught up, records are produced at a fixed rate and a poller reads the
   tables' offsets (Delta app transactions, the same commit as the rows) every 20 ms: the delay
   of a record is from its broker acknowledgement until a table version covering its offset is
   visible (target: p99 <= the flush interval + 1 s).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from archive.sink import app_id
from bench import payloads
from bench.stats import ratio, summarize
from bench.system import Child, cpu_seconds
from prgate.kafka import codec, command_ids
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics
from prgate.v1.commands_pb2 import CommandEnvelope
from prgate.v1.results_pb2 import CommandResult

log = logging.getLogger(__name__)

FLUSH_INTERVAL_MS = 1000
FLUSH_MAX_RECORDS = 20_000  # the default: fewer, larger commits cost less CPU per record
LIVE_RATE = 200.0  # records/s while the delay is measured
POLL_S = 0.02
TABLES = {"commands": "commands", "results": "command-results", "events": "pull-request-events"}


def _records(kafka: KafkaSettings, pull_requests: int = 97) -> list[codec.Record]:
    """Sample lives (commands, results, events as the services write them) of
    ``pull_requests`` distinct pull requests, so the keys spread over the partitions."""
    life, topics = payloads.sample_life(), kafka.topics
    out = []
    for k in range(pull_requests):
        pr = f"pr-bench-{k}"
        for envelope in life.envelopes:
            command = CommandEnvelope()
            command.CopyFrom(envelope)
            command.pull_request_id = pr
            inner = getattr(command, command.WhichOneof("command") or "")
            if hasattr(inner, "pull_request_id"):
                inner.pull_request_id = pr
            # A command id is bound to its pull request: re-bind it, or every bench command
            # would be archived as a decode error (the codec's refusal path, not the usual one).
            base = command_ids.base_of(command.command_id) or uuid.uuid4().hex
            command.command_id = command_ids.bind(base, pr)
            out.append(codec.command_record(topics.commands, command, reply_to=topics.results))
        for sample in life.results:
            result = CommandResult()
            result.CopyFrom(sample)
            result.pull_request_id = pr
            for event in result.events:
                event.pull_request_id = pr
                out.append(codec.event_record(topics.events, event))
            out.append(codec.result_record(topics.results, result, result.command_id))
    return out


class Acks:
    """Broker acknowledgement times (wall clock) by (topic, partition, offset)."""

    def __init__(self) -> None:
        self.at: dict[tuple[str, int, int], float] = {}

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.at[(msg.topic(), msg.partition(), msg.offset())] = time.time()


def fill(
    kafka: KafkaSettings, count: int, rate: float | None = None, acks: Acks | None = None
) -> float:
    """Produce ``count`` sample records (at ``rate``/s when given, each acknowledgement
    written into ``acks``); return the records/s achieved."""
    producer = Producer(
        kafka.client_config(
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5 if rate else 20,
                "queue.buffering.max.messages": 500_000,
            }
        )
    )
    sample = _records(kafka)
    started = time.perf_counter()
    for n in range(count):
        r = sample[n % len(sample)]
        while True:
            try:
                producer.produce(
                    r.topic, key=r.key, value=r.value, headers=r.headers, on_delivery=acks
                )
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if rate:
            time.sleep(max(0.0, started + (n + 1) / rate - time.perf_counter()))
    if producer.flush(120):
        raise RuntimeError("archive bench: records not delivered")
    return count / (time.perf_counter() - started)


def ends(kafka: KafkaSettings) -> dict[tuple[str, int], int]:
    """High watermark of every partition of the three topics."""
    consumer = Consumer(kafka.client_config(**{"group.id": f"bench-ends-{uuid.uuid4().hex}"}))
    try:
        out = {}
        for topic in (kafka.topic_prefix + t for t in TABLES.values()):
            for p in consumer.list_topics(topic, 10).topics[topic].partitions:
                out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
        return out
    finally:
        consumer.close()


def bare_consumer(kafka: KafkaSettings, expected: int, *, extract: bool = False) -> dict[str, Any]:
    """Every record of the three topics read to the end with no decoding; records/s.

    ``extract``: also take from each record what any archive must (topic, partition, offset,
    timestamp, key, value, headers): the floor of an archive on confluent-kafka's
    one-object-per-record API, before any decoding or writing."""
    consumer = Consumer(
        kafka.client_config(
            **{
                "group.id": f"bench-bare-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "enable.auto.commit": False,
            }
        )
    )
    parts = [TopicPartition(t, p, OFFSET_BEGINNING) for (t, p), end in ends(kafka).items() if end]
    records, pending = 0, {(tp.topic, tp.partition) for tp in parts}
    taken: list[tuple[Any, ...]] = []
    try:
        consumer.list_topics(timeout=10)
        started, cpu_started = time.perf_counter(), time.process_time()
        consumer.assign(parts)
        while pending and time.perf_counter() - started < 300:
            batch = consumer.consume(2000, 0.2)
            taken.clear()  # kept per batch only, as an archive keeps a batch until its commit
            for msg in batch:
                error = msg.error()
                if error is None:
                    records += 1
                    if extract:
                        taken.append((msg.topic(), msg.partition(), msg.offset(), msg.timestamp(),
                                      msg.key(), msg.value(), msg.headers()))  # fmt: skip
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard((msg.topic(), msg.partition()))
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu_started  # this process: the consumer's threads too
    finally:
        consumer.close()
    return {
        "records": records,
        "expected": expected,
        "seconds": round(seconds, 3),
        "per_second": round(records / seconds),
        "cpu_us_per_record": round(cpu / max(1, records) * 1e6, 1),
    }


class TablePoller:
    """The archived position (next offset) of every partition, read from the tables' txns."""

    def __init__(self, root: Path, keys: list[tuple[str, int]]) -> None:
        self.root, self.keys = root, keys
        self._tables: dict[str, DeltaTable] = {}

    def positions(self) -> dict[tuple[str, int], int]:
        out = {}
        for topic, partition in self.keys:
            name = next(n for n, t in TABLES.items() if topic.endswith(t))
            table = self._tables.get(name)
            try:
                if table is None:
                    table = self._tables[name] = DeltaTable(str(self.root / name))
                else:
                    table.update_incremental()
            except TableNotFoundError:
                out[(topic, partition)] = 0
                continue
            out[(topic, partition)] = table.transaction_version(app_id(topic, partition)) or 0
        return out


def _assigned_at(log_path: Path) -> float | None:
    """Unix time of the archive's first assignment, from its JSON log line."""
    for line in log_path.read_text(errors="replace").splitlines():
        if '"event": "archive_assigned"' in line and line.startswith("{"):
            stamp = str(json.loads(line)["ts"]).replace("Z", "+00:00")
            return datetime.fromisoformat(stamp).timestamp()
    return None


def catch_up(
    kafka: KafkaSettings,
    work_dir: Path,
    env: dict[str, str],
    members: int,
    writer_threads: int | None = None,
) -> tuple[dict[str, Any], list[Child], TablePoller]:
    """``members`` archive processes (one group, fresh tables) catching up on the filled topics,
    with ``writer_threads`` (None: the default); returns the rate record and the still running
    children with a poller of their tables."""
    label = f"{members}" if writer_threads is None else f"{members}-w{writer_threads}"
    root = work_dir / f"archive-tables-{label}"
    group = f"bench-archive-{uuid.uuid4().hex}"
    children = []
    for n in range(members):
        archive_env = {
            **env,
            "PRGATE_ARCHIVE_ROOT": str(root),
            "PRGATE_ARCHIVE_GROUP_ID": group,
            "PRGATE_ARCHIVE_INSTANCE_ID": f"bench-a{n}",
            "PRGATE_ARCHIVE_FLUSH_MAX_RECORDS": str(FLUSH_MAX_RECORDS),
            "PRGATE_ARCHIVE_FLUSH_INTERVAL_MS": str(FLUSH_INTERVAL_MS),
        }
        if writer_threads is not None:
            archive_env["PRGATE_ARCHIVE_WRITER_THREADS"] = str(writer_threads)
        argv = [sys.executable, "-m", "archive"]
        log_path = work_dir / f"archive-{label}-{n}.log"
        children.append(Child(f"archive-{n}", argv, archive_env, log_path))
        children[-1].start()
    targets = ends(kafka)
    count = sum(targets.values())  # plain producers: the high watermarks count the records
    poller = TablePoller(root, list(targets))
    deadline = time.time() + 600
    bulk_done: float | None = None  # when 90% were visible
    cpu_at_assignment: float | None = None  # CPU seconds of the children when first assigned
    while True:
        if cpu_at_assignment is None and any(_assigned_at(c.log_path) for c in children):
            cpu_at_assignment = sum(cpu_seconds(c.pid) for c in children)
        positions = poller.positions()
        behind = sum(max(0, end - positions[k]) for k, end in targets.items())
        if bulk_done is None and behind <= count // 10:
            bulk_done = time.time()
        if behind == 0:
            break
        dead = [c for c in children if not c.alive()]
        if dead or time.time() > deadline:
            tail = (dead or children)[0].log_tail()
            raise RuntimeError(f"archive did not catch up:\n{tail}")
        time.sleep(POLL_S)
    done = time.time()
    cpu = sum(cpu_seconds(c.pid) for c in children) - (cpu_at_assignment or 0.0)
    assigned = min((_assigned_at(c.log_path) or done) for c in children)
    bulk = max(1e-3, (bulk_done or done) - assigned)
    record = {
        "members": members,
        "writer_threads": writer_threads,
        "records": count,
        "seconds": round(done - assigned, 3),
        # The last partial batches wait for the flush interval: the rate is taken over the
        # first 90% of the records.
        "per_second": round((count - count // 10) / bulk),
        # Load-independent: CPU time of the archive processes from assignment until every
        # record is visible, per record (the wall rates swing with the machine's other load).
        "cpu_us_per_record": round(cpu / max(1, count) * 1e6, 1),
    }
    return record, children, poller


def measure(
    kafka: KafkaSettings,
    work_dir: Path,
    env: dict[str, str],
    count: int,
    live_s: float,
    *,
    compare_writer_threads: tuple[int, ...] = (),
) -> dict[str, Any]:
    """The JSON record of the archive step (see the module docstring); with
    ``compare_writer_threads``, the archive also catches up with each of those writer thread
    counts first (fresh tables each), against the same bare consumer."""
    ensure_topics(kafka)
    fill_rate = fill(kafka, count)
    bare = bare_consumer(kafka, count)
    extracting = bare_consumer(kafka, count, extract=True)
    compared = {}
    for threads in compare_writer_threads:
        other, others, _ = catch_up(kafka, work_dir, env, members=1, writer_threads=threads)
        for child in others:
            child.stop()
        other["ratio"] = ratio(other["per_second"], bare["per_second"])
        compared[str(threads)] = other
    one, children, poller = catch_up(kafka, work_dir, env, members=1)
    try:
        delays = live_delays(kafka, poller, live_s)
    finally:
        for child in children:
            child.stop()
    p99 = summarize(delays)["p99"]
    return {
        "n": count,
        "fill_rate": round(fill_rate),
        "bare_consumer": bare,
        "extracting_consumer": extracting,
        "archive": one,
        "archive_by_writer_threads": compared,
        "ratio": ratio(one["per_second"], bare["per_second"]),
        # The same comparison in CPU time per record: bare's / the archive's.
        "cpu_ratio": ratio(bare["cpu_us_per_record"], one["cpu_us_per_record"]),
        # The ceiling of a Python archive on this client: the extracting consumer / bare.
        "extracting_ratio": ratio(extracting["per_second"], bare["per_second"]),
        "flush_interval_ms": FLUSH_INTERVAL_MS,
        "flush_max_records": FLUSH_MAX_RECORDS,
        "live_rate": LIVE_RATE,
        "visible_ms": summarize(delays),
        "visible_p99_within_target": p99 <= FLUSH_INTERVAL_MS + 1000,
    }


def live_delays(kafka: KafkaSettings, poller: TablePoller, seconds: float) -> list[float]:
    """Produce at LIVE_RATE for ``seconds``; ms from each ack until its offset is visible."""
    acks = Acks()
    seen: dict[tuple[str, int, int], float] = {}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            now = time.time()
            positions = poller.positions()
            for key, acked in list(acks.at.items()):
                if key not in seen and positions.get((key[0], key[1]), 0) > key[2]:
                    seen[key] = (now - acked) * 1000
            time.sleep(POLL_S)

    thread = threading.Thread(target=poll, name="bench-archive-poll", daemon=True)
    thread.start()
    fill(kafka, max(1, int(LIVE_RATE * seconds)), rate=LIVE_RATE, acks=acks)
    deadline = time.time() + FLUSH_INTERVAL_MS / 1000 + 30
    while len(seen) < len(acks.at) and time.time() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join(5)
    missing = len(acks.at) - len(seen)
    if missing:
        log.warning("archive_bench_not_visible", extra={"records": missing})
    return list(seen.values())


def targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 17's two targets, in the rows of bench.targets."""
    limit = record["flush_interval_ms"] + 1000
    p99 = record["visible_ms"]["p99"]
    return [
        {
            "target": "archived records/s vs a bare consumer's read rate",
            "wanted": ">= 0.5x",
            "value": record["ratio"],
            "met": (record["ratio"] or 0) >= 0.5,
        },
        {
            "target": "archive: commit to visible in the table, p99",
            "wanted": f"<= {limit} ms (flush interval + 1 s)",
            "value": p99,
            "met": record["visible_p99_within_target"],
        },
    ]


def markdown(record: dict[str, Any]) -> list[str]:
    """The report's section on the archive step."""
    bare, archived, seen = record["bare_consumer"], record["archive"], record["visible_ms"]
    return [
        f"## Audit archive of {record['n']} records (commands, results, events)",
        "",
        "| who | seconds | records/s | ratio |",
        "|---|---|---|---|",
        f"| archive (decode + Delta commits of {record['flush_max_records']}) | "
        f"{archived['seconds']} | {archived['per_second']} | {record['ratio']}x |",
        f"| bare consumer (read_committed, no decoding) | {bare['seconds']} | "
        f"{bare['per_second']} | 1x |",
        *(
            [
                f"| bare consumer taking each record's fields (the ceiling of any archive on "
                f"this client) | {extracting['seconds']} | {extracting['per_second']} | "
                f"{record.get('extracting_ratio')}x |"
            ]
            if (extracting := record.get("extracting_consumer"))
            else []
        ),
        "",
        f"CPU time per record: archive {archived.get('cpu_us_per_record')} us, bare consumer "
        f"{bare.get('cpu_us_per_record')} us (ratio {record.get('cpu_ratio')}x; the wall rates "
        "swing with the machine's other load, CPU time much less).",
        "",
        f"Commit to visible at {record['live_rate']:g} records/s, flush interval "
        f"{record['flush_interval_ms']} ms: p50 {seen['p50']:.0f} ms, p99 {seen['p99']:.0f} ms, "
        f"max {seen['max']:.0f} ms ({seen['count']} records).",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.archive``: this step alone, ``--runs`` times on one private broker
    (fresh topics each run), each run's ratio to its own bare consumer, then the medians."""
    import argparse
    import statistics
    import tempfile

    from bench.system import BenchSystem

    parser = argparse.ArgumentParser(prog="python -m bench.archive", description=main.__doc__)
    parser.add_argument("--n", type=int, default=60_000, help="records per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--live-s", type=float, default=8.0, help="seconds of the delay part")
    parser.add_argument("--json", type=Path, help="write every run's record here")
    parser.add_argument(
        "--compare-writer-threads",
        type=int,
        nargs="*",
        default=[],
        help="also run the archive with these writer thread counts in each run (before the "
        "default one), each against the same bare consumer",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        system = BenchSystem(Path(tmp) / "work")
        records = []
        try:
            system.start_broker()
            for run in range(args.runs):
                prefix = f"bench-archive-{run}-{uuid.uuid4().hex[:6]}."
                (Path(tmp) / f"run-{run}").mkdir()
                record = measure(
                    system.kafka(prefix), Path(tmp) / f"run-{run}", system._env(prefix),
                    args.n, args.live_s, compare_writer_threads=tuple(args.compare_writer_threads),
                )  # fmt: skip
                records.append(record)
                keys = ("ratio", "cpu_ratio", "extracting_ratio", "archive", "bare_consumer",
                        "extracting_consumer", "archive_by_writer_threads",
                        "visible_ms")  # fmt: skip
                print(json.dumps({k: record[k] for k in keys}), flush=True)
        finally:
            system.close()
    medians = {
        key: statistics.median(r[key] for r in records if r[key] is not None)
        for key in ("ratio", "cpu_ratio", "extracting_ratio")
    }
    medians["archive_cpu_us_per_record"] = statistics.median(
        r["archive"]["cpu_us_per_record"] for r in records
    )
    medians["bare_cpu_us_per_record"] = statistics.median(
        r["bare_consumer"]["cpu_us_per_record"] for r in records
    )
    medians["extracting_cpu_us_per_record"] = statistics.median(
        r["extracting_consumer"]["cpu_us_per_record"] for r in records
    )
    medians["visible_p99_ms"] = statistics.median(r["visible_ms"]["p99"] for r in records)
    for threads in map(str, args.compare_writer_threads):
        runs = [r["archive_by_writer_threads"][threads] for r in records]
        medians[f"writer_threads_{threads}_ratio"] = statistics.median(
            r["ratio"] for r in runs if r["ratio"] is not None
        )
        medians[f"writer_threads_{threads}_cpu_us_per_record"] = statistics.median(
            r["cpu_us_per_record"] for r in runs
        )
    print(json.dumps({"runs": len(records), "medians": medians}))
    if args.json:
        args.json.write_text(json.dumps({"runs": records, "medians": medians}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
