"""Running processors in tests: in a thread, as ``python -m processor`` subprocesses, with a
paced command stream, a killer that strikes inside an open transaction, and the group's view of
who holds which partition. Every wait is bounded."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from confluent_kafka.admin import AdminClient
from integration.processor_commands import CommandProducer
from integration.processor_helpers import TopicTail

from prgate.kafka.settings import KafkaSettings
from prgate.v1.commands_pb2 import CommandEnvelope
from processor.loop import Processor
from processor.settings import ProcessorSettings

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- running processors ---------------------------------------------------------------------


class ThreadedProcessor:
    """A Processor in a thread of the test process (fast to start; no signals)."""

    def __init__(
        self, settings: ProcessorSettings, fault: Callable[[str], None] | None = None
    ) -> None:
        self.stop = threading.Event()
        self.processor = Processor(settings, stop=self.stop, fault=fault)
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, name="processor", daemon=True)

    def _run(self) -> None:
        self.exit_code = self.processor.run()

    def __enter__(self) -> ThreadedProcessor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "processor did not stop within 60 s"


def processor_env(settings: ProcessorSettings) -> dict[str, str]:
    """The environment that makes ``python -m processor`` use ``settings``."""
    env = dict(os.environ)
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "PRGATE_TOPIC_PREFIX": settings.topic_prefix,
            "PRGATE_PARTITIONS": str(settings.partitions),
            "PRGATE_PROCESSOR_GROUP_ID": settings.group_id,
            "PRGATE_PROCESSOR_INSTANCE_ID": settings.instance_id,
            "PRGATE_PROCESSOR_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
            "PRGATE_PROCESSOR_TRANSACTION_TIMEOUT_MS": str(settings.transaction_timeout_ms),
            "PRGATE_PROCESSOR_BATCH_MAX_RECORDS": str(settings.batch_max_records),
            "PRGATE_LOG_LEVEL": settings.log_level,
            "PRGATE_STATE_DIR": settings.state_dir,
        }
    )
    return env


class ProcessorProcess:
    """``python -m processor`` as a subprocess, its log in a file."""

    def __init__(self, settings: ProcessorSettings, log_dir: Path, name: str) -> None:
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "processor"],
            cwd=REPO_ROOT,
            env=processor_env(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.log_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{needle!r} not in log of {self.log_path}:\n{self.log_text()[-3000:]}"
                )
            time.sleep(0.1)

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def with_instance(settings: ProcessorSettings, instance_id: str) -> ProcessorSettings:
    return replace(settings, instance_id=instance_id)


class PacedSender(threading.Thread):
    """Produces ``commands`` in order from a thread, ``per_second`` on average in bursts of
    ``burst``, so that processors are busy with multi-command transactions when a test kills
    or stops them."""

    def __init__(
        self,
        kafka: KafkaSettings,
        commands: list[CommandEnvelope],
        per_second: float,
        burst: int = 1,
        after_burst: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(name="paced-sender", daemon=True)
        self._after_burst = after_burst or (lambda index: None)
        self._producer = CommandProducer(kafka)
        self._commands = commands
        self._interval = burst / per_second
        self._burst = burst
        self.sent = 0

    def run(self) -> None:
        started = time.monotonic()
        for i in range(0, len(self._commands), self._burst):
            delay = started + (i // self._burst) * self._interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for env in self._commands[i : i + self._burst]:
                self._producer.send(env)
                self.sent += 1
            self._producer.flush()
            self._after_burst(i // self._burst)
        self._producer.close()

    def finish(self, timeout: float = 60.0) -> None:
        self.join(timeout)
        assert not self.is_alive(), "sender did not finish"
        assert self.sent == len(self._commands)


def group_assignment(kafka: KafkaSettings, group_id: str) -> dict[str, set[int]]:
    """client.id -> assigned partitions of the group's current members."""
    admin = AdminClient(kafka.client_config())
    (future,) = admin.describe_consumer_groups([group_id], request_timeout=10).values()
    description = future.result(timeout=15)
    return {
        member.client_id: {tp.partition for tp in member.assignment.topic_partitions}
        for member in description.members
    }


def wait_assignment(
    kafka: KafkaSettings,
    group_id: str,
    predicate: Callable[[dict[str, set[int]]], bool],
    timeout: float,
) -> dict[str, set[int]]:
    deadline = time.monotonic() + timeout
    while True:
        current = group_assignment(kafka, group_id)
        if predicate(current):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"group {group_id} assignment stayed {current}")
        time.sleep(0.2)


class TransactionKiller:
    """SIGKILLs a processor while it provably has an open transaction with records written.

    Used as a PacedSender's ``after_burst``: shortly after a burst is acked (when the processor
    is in the middle of its transaction) freeze the process (SIGSTOP), read results with
    read_uncommitted and read_committed until both counts stay the same (a commit already sent
    completes meanwhile), and kill only if read_uncommitted still shows more; otherwise let the
    process go on (SIGCONT) and try after the next burst.
    """

    def __init__(self, process: ProcessorProcess, kafka: KafkaSettings, first_burst: int) -> None:
        self._process = process
        self._first_burst = first_burst
        self._dirty = TopicTail(kafka, kafka.topics.results, "read_uncommitted")
        self._clean = TopicTail(kafka, kafka.topics.results)
        self.killed = threading.Event()
        self.open_records = 0
        self.attempts = 0

    def __call__(self, burst_index: int) -> None:
        if self.killed.is_set() or burst_index < self._first_burst:
            return
        self.attempts += 1
        time.sleep(random.uniform(0.006, 0.02))
        self._process.pause()
        seen = (-1, -1)
        for _settle in range(20):
            self._dirty.poll(0.15)  # consume() waits the full time: a window, not an EOF
            self._clean.poll(0.15)
            now = (len(self._dirty.records), len(self._clean.records))
            if now == seen:
                break
            seen = now
        open_records = len(self._dirty.records) - len(self._clean.records)
        if open_records > 0:
            self._process.kill()
            self.open_records = open_records
            self.killed.set()
        else:
            self._process.resume()

    def close(self) -> None:
        self._dirty.close()
        self._clean.close()
