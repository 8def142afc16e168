"""Services at scale: a real gateway's time to SERVING and a real processor's restore, with
their resident memory, on a compacted topic already holding N pull requests.

The in-process restore step (:mod:`bench.restore`) measures the restore paths themselves; this
step measures what an operator sees, on the same filled topic (``bench-restore.*``): the
``python -m gateway`` / ``python -m processor`` processes started as in production, each

- in memory (``PRGATE_STATE_DIR`` empty), as before the state stores;
- with the store, cold (an empty state directory, as on a new machine);
- with the store, warm (the same directory again after a SIGTERM: a restart or a re-assignment).

Gateway: seconds from spawn until the gRPC health service answers SERVING (the read model and
the reply router caught up). Processor: seconds from spawn until its ``partitions_restored``
log line, and the restore's own ``ms`` from that line (assignment to restored). Both: VmRSS of
the process at that moment. The same processes on empty topics (``bench-serving-empty.*``) give
the fixed part: Python, the libraries and the Kafka clients, so ``(RSS - empty RSS) / N`` is the
memory each pull request costs, ``seconds - empty seconds`` the part that grows with N, and N
over that part (and over the CPU seconds beyond the empty run's, all threads) its rate.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.held import rss_mib
from bench.system import Child, cpu_seconds, descendants, free_port, service_env, wait_serving
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics

log = logging.getLogger(__name__)

EMPTY_PREFIX = "bench-serving-empty."
IN_MEMORY_BYTES_PER_PULL_REQUEST = 3000  # measured: 2.75-2.9 KB (README, State stores)
RESTORED_EVENT = "partitions_restored"


def _env(kafka: KafkaSettings, **extra: str) -> dict[str, str]:
    # The restore's stall bound, never met while it reads; raised so that a stall on this
    # shared machine cannot end the measurement early.
    defaults = {"PRGATE_STATE_DIR": "", "PRGATE_PROCESSOR_RESTORE_TIMEOUT_MS": "600000"}
    return service_env(kafka, **(defaults | extra))


def _rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` and of the processes below it, MiB."""
    return sum(rss_mib(p) for p in [pid, *descendants(pid)])


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) of ``pid`` and of the processes below it."""
    return sum(cpu_seconds(p) for p in [pid, *descendants(pid)])


def gateway_to_serving(
    kafka: KafkaSettings, work_dir: Path, name: str, state_dir: str, timeout_s: float
) -> dict[str, Any]:
    """Start a gateway, wait for SERVING, take its RSS, stop it (SIGTERM).

    Returns ``{"seconds": spawn → SERVING, "rss_mib": ...}``. Raises ``RuntimeError`` when it
    exits or is not SERVING within ``timeout_s``.
    """
    target = f"127.0.0.1:{free_port()}"
    child = Child(
        name,
        [sys.executable, "-m", "gateway"],
        _env(kafka, PRGATE_LISTEN=target, PRGATE_STATE_DIR=state_dir),
        work_dir / f"{name}.log",
    )
    started = time.monotonic()
    child.start()
    try:
        wait_serving(target, child, timeout=timeout_s)
        seconds = time.monotonic() - started
        rss = _rss_mib(child.pid)
        cpu = _cpu_seconds(child.pid)
    finally:
        child.stop(timeout=60.0)
    return {"seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "rss_mib": round(rss, 1)}


def _restored_line(log_path: Path, offset: int) -> dict[str, Any] | None:
    """The first ``partitions_restored`` JSON line written after byte ``offset``, if any."""
    try:
        with log_path.open("rb") as log_file:
            log_file.seek(offset)
            for raw in log_file:
                if RESTORED_EVENT.encode() not in raw:
                    continue
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(line, dict) and line.get("event") == RESTORED_EVENT:
                    return line
    except OSError:
        return None
    return None


def processor_restore(
    kafka: KafkaSettings,
    work_dir: Path,
    name: str,
    state_dir: str,
    *,
    group_id: str,
    timeout_s: float,
) -> dict[str, Any]:
    """Start a processor (instance ``name`` of ``group_id``), wait for its first
    ``partitions_restored`` line, take its RSS, stop it (SIGTERM).

    Returns ``{"seconds": spawn → restored, "restore_ms": the line's own figure, "records":
    records replayed, "rss_mib": ...}``. Raises ``RuntimeError`` when it exits or does not
    restore within ``timeout_s``.
    """
    log_path = work_dir / f"{name}.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    child = Child(
        name,
        [sys.executable, "-m", "processor"],
        _env(
            kafka,
            PRGATE_STATE_DIR=state_dir,
            PRGATE_PROCESSOR_GROUP_ID=group_id,
            PRGATE_PROCESSOR_INSTANCE_ID=name,
        ),
        log_path,
    )
    started = time.monotonic()
    child.start()
    try:
        deadline = started + timeout_s
        while (line := _restored_line(log_path, offset)) is None:
            if not child.alive():
                raise RuntimeError(f"{name} exited:\n{child.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not restored after {timeout_s}s:\n{child.log_tail()}")
            time.sleep(0.05)
        seconds = time.monotonic() - started
        rss = _rss_mib(child.pid)
        cpu = _cpu_seconds(child.pid)
    finally:
        child.stop(timeout=60.0)
    return {
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "restore_ms": line.get("ms"),
        "records": line.get("records"),
        "rss_mib": round(rss, 1),
    }


def _memory_available_bytes() -> int:
    """MemAvailable of /proc/meminfo, bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def _per_pull_request(
    record: dict[str, Any], empty: dict[str, Any], count: int, *, restored: bool
) -> None:
    """Add the N-dependent parts: RSS bytes per pull request, seconds beyond empty topics and,
    when the run ``restored`` the topic (not a warm start), pull requests per second and per
    CPU-second of that part."""
    record["rss_bytes_per_pull_request"] = round(
        (record["rss_mib"] - empty["rss_mib"]) * 1024 * 1024 / count, 1
    )
    beyond = record["seconds"] - empty["seconds"]
    record["seconds_beyond_empty"] = round(beyond, 3)
    if not restored:
        return
    cpu_beyond = record["cpu_seconds"] - empty["cpu_seconds"]
    record["per_second_beyond_empty"] = round(count / beyond) if beyond > 0 else None
    record["per_cpu_second_beyond_empty"] = round(count / cpu_beyond) if cpu_beyond > 0 else None


def measure(
    filled: KafkaSettings, count: int, work_dir: Path, timeout_s: float = 3600.0
) -> dict[str, Any]:
    """The whole step on ``filled`` (topics holding ``count`` pull requests); the JSON record.

    The in-memory phases are left out (``in_memory_skipped`` says why) when ``count`` pull
    requests would need more than half of the machine's available memory."""
    work_dir.mkdir(parents=True, exist_ok=True)
    empty_kafka = KafkaSettings(
        bootstrap_servers=filled.bootstrap_servers,
        topic_prefix=EMPTY_PREFIX,
        partitions=filled.partitions,
    )
    ensure_topics(empty_kafka)
    result: dict[str, Any] = {"n": count, "gateway": {}, "processor": {}}
    with tempfile.TemporaryDirectory(prefix="prgate-bench-serving-") as tmp:
        root = Path(tmp)
        gateway = result["gateway"]
        gateway["empty"] = gateway_to_serving(
            empty_kafka, work_dir, "serving-gateway-empty", str(root / "empty"), timeout_s
        )
        # In memory, a pull request costs ~2.9 KB in each process: at 10M more than a 24 GiB
        # machine has, so those phases are left out (and said so) when they would not fit.
        needed = IN_MEMORY_BYTES_PER_PULL_REQUEST * count
        available = _memory_available_bytes()
        in_memory = needed < available // 2
        if not in_memory:
            result["in_memory_skipped"] = (
                f"needs about {needed / 2**30:.1f} GiB per process, more than half of what is "
                f"available ({available / 2**30:.1f} GiB)"
            )
        if in_memory:
            gateway["in_memory"] = gateway_to_serving(
                filled, work_dir, "serving-gateway-memory", "", timeout_s
            )
        for phase in ("cold", "warm"):
            gateway[phase] = gateway_to_serving(
                filled, work_dir, f"serving-gateway-{phase}", str(root / "gateway"), timeout_s
            )
        processor = result["processor"]
        processor["empty"] = processor_restore(
            empty_kafka,
            work_dir,
            "serving-p-empty",
            str(root / "empty"),
            group_id="bench-serving-empty",
            timeout_s=timeout_s,
        )
        if in_memory:
            processor["in_memory"] = processor_restore(
                filled,
                work_dir,
                "serving-p-memory",
                "",
                group_id="bench-serving-memory",
                timeout_s=timeout_s,
            )
        for phase in ("cold", "warm"):
            processor[phase] = processor_restore(
                filled,
                work_dir,
                "serving-p-store",
                str(root / "processor"),
                group_id="bench-serving-store",
                timeout_s=timeout_s,
            )
        for service in (gateway, processor):
            for phase in ("in_memory", "cold", "warm"):
                if phase in service:
                    _per_pull_request(
                        service[phase], service["empty"], count, restored=phase != "warm"
                    )
    log.info("serving", extra={"result": result})
    return result
