"""Bad records on Kafka: garbage on the commands topic goes to the DLQ and the processor goes
on; a garbage value and tombstones on the compacted topic do not crash the gateway's read
model, which logs and counts them and keeps serving correct data."""

from __future__ import annotations

import time

import grpc
import pytest
from helpers.ids import bound_id
from helpers.kafka import produce
from helpers.logs import log_events

from prgate.kafka import codec
from prgate.kafka.contract import (
    HEADER_CORRELATION_ID,
    HEADER_MESSAGE_TYPE,
    HEADER_REPLY_TO,
    TYPE_COMMAND_ENVELOPE,
)
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, query_service_pb2
from tests.e2e.stack import GatewayProcess
from tests.faults.conftest import FaultStack, processor_aborts, wait_log
from tests.faults.ledger import Ledger
from tests.faults.load import Client, Load, first_success, open_fields, step_command
from tests.faults.readback import read_topic, results_of
from tests.faults.summary import Row
from tests.faults.verify import assert_load_after, verify

# Good commands that must SUCCEED after the processor handled the garbage.
GOOD_AFTER_GARBAGE = 5


def get(gateway: GatewayProcess, pr: str) -> object:
    return (
        gateway.queries()
        .GetPullRequest(query_service_pb2.GetPullRequestRequest(pull_request_id=pr), timeout=5)
        .pull_request
    )


def test_garbage_on_the_commands_topic_goes_to_the_dlq(stack: FaultStack, fault_row: Row) -> None:
    topics = stack.kafka.topics
    processor = stack.processor()
    gateway = stack.gateway()
    ledger = Ledger()
    client = Client(lambda: [gateway], ledger, deadline_s=8.0)
    first_success(client, timeout=60)

    before_garbage = len(client.snapshot())
    garbage_id, no_command_id = bound_id("garbage-1", "pr-x"), bound_id("no-command", "pr-y")
    no_command = commands_pb2.CommandEnvelope(command_id=no_command_id, pull_request_id="pr-y")
    reply = [(HEADER_REPLY_TO, topics.results.encode())]
    garbage: list[tuple[bytes | None, bytes, list[tuple[str, str | bytes]]]] = [
        (b"pr-x", b"\xff\x00 not protobuf \x07", [(HEADER_CORRELATION_ID, garbage_id), *reply]),
        (b"pr-x", b"", []),
        (None, bytes(range(256)), []),
        (
            b"pr-y",
            no_command.SerializeToString(),
            [(HEADER_MESSAGE_TYPE, TYPE_COMMAND_ENVELOPE), *reply],
        ),
        (b"pr-z", b"\x0a\x03abc", [(HEADER_MESSAGE_TYPE, b"prgate.v1.SomethingElse")]),
    ]
    produce(stack.kafka, topics.commands, garbage)
    for _ in garbage:
        fault_row.fault("garbage record on the commands topic")
    # The processor has handled every garbage record (each one is on the DLQ) ...
    dead = read_topic(stack.kafka, topics.dlq, until=lambda r: len(r) >= len(garbage))
    handled_at = time.monotonic()
    # ... and goes on: real commands sent after that keep succeeding.
    Load(client, workers=2, max_commands=20, seed=1).start().wait(timeout=60)
    succeeded_after = [
        c for c in client.snapshot()[before_garbage:] if c.state == "COMMAND_STATE_SUCCEEDED"
    ]
    assert len(succeeded_after) >= GOOD_AFTER_GARBAGE, (
        f"{len(succeeded_after)} commands SUCCEEDED after the garbage was handled"
    )
    assert sorted((m.value() or b"") for m in dead) == sorted(v for _, v, _ in garbage)
    letters = [codec.decode_dead_letter(m.key(), m.value(), m.headers()) for m in dead]
    assert all(letter.error and letter.source_topic == topics.commands for letter in letters)
    failed = {r.command_id: r for r in results_of(read_topic(stack.kafka, topics.results))}
    assert failed[garbage_id].state == 4 and failed[no_command_id].state == 4  # FAILED
    stack.assert_alive()
    assert processor.alive()

    verdict = verify(stack.kafka, ledger)
    fault_row.take(verdict, ledger.calls)
    fault_row.bad_records = len(garbage)
    fault_row.commands_failed = sum(r.state == 4 for r in failed.values())
    fault_row.aborts = processor_aborts(processor)
    fault_row.note(f"{len(dead)} dead letters, each with a dlq-error header; {verdict.summary()}")
    verdict.assert_ok()
    assert_load_after(
        verdict,
        handled_at,
        min_accepted=GOOD_AFTER_GARBAGE,
        min_completed=GOOD_AFTER_GARBAGE,
        what="the garbage",
    )
    assert fault_row.aborts == 0


def serving_stats(gateway: GatewayProcess) -> dict[str, int]:
    """The read model's counters from the gateway's ``gateway_serving`` log line."""
    text = gateway.log_path.read_text(errors="replace")
    found = [e["stats"] for e in log_events(text) if e["event"] == "gateway_serving"]
    assert found, f"no gateway_serving line in {gateway.name}'s log"
    stats: dict[str, int] = found[-1]
    return stats


def test_garbage_and_tombstones_on_the_compacted_topic(stack: FaultStack, fault_row: Row) -> None:
    topics = stack.kafka.topics
    stack.processor()
    first = stack.gateway(name="g1")
    ledger = Ledger()
    client = Client(lambda: [first], ledger, deadline_s=8.0)
    first_success(client, timeout=60)
    kept = client.send("OpenPullRequest", open_fields(1), svc.RESPONSE_MODE_COMPLETED)
    client.send(*step_command("approve", kept.pull_request_id, 1), svc.RESPONSE_MODE_COMPLETED)
    doomed = client.send("OpenPullRequest", open_fields(2), svc.RESPONSE_MODE_COMPLETED)
    before = get(first, kept.pull_request_id)

    produce(
        stack.kafka,
        topics.pull_requests,
        [
            # Undecodable, under the key of a live pull request and under a key of its own.
            (kept.pull_request_id.encode(), b"\xff\xfe not a PullRequest", []),
            (b"pr-garbage", b"\x08\x96\x01\xff", []),
            # Tombstones: of a key never seen, and of a live pull request (deletes it).
            (b"pr-never-existed", None, []),  # type: ignore[list-item]
            (doomed.pull_request_id.encode(), None, []),  # type: ignore[list-item]
        ],
    )
    fault_row.fault("garbage values on the compacted topic")
    fault_row.fault("garbage values on the compacted topic")
    fault_row.fault("tombstones on the compacted topic")
    fault_row.fault("tombstones on the compacted topic")
    wait_log(first, "snapshot_garbage", timeout=20)
    wait_log(first, f'"event": "snapshot_tombstone", "key": "{doomed.pull_request_id}"', 20)

    # The running gateway: still serving, the live pull request unchanged, the deleted gone.
    first.wait_serving(timeout=5)
    assert get(first, kept.pull_request_id) == before
    with pytest.raises(grpc.RpcError) as gone:
        get(first, doomed.pull_request_id)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    changed = client.send(
        *step_command("title", kept.pull_request_id, 2), svc.RESPONSE_MODE_COMPLETED
    )
    assert changed.code == "OK" and changed.state == "COMMAND_STATE_SUCCEEDED", changed

    # A gateway started afterwards reads past the bad records, counts them, serves the same.
    second = stack.gateway(name="g2")
    stats = serving_stats(second)
    assert stats["garbage"] == 2 and stats["tombstones"] == 2, stats
    assert get(second, kept.pull_request_id) == get(first, kept.pull_request_id)
    stack.assert_alive()
    fault_row.sent = ledger.calls
    fault_row.note(f"late gateway's read model counters: {stats}")
