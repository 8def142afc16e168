"""prgate.client against a real gateway, processor and broker: a pull request's whole life,
the exceptions of each refusal, idempotent keys, the asyncio client, and a retry across a
gateway restart that applies the command exactly once (its first attempt reached Kafka and lost
its answer)."""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Message
from helpers.kafka import free_port

from gateway.idempotency import command_id_for_key
from prgate.client import (
    Aborted,
    AlreadyExists,
    AsyncClient,
    Client,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    RetryEvent,
    RetryPolicy,
)
from prgate.kafka import codec
from prgate.kafka.contract import HEADER_CORRELATION_ID
from prgate.v1 import outcome_pb2, pull_request_pb2
from prgate.v1.commands_pb2 import CommandEnvelope
from tests.e2e.stack import GatewayProcess, Stack
from tests.faults.readback import read_topic

ROOT = Path(__file__).resolve().parents[2]
SUCCEEDED = outcome_pb2.COMMAND_STATE_SUCCEEDED
ACCEPTED = outcome_pb2.COMMAND_STATE_ACCEPTED
MERGED = pull_request_pb2.PULL_REQUEST_STATUS_MERGED
REVERTED = pull_request_pb2.PULL_REQUEST_STATUS_REVERTED


def branch() -> str:
    return f"feature/{uuid.uuid4().hex[:8]}"


def test_life_of_a_pull_request_through_the_sync_client(gateway: GatewayProcess) -> None:
    with Client(gateway.target, timeout=20) as client:
        opened = client.open_pull_request(
            "acme/widgets", "Add a widget", "ada", branch(), "main", "a description"
        )
        assert opened.state == SUCCEEDED and opened.result.version == 1
        pr_id = opened.pull_request_id

        retitled = client.change_title(pr_id, "Add a better widget", "ada")
        assert retitled.state == SUCCEEDED and retitled.result.version == 2
        assert client.approve(pr_id, "bob").result.version == 3
        assert client.record_check(pr_id, "ci", "failure").result.version == 4

        with pytest.raises(FailedPrecondition) as refused:
            client.merge(pr_id, "bob", mode="completed")
        assert [(v.type, v.subject) for v in refused.value.precondition_violations] == [
            ("CHECKS_NOT_PASSING", "ci")
        ]
        assert refused.value.pull_request_id == pr_id and refused.value.command_id

        with pytest.raises(Aborted):
            client.record_check(pr_id, "ci", "success", expected_version=3)
        assert client.record_check(pr_id, "ci", "success", expected_version=4).result.version == 5

        closed = client.close(pr_id, "ada")
        assert client.get(pr_id).status == pull_request_pb2.PULL_REQUEST_STATUS_CLOSED
        reopened = client.reopen(pr_id, "ada")
        assert reopened.result.version > closed.result.version
        before_merge = reopened.result.version

        merge = client.merge(pr_id, "bob")  # ACCEPTED by default
        assert merge.state == ACCEPTED and merge.command_id
        states = [r.state for r in client.watch_command(merge.command_id, timeout=30)]
        assert states == [ACCEPTED, SUCCEEDED]
        done = client.wait_command(merge.command_id, timeout=30)
        assert done.state == SUCCEEDED and done.result.version > before_merge

        merged = client.get(pr_id)
        assert merged.status == MERGED and merged.title == "Add a better widget"
        assert merged.version == done.result.version
        assert merged.merge.merged_by_user == "bob"
        assert pr_id in [p.pull_request_id for p in client.list("acme/widgets", "merged")]
        assert pr_id not in [p.pull_request_id for p in client.list("acme/widgets", "open")]

        # A rejection seen through wait_command raises like a waiting call would.
        with pytest.raises(FailedPrecondition):
            client.wait_command(client.merge(pr_id, "bob", mode="accepted").command_id, timeout=30)

        revert = client.revert(pr_id, "bob", "broke the build")
        assert client.wait_command(revert.command_id, timeout=30).state == SUCCEEDED
        reverted = client.get(pr_id)
        assert reverted.status == REVERTED and reverted.revert.reason == "broke the build"

        # The watch starts at the current snapshot; stopping the iteration ends the call.
        watch = client.watch_pull_request(pr_id, timeout=30)
        assert next(watch).version == reverted.version
        watch.close()


def test_refusals_map_to_exceptions_with_details(gateway: GatewayProcess) -> None:
    with Client(gateway.target, timeout=20) as client:
        with pytest.raises(InvalidArgument) as invalid:
            client.open_pull_request("acme/widgets", "", "ada", branch(), "main")
        assert "command.title" in {v.field for v in invalid.value.field_violations}

        with pytest.raises(NotFound) as missing:
            client.get("pr-does-not-exist")
        assert missing.value.pull_request_id == "pr-does-not-exist"
        with pytest.raises(NotFound):
            client.approve("pr-does-not-exist", "bob")

        key = f"open-{uuid.uuid4().hex}"
        source = branch()
        first = client.open_pull_request(
            "acme/widgets", "Once", "ada", source, "main", idempotency_key=key
        )
        again = client.open_pull_request(
            "acme/widgets", "Once", "ada", source, "main", idempotency_key=key
        )
        assert again.pull_request_id == first.pull_request_id
        assert again.command_id == first.command_id
        with pytest.raises(AlreadyExists) as reused:
            client.open_pull_request(
                "acme/widgets", "Twice", "ada", source, "main", idempotency_key=key
            )
        assert reused.value.idempotency_key == key
        assert [p.pull_request_id for p in client.list("acme/widgets")].count(
            first.pull_request_id
        ) == 1


def test_asyncio_client_through_a_merge(gateway: GatewayProcess) -> None:
    async def scenario() -> tuple[list[int], list[int], int]:
        async with AsyncClient(gateway.target, timeout=20) as client:
            opened = await client.open_pull_request(
                "acme/gadgets", "Async", "ada", branch(), "main"
            )
            pr_id = opened.pull_request_id
            seen: list[int] = []

            async def follow() -> None:
                async for pr in client.watch_pull_request(pr_id, timeout=60):
                    seen.append(pr.version)
                    if pr.status == MERGED:
                        return

            follower = asyncio.create_task(follow())
            await client.approve(pr_id, "bob")
            await client.record_check(pr_id, "ci", "success")
            merge = await client.merge(pr_id, "bob")
            states = [r.state async for r in client.watch_command(merge.command_id, timeout=30)]
            await asyncio.wait_for(follower, 30)
            merged = await client.get(pr_id)
            return seen, states, merged.status

    seen, states, status = asyncio.run(scenario())
    assert states == [ACCEPTED, SUCCEEDED]
    assert status == MERGED
    assert seen == sorted(set(seen)) and seen[-1] == 5 and seen[0] <= 2


def copies_on_kafka(stack: Stack, command_id: str, count: int) -> list[CommandEnvelope]:
    """Wait (bounded) until the commands topic holds ``count`` records of ``command_id``."""

    def mine(records: list[Message]) -> list[CommandEnvelope]:
        found = [
            codec.decode_command(m.key(), m.value(), m.headers())
            for m in records
            if codec.header(m.headers(), HEADER_CORRELATION_ID) == command_id
        ]
        return [c for c in found if c.command_id == command_id]

    records = read_topic(
        stack.kafka,
        stack.kafka.topics.commands,
        timeout=60,
        until=lambda records: len(mine(records)) >= count,
    )
    return mine(records)


def test_retry_across_a_gateway_restart_applies_the_command_once(stack: Stack) -> None:
    """The first attempt reaches Kafka and loses its answer: the processor is stopped, so the
    gateway holds the COMPLETED call; once the command is on the commands topic (the
    broker's ack is in) the gateway is SIGKILLed. The client retries the same idempotency key
    on a new gateway, which produces the command again; the processor, started only then,
    applies it once and answers the second copy duplicate=True."""
    processor = stack.processor()
    port = free_port()
    gateway = stack.gateway(port)
    events: list[RetryEvent] = []
    patient = RetryPolicy(max_attempts=40, initial_backoff=0.2, max_backoff=1.0)
    options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500)]
    with Client(
        gateway.target, timeout=60, retry=patient, on_retry=events.append, options=options
    ) as client:
        pr_id = client.open_pull_request(
            "acme/widgets", "Restart", "ada", branch(), "main"
        ).pull_request_id
        assert processor.stop() == 0  # nothing answers the next command for now
        key = f"approve-{uuid.uuid4().hex}"
        command_id = command_id_for_key("", key, pr_id)

        outcome: list[object] = []

        def approve() -> None:
            try:
                outcome.append(client.approve(pr_id, "bob", idempotency_key=key, mode="completed"))
            except Exception as exc:  # reported by the assertion below
                outcome.append(exc)

        caller = threading.Thread(target=approve)
        caller.start()
        # The first attempt is on Kafka (acknowledged) and its call still waits: kill the
        # gateway between the broker's ack and the reply.
        copies_on_kafka(stack, command_id, 1)
        assert caller.is_alive() and not outcome and not events
        gateway.kill()
        while not events:  # the call is failing over to retries now
            caller.join(0.05)
        assert caller.is_alive() and not outcome
        stack.gateway(port, name="g1")
        # The retry reaches Kafka a second time through the new gateway (it never saw the
        # first copy's result: there is none yet) ...
        first, second = copies_on_kafka(stack, command_id, 2)
        assert first.approve_pull_request == second.approve_pull_request
        # ... and only now does a processor run.
        stack.processor()
        caller.join(90)
        assert not caller.is_alive()
        (receipt,) = outcome
        assert getattr(receipt, "state", receipt) == SUCCEEDED
        assert events and all(e.error.code.name == "UNAVAILABLE" for e in events)
        pr = client.get(pr_id)
        assert pr.version == 2 and [r.reviewer for r in pr.reviews] == ["bob"]

    # Applied once: one result of its own, the copy answered duplicate=True, one event.
    results = [
        codec.decode_result(m.value(), m.headers())
        for m in read_topic(stack.kafka, stack.kafka.topics.results, timeout=60)
    ]
    mine = [(r.state, r.duplicate, r.version) for r in results if r.command_id == command_id]
    assert sorted(mine) == [(SUCCEEDED, False, 2), (SUCCEEDED, True, 2)], mine
    events_of = [
        codec.decode_event(m.value(), m.headers())
        for m in read_topic(stack.kafka, stack.kafka.topics.events, timeout=60)
    ]
    assert [e.version for e in events_of if e.command_id == command_id] == [2]


def test_readme_client_example_runs_as_written(
    gateway: GatewayProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- client-example:begin -->\n```python\n(.*?)```\n<!-- client-example:end -->",
        text,
        re.S,
    )
    assert block, "README lost its Python client example"
    code = block.group(1).replace('"127.0.0.1:50051"', repr(gateway.target))
    exec(compile(code, "README.md:client-example", "exec"), {})
    printed = capsys.readouterr().out
    assert "precondition CHECKS_NOT_PASSING on ci" in printed
    assert "COMMAND_STATE_ACCEPTED\nCOMMAND_STATE_SUCCEEDED\n" in printed  # enum names
    assert "\n13 PULL_REQUEST_STATUS_REVERTED\n" in printed, printed  # as its comment says
    assert re.search(r"\['pr-\w+'\]", printed)
