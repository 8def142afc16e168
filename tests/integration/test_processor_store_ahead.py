"""A store ahead of the committed log after a SIGKILL, against the real broker and real
processes: a processor writes its stores before its transaction commits and is killed
(``store_ahead_processor.py``); its successor (same instance id: it fences the transaction,
which is aborted) must find the stores untrusted, rebuild them from the pull-requests topic, and
answer the commands of the killed transaction exactly once, at the right versions.

The stores' checkpoints lie inside the log (the aborted snapshots and their abort marker come
after them), so the log-end check alone would trust them; what gives them away is the commands
offset each store write notes, which exceeds what the group committed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from integration.processor_commands import check, open_pr, send_all
from integration.processor_helpers import assert_exactly_once, processor_settings, wait_results
from integration.processor_runners import REPO_ROOT, ProcessorProcess, processor_env
from integration.test_processor_state_store import store_dirs, stored_identity

from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings
from prgate.state import SnapshotStore, StoreMemory, StoreResources
from prgate.v1.outcome_pb2 import COMMAND_STATE_SUCCEEDED

HELPER = Path(__file__).with_name("store_ahead_processor.py")
PULL_REQUESTS = 6


def test_store_written_before_a_commit_that_never_came_is_detected_and_rebuilt(
    kafka_settings: KafkaSettings, ensured_topics: Topics, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    settings = processor_settings(kafka_settings, instance_id="ahead", state_dir=str(state))
    ids = [f"pr-ahead-{i}" for i in range(PULL_REQUESTS)]
    opens = [open_pr(pr) for pr in ids]
    checks = [check(pr, "ci") for pr in ids]
    lints = [check(pr, "lint") for pr in ids]

    log_path = tmp_path / "first.log"
    with log_path.open("ab") as log:
        first = subprocess.Popen(
            [sys.executable, str(HELPER)],
            cwd=REPO_ROOT,
            env=processor_env(settings) | {"AHEAD_AT_VERSION": "2"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    second: ProcessorProcess | None = None
    try:
        # The opens commit normally (version 1); the first transaction with a check (version
        # 2) is written to the stores, then the process is SIGKILLed before its commit.
        wait_for_log(log_path, '"event": "partitions_restored"', first, 60)
        send_all(kafka_settings, opens)
        wait_results(kafka_settings, {c.command_id for c in opens}, 60)
        send_all(kafka_settings, checks)
        killed_after = wait_killed(first, 60)
        written = written_before_commit(log_path)

        # The killed transaction is still open; the stores' checkpoints lie inside the log.
        ahead = inspect_stores(state, kafka_settings, written)
        assert ahead, f"no store holds the killed transaction's state: {written}"

        # The successor, an unmodified processor with the same instance id and state dir:
        # it fences the open transaction (aborted), finds the stores ahead and rebuilds them,
        # then answers the checks again, and the lints after them.
        second = ProcessorProcess(settings, tmp_path, "second")
        second.wait_log('"reason": "ahead_of_commits"', 60)
        send_all(kafka_settings, lints)
        everything = opens + checks + lints
        results = wait_results(kafka_settings, {c.command_id for c in everything}, 90)
        by_id = {r.command_id: r for r in results}
        expected = [(c, 1) for c in opens] + [(c, 2) for c in checks] + [(c, 3) for c in lints]
        for command, version in expected:
            result = by_id[command.command_id]
            assert result.state == COMMAND_STATE_SUCCEEDED, result
            assert result.version == version, result
        counts = assert_exactly_once(kafka_settings, everything, timeout=60)
        assert second.terminate() == 0, second.log_text()[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
        if second is not None:
            second.close()
    untrusted = [
        json.loads(line)
        for line in (tmp_path / "second.log").read_text().splitlines()
        if '"state_store_untrusted"' in line
    ]
    assert {u["partition"] for u in untrusted} >= set(ahead), untrusted
    assert all(u["reason"] == "ahead_of_commits" for u in untrusted), untrusted
    print(
        f"store ahead: killed {killed_after:.1f}s after the checks, stores ahead "
        f"{sorted(ahead)}, "
        f"rebuilt {sorted(u['partition'] for u in untrusted)}, {counts}"
    )


def wait_for_log(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while needle not in path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not in {path}:\n{path.read_text()[-3000:]}")
        time.sleep(0.1)


def wait_killed(proc: subprocess.Popen[bytes], timeout: float) -> float:
    started = time.monotonic()
    code = proc.wait(timeout)
    assert code == -9, f"exit code {code}, not SIGKILL"
    return time.monotonic() - started


def written_before_commit(path: Path) -> dict[str, dict[str, int]]:
    for line in path.read_text(errors="replace").splitlines():
        if '"store_written_before_commit"' in line:
            found: dict[str, dict[str, int]] = json.loads(line)
            return found
    raise AssertionError(f"no store_written_before_commit in {path}")


def inspect_stores(
    state: Path, kafka: KafkaSettings, written: dict[str, dict[str, int]]
) -> dict[int, int]:
    """Partition -> checkpoint of each store that took the killed transaction's snapshots,
    checked to lie inside the log (so that the log-end check would trust it)."""
    resources = StoreResources(StoreMemory(1 << 20, 1 << 20))
    # read_uncommitted: the log end, not the last stable offset (the transaction is open;
    # once it is aborted, the last stable offset moves past its abort marker, too).
    watermarks = Consumer(
        kafka.client_config(**{"group.id": "watermarks", "isolation.level": "read_uncommitted"})
    )
    ahead: dict[int, int] = {}
    try:
        for partition, path in store_dirs(state, kafka).items():
            if str(partition) not in written["snapshot_offsets"]:
                continue
            store, reason = SnapshotStore.open(path, stored_identity(path), resources)
            try:
                assert reason == ""
                checkpoint = store.checkpoints()[partition]
                applied = store.source_offsets()[partition]
            finally:
                store.close()
            low, high = watermarks.get_watermark_offsets(
                TopicPartition(kafka.topics.pull_requests, partition), timeout=10
            )
            assert low <= checkpoint <= high, (partition, low, checkpoint, high)
            assert applied == written["commands_offsets"][str(partition)]
            ahead[partition] = checkpoint
    finally:
        watermarks.close()
    return ahead
