"""Hostile and broken records at the Kafka boundary (issue 12, items 1 to 4), against real
processor and gateway processes on a real broker.

Each test sends its bad records, then the next good command on the same partitions (through a
gateway, within the call's deadline), then checks the verifier's invariants, and reports in
the summary table how many bad records it sent, how many commands the processor answered FAILED
or REJECTED because of them, and how many aborted transactions they cost the processor (read
from its log): a loop would show there.
"""

from __future__ import annotations

import uuid

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from helpers.kafka import produce
from helpers.limits import partition_of, set_max_message_bytes

from gateway.idempotency import command_id_for_key
from prgate.kafka import codec, command_ids
from prgate.kafka.contract import HEADER_CORRELATION_ID
from prgate.kafka.settings import KafkaSettings
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2
from prgate.v1.outcome_pb2 import COMMAND_STATE_SUCCEEDED
from tests.faults.conftest import FaultStack
from tests.faults.conftest import processor_aborts as aborts
from tests.faults.ledger import Ledger
from tests.faults.load import Call, Client, Load, first_success, open_fields, step_command
from tests.faults.readback import read_topic, results_of
from tests.faults.summary import Row
from tests.faults.verify import verify

COMPLETED = svc.RESPONSE_MODE_COMPLETED
DEADLINE_S = 8.0  # every call after a bad record must end within it, with its answer


def hostile_open(kafka: KafkaSettings, reply_to: str) -> commands_pb2.CommandEnvelope:
    """An OpenPullRequest as a gateway would write it, but with ``reply_to``; produced."""
    base = command_ids.new_base()
    pull_request_id = command_ids.opened_pull_request_id(base)
    envelope = commands_pb2.CommandEnvelope(
        command_id=command_ids.bind(base, pull_request_id), pull_request_id=pull_request_id
    )
    for name, value in open_fields(0).items():
        setattr(envelope.open_pull_request, name, value)
    record = codec.command_record(kafka.topics.commands, envelope, reply_to=reply_to)
    produce(kafka, record.topic, [(record.key, record.value or b"", record.headers)])
    return envelope


def ok(call: Call, state: str = "COMMAND_STATE_SUCCEEDED") -> None:
    assert call.code == "OK" and call.state == state, call


def test_reply_to_topics_it_must_not_write_fall_back(stack: FaultStack, fault_row: Row) -> None:
    """Item 1: `reply-to: __consumer_offsets` (and every other topic not allowed) is answered
    on the results topic, nothing is written there, the processor never aborts."""
    kafka = stack.kafka
    other_app = f"{kafka.topic_prefix}other-app"
    admin = AdminClient(kafka.client_config())  # kept referenced until the topic exists
    admin.create_topics([NewTopic(other_app, 1, 1)])[other_app].result(timeout=15)
    processor = stack.processor()
    gateway = stack.gateway()
    ledger = Ledger()
    client = Client(lambda: [gateway], ledger, deadline_s=DEADLINE_S)
    first_success(client, timeout=60)
    load = Load(client, workers=2, max_commands=15, seed=3).start()
    hostile = [
        "__consumer_offsets",
        "__transaction_state",
        other_app,
        kafka.topics.events,
        f"{kafka.topic_prefix}no-such-topic",
        "not a topic!",
    ]
    sent = {reply_to: hostile_open(kafka, reply_to) for reply_to in hostile}
    for reply_to in hostile:
        fault_row.fault(f"reply-to {reply_to}")
    # The next command of each of their pull requests (their partitions) completes.
    for n, envelope in enumerate(sent.values()):
        ok(client.send(*step_command("title", envelope.pull_request_id, n), COMPLETED))
    load.wait(timeout=90)

    answers = {r.command_id: r for r in results_of(read_topic(kafka, kafka.topics.results))}
    assert all(answers[e.command_id].state == COMMAND_STATE_SUCCEEDED for e in sent.values())
    assert read_topic(kafka, other_app) == []
    stack.assert_alive()
    verdict = verify(kafka, ledger)
    fault_row.take(verdict, ledger.calls)
    fault_row.bad_records, fault_row.commands_failed = len(hostile), 0
    fault_row.aborts = aborts(processor)
    fault_row.note(f"every result on {kafka.topics.results}; {verdict.summary()}")
    verdict.assert_ok()
    assert fault_row.aborts == 0


def test_a_snapshot_over_the_topics_limit_is_refused_up_front(
    stack: FaultStack, fault_row: Row
) -> None:
    """Item 4's last guard (item 2's case): the command whose snapshot would exceed the
    pull-requests topic's max.message.bytes is REJECTED (FAILED_PRECONDITION,
    SNAPSHOT_TOO_LARGE) before anything is produced; the partition goes on."""
    kafka = stack.kafka
    set_max_message_bytes(kafka, kafka.topics.pull_requests, 6000)
    processor = stack.processor()
    gateway = stack.gateway()
    ledger = Ledger()
    client = Client(lambda: [gateway], ledger, deadline_s=DEADLINE_S)
    first_success(client, timeout=60)
    neighbours = [client.send("OpenPullRequest", open_fields(n), COMPLETED) for n in range(8)]
    big = client.send("OpenPullRequest", {**open_fields(99), "description": "d" * 4000}, COMPLETED)
    ok(big)
    refused: Call | None = None
    for n in range(40):
        fields = {"check_name": f"check-{n:02d}-" + "c" * 200, "conclusion": 1}
        call = client.send(
            "RecordCheckResult", {"pull_request_id": big.pull_request_id, **fields}, COMPLETED
        )
        if call.code != "OK":
            refused = call
            break
    assert refused is not None, "the snapshot never reached the topic's limit"
    fault_row.fault("a command whose snapshot exceeds max.message.bytes")
    assert (refused.code, refused.reason) == ("FAILED_PRECONDITION", "SNAPSHOT_TOO_LARGE")
    # The same pull request still answers (a command that fits is applied), and a neighbour
    # on its partition is served.
    again = client.send(*step_command("title", big.pull_request_id, 1), COMPLETED)
    assert (again.code, again.reason) in {("OK", ""), ("FAILED_PRECONDITION", "SNAPSHOT_TOO_LARGE")}
    partitions = kafka.partitions
    target = partition_of(big.pull_request_id, partitions)
    # Pull request ids are random, so open neighbours until one shares the partition (each
    # try lands there with probability 1/partitions; 60 tries all missing is ~1e-10).
    on_target = [c for c in neighbours if partition_of(c.pull_request_id, partitions) == target]
    for k in range(100, 160):
        if on_target:
            break
        extra = client.send("OpenPullRequest", open_fields(k), COMPLETED)
        ok(extra)
        if partition_of(extra.pull_request_id, partitions) == target:
            on_target.append(extra)
    assert on_target, f"no pull request opened on partition {target}"
    neighbour = on_target[0]
    ok(client.send(*step_command("approve", neighbour.pull_request_id, 1), COMPLETED))
    stack.assert_alive()
    verdict = verify(kafka, ledger)
    fault_row.take(verdict, ledger.calls)
    fault_row.bad_records = 1
    fault_row.commands_failed = 1 + (again.code != "OK")
    fault_row.aborts = aborts(processor)
    fault_row.note(f"refused after {n} checks; {verdict.summary()}")
    verdict.assert_ok()
    assert fault_row.aborts == 0


def test_a_record_kafka_refuses_fails_its_command_with_one_abort(
    stack: FaultStack, fault_row: Row
) -> None:
    """Item 2: the pull-requests topic's limit drops while the processor runs (it read the old
    one), so Kafka refuses a snapshot in the middle of a transaction, under load. The command
    gets a FAILED result and a DLQ copy, the batch is redone once, everything else commits; the
    limit is learned, so the next such command is refused up front."""
    kafka = stack.kafka
    processor = stack.processor()
    gateway = stack.gateway()
    ledger = Ledger()
    client = Client(lambda: [gateway], ledger, deadline_s=DEADLINE_S)
    first_success(client, timeout=60)
    set_max_message_bytes(kafka, kafka.topics.pull_requests, 6000)
    load = Load(client, workers=2, max_commands=20, seed=5).start()
    big = {**open_fields(7), "description": "e" * 7000}
    failed = client.send("OpenPullRequest", big, COMPLETED)
    fault_row.fault("a snapshot over a limit lowered at run time")
    assert (failed.code, failed.reason) == ("ABORTED", "COMMAND_FAILED"), failed
    refused = client.send("OpenPullRequest", {**big, "title": "again"}, COMPLETED)
    fault_row.fault("a snapshot over a limit lowered at run time")
    assert (refused.code, refused.reason) == ("FAILED_PRECONDITION", "SNAPSHOT_TOO_LARGE")
    ok(client.send("OpenPullRequest", open_fields(8), COMPLETED))
    load.wait(timeout=90)

    dead = read_topic(kafka, kafka.topics.dlq, until=lambda records: len(records) >= 1)
    (letter,) = [codec.decode_dead_letter(m.key(), m.value(), m.headers()) for m in dead]
    assert "RECORD_REFUSED" in letter.error and "MSG_SIZE_TOO_LARGE" in letter.error
    stack.assert_alive()
    verdict = verify(kafka, ledger)
    fault_row.take(verdict, ledger.calls)
    fault_row.bad_records, fault_row.commands_failed = 2, 2
    fault_row.aborts = aborts(processor)
    fault_row.note(f"the first FAILED (DLQ copy), the second REJECTED; {verdict.summary()}")
    verdict.assert_ok()
    # One refused snapshot: one redo (a second only when other records shared its batch).
    assert 1 <= fault_row.aborts <= 2


def test_a_command_id_names_one_command(stack: FaultStack, fault_row: Row) -> None:
    """Item 3: command id X was used for pull request A. X sent again for B (a raw copy), and
    garbage under X, get no second result; the idempotency key of X reused for B is refused by
    the gateway that remembers it and is another command id on a gateway that forgot it. X
    keeps exactly one result, A's, and WatchCommand(X) returns it."""
    kafka = stack.kafka
    processor = stack.processor()
    first = stack.gateway(name="g1")
    ledger = Ledger()
    client = Client(lambda: [first], ledger, deadline_s=DEADLINE_S)
    first_success(client, timeout=60)
    a = client.send("OpenPullRequest", open_fields(1), COMPLETED)
    b = client.send("OpenPullRequest", open_fields(2), COMPLETED)
    key = f"approve-{uuid.uuid4().hex}"
    approve_a = client.send(*step_command("approve", a.pull_request_id, 1), COMPLETED, key=key)
    ok(approve_a)
    x = approve_a.command_id
    assert x == command_id_for_key("", key, a.pull_request_id)

    copy = commands_pb2.CommandEnvelope(command_id=x, pull_request_id=b.pull_request_id)
    copy.approve_pull_request.pull_request_id = b.pull_request_id
    copy.approve_pull_request.reviewer = "bob"
    record = codec.command_record(kafka.topics.commands, copy, reply_to=kafka.topics.results)
    garbage = (a.pull_request_id.encode(), b"\xff garbage", [(HEADER_CORRELATION_ID, x)])
    produce(kafka, kafka.topics.commands, [(record.key, record.value or b"", record.headers)])
    produce(kafka, kafka.topics.commands, [garbage])
    fault_row.fault("command id of pull request A sent for B")
    fault_row.fault("garbage under a handled command id")

    reused = client.send(*step_command("approve", b.pull_request_id, 2), COMPLETED, key=key)
    assert (reused.code, reused.reason) == ("ALREADY_EXISTS", "IDEMPOTENCY_KEY_REUSED")
    # A gateway that never saw the key: another command id, bound to B, applied once.
    forgetful = stack.gateway(name="g2", PRGATE_RESULTS_LOOKBACK_S="0")
    elsewhere = Client(lambda: [forgetful], ledger, deadline_s=DEADLINE_S)
    on_b = elsewhere.send(*step_command("approve", b.pull_request_id, 3), COMPLETED, key=key)
    fault_row.fault("idempotency key reused for another pull request")
    ok(on_b)
    assert on_b.command_id != x and command_ids.binds(on_b.command_id, b.pull_request_id)
    # A's neighbours are not held up by anything of this.
    ok(client.send(*step_command("title", a.pull_request_id, 4), COMPLETED))

    dead = read_topic(kafka, kafka.topics.dlq, until=lambda records: len(records) >= 2)
    letters = [codec.decode_dead_letter(m.key(), m.value(), m.headers()) for m in dead]
    assert any("COMMAND_ID_NOT_BOUND" in letter.error for letter in letters)
    answers = [r for r in results_of(read_topic(kafka, kafka.topics.results)) if r.command_id == x]
    assert [(r.pull_request_id, r.state) for r in answers] == [
        (a.pull_request_id, COMMAND_STATE_SUCCEEDED)
    ]
    stream = first.commands().WatchCommand(svc.WatchCommandRequest(command_id=x), timeout=10)
    watched = [item.receipt for item in stream]
    assert watched[-1].pull_request_id == a.pull_request_id
    assert watched[-1].state == COMMAND_STATE_SUCCEEDED  # A's approval
    stack.assert_alive()
    verdict = verify(kafka, ledger)
    fault_row.take(verdict, ledger.calls)
    fault_row.bad_records, fault_row.commands_failed = 2, 0
    fault_row.aborts = aborts(processor)
    fault_row.note(f"X has one result; the key on B became {on_b.command_id[:8]}…")
    verdict.assert_ok()
    assert fault_row.aborts == 0
