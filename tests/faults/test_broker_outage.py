"""Broker outage: stop the (private) broker during load, start it again.

While it is down, every command call ends within its deadline with UNAVAILABLE (or with
DEADLINE_EXCEEDED carrying the command id), no process dies, reads keep being served from
the gateway's read model, and the command service's health is NOT_SERVING (the gateway's, ""
stays SERVING). Once the broker is back, gateway and processor serve again
without a restart, and no command reported ACCEPTED is lost.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import query_service_pb2
from tests.e2e.stack import GatewayProcess
from tests.faults.conftest import PrivateKafka, Scale, close_stack, log_tail, open_stack
from tests.faults.ledger import Ledger
from tests.faults.load import Call, Client, Load, first_success, open_fields
from tests.faults.summary import Row
from tests.faults.verify import assert_load_after, verify

DEADLINE_S = 3.0
# What a client may see while Kafka is down: refused, or accepted with the id to watch.
# ACCEPT_NOT_CONFIRMED: the call's deadline ended the wait for the broker's ack (command id given).
DOWN_ANSWERS = {
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED/RESULT_NOT_IN_TIME",
    "DEADLINE_EXCEEDED/ACCEPT_NOT_CONFIRMED",
}
# Commands the load must get accepted (and completed) before the outage and after it.
LOAD_MINIMUM = 10
# A call ends within its deadline; the slack (half the deadline, scaled with it) is for the
# answer to travel back and for a busy machine's scheduling (load average ~30 on two cores
# delays the client's and the gateway's threads by hundreds of milliseconds). A call that
# waited for the broker instead of its deadline takes far longer (the producer's 5 s
# delivery timeout, or until the broker is back).
LATE_SLACK_S = DEADLINE_S / 2


COMMANDS = "prgate.v1.PullRequestCommandService"


def health_of(gateway: GatewayProcess, service: str) -> str:
    with grpc.insecure_channel(gateway.target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def wait_health(gateway: GatewayProcess, service: str, status: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while health_of(gateway, service) != status:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def answer(call: Call) -> str:
    return f"{call.code}/{call.reason}" if call.code == "DEADLINE_EXCEEDED" else call.code


def test_broker_outage_fails_fast_and_recovers_without_restarts(
    private_kafka: PrivateKafka, tmp_path: Path, scale: Scale, seed: int, fault_row: Row
) -> None:
    broker, kafka = private_kafka.broker, private_kafka.kafka
    stack = open_stack(kafka, tmp_path)
    try:
        processor = stack.processor(PYTHONFAULTHANDLER="1")
        gateway = stack.gateway(PYTHONFAULTHANDLER="1")
        pids = {s.name: s.process.pid for s in stack.services if s.process}
        ledger = Ledger()
        client = Client(lambda: [gateway], ledger, deadline_s=DEADLINE_S)
        first_success(client, timeout=60)
        known = client.snapshot()[-1].pull_request_id

        load = Load(client, workers=scale.workers, max_commands=scale.max_commands, seed=seed)
        load_started = time.monotonic()
        load.start()
        # The load runs before the outage (a few commands accepted), then the broker stops.
        ledger.wait_accepted_since(load_started, LOAD_MINIMUM, timeout=30)
        stopped_at = time.monotonic()
        broker.stop()
        fault_row.fault("broker stopped (SIGTERM)")
        down_at = time.monotonic()
        fault_row.note(f"broker took {down_at - stopped_at:.1f}s to stop")

        # New commands while it is down, all at once, each measured against its deadline.
        probes = Client(lambda: [gateway], ledger, deadline_s=DEADLINE_S)
        threads = [
            threading.Thread(
                target=probes.send,
                args=("OpenPullRequest", open_fields(i), svc.RESPONSE_MODE_COMPLETED),
            )
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        # Reads do not need Kafka: the read model answers from memory.
        got = gateway.queries().GetPullRequest(
            query_service_pb2.GetPullRequestRequest(pull_request_id=known), timeout=DEADLINE_S
        )
        assert got.pull_request.pull_request_id == known
        for thread in threads:
            thread.join(DEADLINE_S + 5)
        # Health: the command service follows the producer, the gateway as a whole serves on.
        assert wait_health(gateway, COMMANDS, "NOT_SERVING", timeout=15)
        assert health_of(gateway, "") == "SERVING"
        time.sleep(max(0.0, down_at + 6.0 - time.monotonic()))  # down for at least 6 s
        stack.assert_alive()

        broker.start(timeout=180)
        fault_row.fault("broker started")
        up_at = time.monotonic()
        try:
            recovered = first_success(client, timeout=90)
        except AssertionError as exc:
            # Show where the stuck services are (PYTHONFAULTHANDLER prints every thread).
            for service in (processor, gateway):
                if service.alive() and service.process is not None:
                    os.kill(service.process.pid, signal.SIGABRT)
            time.sleep(1.0)
            tails = "\n".join(f"--- {s.name}\n{log_tail(s, 60)}" for s in (processor, gateway))
            raise AssertionError(f"no recovery after the broker came back: {exc}\n{tails}") from exc
        fault_row.note(
            f"broker down {up_at - down_at:.1f}s; first COMMAND SUCCEEDED "
            f"{recovered:.1f}s after it was back"
        )
        assert wait_health(gateway, COMMANDS, "SERVING", timeout=30)
        # The load runs on against the recovered broker: its commands are accepted again.
        ledger.wait_accepted_since(up_at, LOAD_MINIMUM, timeout=60)
        load.stop()

        # Nobody was restarted and nobody died.
        stack.assert_alive()
        assert {s.name: s.process.pid for s in stack.services if s.process} == pids
        assert processor.alive() and gateway.alive()

        calls = client.snapshot() + probes.snapshot()
        late = [c for c in calls if c.wall_s > c.deadline_s + LATE_SLACK_S]
        assert not late, f"calls answered after their deadline: {late[:3]}"
        probe_answers = Counter(answer(c) for c in probes.snapshot())
        assert set(probe_answers) <= DOWN_ANSWERS and sum(probe_answers.values()) == 8, (
            probe_answers
        )
        # The load's calls while Kafka was down, by what they were told.
        during = Counter(answer(c) for c in calls if c.code != "OK")
        fault_row.note(f"probes while down: {dict(probe_answers)}; load errors: {dict(during)}")
        fault_row.note(
            f"slowest call {max(c.wall_s for c in calls):.2f}s of {DEADLINE_S}s deadline"
        )
        assert not {"INTERNAL", "UNKNOWN"} & set(during), during

        verdict = verify(kafka, ledger, result_timeout=90)
        fault_row.take(verdict, ledger.calls)
        fault_row.note(verdict.summary())
        if verdict.rewritten_commands:
            # The idempotent producer wrote them again (README "Guarantees"): one duplicate
            # result each is what the verifier allows.
            fault_row.note(f"written again by the producer: {verdict.rewritten_commands[:3]}")
        verdict.assert_ok()
        # The load ran before the outage and after it, and those commands completed.
        assert_load_after(
            verdict,
            load_started,
            until=stopped_at,
            min_accepted=LOAD_MINIMUM,
            min_completed=LOAD_MINIMUM,
            what="the time before the outage",
        )
        assert_load_after(
            verdict,
            up_at,
            min_accepted=LOAD_MINIMUM,
            min_completed=LOAD_MINIMUM,
            what="the broker's return",
        )
    finally:
        close_stack(stack)
