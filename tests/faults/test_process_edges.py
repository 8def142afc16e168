"""Start and stop of the real processes: every failure is one line and a documented exit code.

- A gateway started while Kafka is down opens its port at once, reports NOT_SERVING (commands
  and queries UNAVAILABLE) for as long as Kafka is away, and turns SERVING without a restart
  when Kafka comes (it used to exit 1 with a traceback after ~16 s).
- A taken gRPC or metrics port, a bad token file, an unknown Kafka client property, an
  unreachable Kafka for the processor: one log line with the reason, the documented exit code
  (README "Start, stop and exit codes"), no traceback.
- A fenced processor (another instance took its transactional.id) exits 1 through its stop
  line; the close no longer dies in ``flush`` with ``KafkaException(_FENCED)``.
- SIGTERM on a gateway: health NOT_SERVING at once, calls still served for the drain window,
  then open streams end UNAVAILABLE with a RetryInfo, and the process exits 0.
- The same with Kafka away and refusal records waiting in the refusal log's queue: the
  refusals are answered all the same, and the gateway drains, gives the records up (counted)
  and exits 0.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from helpers.kafka import free_port
from helpers.logs import log_events

from gateway.errors import details_of
from gateway.exits import EXIT_CONFIG as GATEWAY_EXIT_CONFIG
from gateway.exits import EXIT_LISTEN as GATEWAY_EXIT_LISTEN
from gateway.exits import EXIT_OK as GATEWAY_EXIT_OK
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import query_service_pb2
from processor.app import EXIT_CONFIG, EXIT_KAFKA_UNREACHABLE, EXIT_LISTEN
from processor.loop import EXIT_FATAL
from tests.e2e.stack import GatewayProcess, ServiceProcess, base_env
from tests.faults.conftest import (
    FaultStack,
    PrivateKafka,
    close_stack,
    log_tail,
    open_stack,
    wait_log,
)
from tests.faults.load import Client, first_success, open_fields
from tests.faults.summary import Row
from tests.faults.verify import Ledger, verify


def start_gateway(stack: FaultStack, name: str, **env: str) -> GatewayProcess:
    """A gateway process, without waiting for SERVING (it may never serve, or not yet)."""
    port = int(env.pop("PORT", 0)) or free_port()
    merged = base_env(stack.kafka)
    merged.update({"PRGATE_LISTEN": f"127.0.0.1:{port}", **env})
    service = GatewayProcess(
        f"gateway-{name}", "gateway", merged, stack.log_dir / f"gateway-{name}.log", port=port
    )
    service.start()
    stack.services.append(service)
    return service


def exited(service: ServiceProcess, timeout: float) -> int:
    assert service.process is not None
    return service.process.wait(timeout=timeout)


def assert_one_clear_line(service: ServiceProcess, event: str, code: int, reason: str) -> None:
    """The log ends the run with exactly one ``event`` line naming the code and the reason,
    and holds no Python traceback."""
    text = service.log_path.read_text(errors="replace")
    lines = [entry for entry in log_events(text) if entry["event"] == event]
    assert len(lines) == 1, f"{service.name}: {lines}\n{log_tail(service)}"
    assert lines[0]["code"] == code and reason in lines[0]["reason"] + lines[0].get("error", ""), (
        lines[0]
    )
    assert "Traceback" not in text, f"{service.name} printed a traceback:\n{text[-3000:]}"


@contextmanager
def taken_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def health(target: str, timeout: float = 2.0) -> str:
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=timeout
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def status_of(exc: grpc.RpcError) -> tuple[grpc.StatusCode, dict[str, Any]]:
    status = rpc_status.from_call(cast(Any, exc))
    code: grpc.StatusCode = cast(Any, exc).code()
    return code, (dict(details_of(status)) if status is not None else {})


# -- start -------------------------------------------------------------------------------------


def test_gateway_started_without_kafka_serves_health_then_commands(
    private_kafka: PrivateKafka, tmp_path: Path, fault_row: Row
) -> None:
    broker, kafka = private_kafka.broker, private_kafka.kafka
    broker.stop()
    fault_row.fault("gateway started while Kafka is down")
    stack = open_stack(kafka, tmp_path)
    try:
        gateway = start_gateway(stack, "early")
        started = time.monotonic()
        deadline = started + 30
        answer = "no answer"
        while answer != "NOT_SERVING":
            assert time.monotonic() < deadline, f"no health answer: {answer}\n{log_tail(gateway)}"
            assert gateway.alive(), log_tail(gateway)
            try:
                answer = health(gateway.target)
            except grpc.RpcError as exc:
                answer = exc.code().name
                time.sleep(0.2)
        # A health watcher (grpc-go's healthCheckConfig does this) sees the change later.
        seen: list[str] = []
        with grpc.insecure_channel(gateway.target) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(), timeout=240
            )

            def follow() -> None:
                name = health_pb2.HealthCheckResponse.ServingStatus.Name
                with contextlib.suppress(grpc.RpcError):  # cancelled at the end
                    seen.extend(name(reply.status) for reply in watch)

            watcher = threading.Thread(target=follow, daemon=True)
            watcher.start()
            calls = Client(lambda: [gateway], Ledger(), deadline_s=3.0)
            refused = calls.send("OpenPullRequest", open_fields(1), svc.RESPONSE_MODE_COMPLETED)
            assert refused.code == "UNAVAILABLE", refused
            with pytest_raises_rpc() as caught:
                gateway.queries().GetPullRequest(
                    query_service_pb2.GetPullRequestRequest(pull_request_id="pr-x"), timeout=3
                )
            code, details = status_of(caught.error)
            assert code == grpc.StatusCode.UNAVAILABLE
            assert details["ErrorInfo"].reason == "READ_MODEL_CATCHING_UP"
            time.sleep(max(0.0, started + 20 - time.monotonic()))  # beyond the old 16 s
            assert gateway.alive(), f"the gateway gave up on Kafka:\n{log_tail(gateway)}"
            fault_row.note("NOT_SERVING for 20 s without Kafka, commands and queries UNAVAILABLE")

            broker.start(timeout=180)
            fault_row.fault("broker started")
            back = time.monotonic()
            stack.processor()
            gateway.wait_serving(timeout=120)
            fault_row.note(f"SERVING {time.monotonic() - back:.1f}s after Kafka came")
            ledger = Ledger()
            first_success(Client(lambda: [gateway], ledger, deadline_s=10.0), timeout=90)
            watch.cancel()
            watcher.join(10)
        assert seen[:1] == ["NOT_SERVING"] and "SERVING" in seen, seen
        verdict = verify(kafka, ledger, result_timeout=60)
        fault_row.take(verdict, ledger.calls)
        verdict.assert_ok()
        assert gateway.stop() == GATEWAY_EXIT_OK
    finally:
        close_stack(stack)


class _Raised:
    error: grpc.RpcError


@contextmanager
def pytest_raises_rpc() -> Iterator[_Raised]:
    raised = _Raised()
    try:
        yield raised
    except grpc.RpcError as exc:
        raised.error = exc
        return
    raise AssertionError("the call succeeded")


def test_start_up_failures_are_one_line_and_an_exit_code(
    stack: FaultStack, tmp_path: Path, fault_row: Row
) -> None:
    bad_tokens = tmp_path / "tokens.json"
    bad_tokens.write_text(json.dumps({"tokens": [{"principal": "ada", "token": "short"}]}))
    with taken_port() as grpc_port, taken_port() as metrics_port:
        taken_metrics = f"127.0.0.1:{metrics_port}"
        failing = {
            "gRPC port taken": (
                start_gateway(stack, "grpc-taken", PORT=str(grpc_port)),
                GATEWAY_EXIT_LISTEN,
                "cannot listen",
            ),
            "gateway metrics port taken": (
                start_gateway(stack, "metrics-taken", PRGATE_METRICS_LISTEN=taken_metrics),
                GATEWAY_EXIT_LISTEN,
                "cannot listen",
            ),
            "bad token file": (
                start_gateway(stack, "bad-tokens", PRGATE_AUTH_TOKEN_FILE=str(bad_tokens)),
                GATEWAY_EXIT_CONFIG,
                "configuration refused",
            ),
            "unknown Kafka client property (gateway)": (
                start_gateway(stack, "bad-kafka", PRGATE_KAFKA_PROPERTIES="no.such.property=1"),
                GATEWAY_EXIT_CONFIG,
                "Kafka client settings refused",
            ),
            "unknown Kafka client property (processor)": (
                stack.processor("bad-kafka", PRGATE_KAFKA_PROPERTIES="no.such.property=1"),
                EXIT_CONFIG,
                "Kafka client settings refused",
            ),
            "processor metrics port taken": (
                stack.processor("metrics-taken", PRGATE_METRICS_LISTEN=taken_metrics),
                EXIT_LISTEN,
                "cannot serve metrics",
            ),
            "processor without Kafka": (
                stack.processor("no-kafka", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}"),
                EXIT_KAFKA_UNREACHABLE,
                "Kafka did not answer at start",
            ),
        }
        for what, (service, code, reason) in failing.items():
            fault_row.fault(what)
            stack.retired.append(service)
            assert exited(service, timeout=90) == code, f"{what}:\n{log_tail(service)}"
            event = "gateway_exit" if isinstance(service, GatewayProcess) else "processor_exit"
            assert_one_clear_line(service, event, code, reason)
            fault_row.note(f"{what}: exit {code}")


def test_a_fenced_processor_exits_1_through_its_stop_line(
    stack: FaultStack, fault_row: Row
) -> None:
    instance = f"same-{uuid.uuid4().hex[:6]}"
    metrics = f"127.0.0.1:{free_port()}"
    first = stack.processor(instance, PRGATE_METRICS_LISTEN=metrics)
    gateway = stack.gateway()
    ledger = Ledger()
    client = Client(lambda: [gateway], ledger, deadline_s=10.0)
    first_success(client, timeout=60)
    wait_log(first, '"event": "processor_started"', 30)
    # Same instance id, same transactional.id: its init_transactions fences the first one.
    stack.retired.append(first)
    second = stack.processor(instance)
    fault_row.fault("second processor with the same instance id")
    wait_log(second, '"event": "processor_started"', 60)
    # Commands on every partition: the first one's next transaction finds itself fenced.
    deadline = time.monotonic() + 60
    n = 0
    while first.alive():
        assert time.monotonic() < deadline, f"not fenced:\n{log_tail(first)}"
        n += 1
        client.send("OpenPullRequest", open_fields(n), svc.RESPONSE_MODE_ACCEPTED)
        time.sleep(0.05)
    assert exited(first, timeout=30) == EXIT_FATAL, log_tail(first)
    text = first.log_path.read_text(errors="replace")
    events = {entry["event"] for entry in log_events(text)}
    assert {"processor_failed", "processor_stopped"} <= events, log_tail(first)
    assert_one_clear_line(first, "processor_exit", EXIT_FATAL, "fatal error")
    # Its metrics server was shut down with the run (another process may take the port).
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", int(metrics.rsplit(":", 1)[1])))
    first_success(client, timeout=60)
    verdict = verify(stack.kafka, ledger, result_timeout=60)
    fault_row.take(verdict, ledger.calls)
    fault_row.note(f"fenced after {n} commands; exit 1 with its stop line; {verdict.summary()}")
    verdict.assert_ok()


# -- stop ----------------------------------------------------------------------------------------


def test_sigterm_drains_then_ends_streams_with_a_status(stack: FaultStack, fault_row: Row) -> None:
    drain_s = 3.0
    stack.processor()
    gateway = stack.gateway(PRGATE_DRAIN_S=str(drain_s), PRGATE_GRACE_PERIOD_S="5")
    client = Client(lambda: [gateway], Ledger(), deadline_s=10.0)
    first_success(client, timeout=60)
    pull_request_id = client.snapshot()[-1].pull_request_id
    with grpc.insecure_channel(gateway.target) as channel:
        health_watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(), timeout=60
        )
        assert next(health_watch).status == health_pb2.HealthCheckResponse.SERVING
        watch = gateway.queries().WatchPullRequest(
            query_service_pb2.WatchPullRequestRequest(pull_request_id=pull_request_id), timeout=60
        )
        assert next(watch).pull_request.pull_request_id == pull_request_id
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGTERM)
        stack.retired.append(gateway)
        fault_row.fault("SIGTERM gateway with open streams")
        signalled = time.monotonic()
        # Health first: load balancers stop sending new calls...
        assert next(health_watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        not_serving = time.monotonic() - signalled
        # ...while calls that still come are served during the drain window.
        got = gateway.queries().GetPullRequest(
            query_service_pb2.GetPullRequestRequest(pull_request_id=pull_request_id), timeout=5
        )
        assert got.pull_request.pull_request_id == pull_request_id
        assert time.monotonic() - signalled < drain_s, "the drain window was not served"
        with pytest_raises_rpc() as ended:
            next(watch)
        code, details = status_of(ended.error)
        ended_after = time.monotonic() - signalled
        assert code == grpc.StatusCode.UNAVAILABLE, ended.error
        assert details["ErrorInfo"].reason == "GATEWAY_SHUTTING_DOWN"
        assert details["RetryInfo"].retry_delay.ToNanoseconds() > 0
        assert ended_after >= drain_s - 0.5, f"stream ended {ended_after:.1f}s after SIGTERM"
    assert exited(gateway, timeout=30) == GATEWAY_EXIT_OK, log_tail(gateway)
    assert "gateway_stopped" in gateway.log_path.read_text()
    fault_row.note(
        f"NOT_SERVING after {not_serving:.2f}s; watch ended UNAVAILABLE+RetryInfo after"
        f" {ended_after:.1f}s (drain {drain_s}s); exit 0"
    )
    # Ctrl-C (SIGINT) is a person at a terminal: no drain window to wait for.
    interactive = stack.gateway(name="interactive", PRGATE_DRAIN_S="60")
    assert interactive.process is not None
    interactive.process.send_signal(signal.SIGINT)
    stack.retired.append(interactive)
    fault_row.fault("SIGINT gateway with a 60s drain window")
    assert exited(interactive, timeout=30) == GATEWAY_EXIT_OK, log_tail(interactive)


def test_sigterm_with_kafka_away_and_refusals_queued_drains_and_exits_0(
    private_kafka: PrivateKafka, tmp_path: Path, fault_row: Row
) -> None:
    broker, kafka = private_kafka.broker, private_kafka.kafka
    stack = open_stack(kafka, tmp_path)
    try:
        stack.processor()
        gateway = stack.gateway(PRGATE_DRAIN_S="2")
        client = Client(lambda: [gateway], Ledger(), deadline_s=10.0)
        first_success(client, timeout=60)
        broker.stop()
        fault_row.fault("broker stopped")
        # The field rules refuse these on the gateway, each refusal's record goes to the
        # refusal log's queue, where it waits for Kafka.
        refused = [
            client.send("OpenPullRequest", {**open_fields(n), "title": ""},
                        svc.RESPONSE_MODE_COMPLETED)
            for n in range(20)
        ]  # fmt: skip
        assert {call.code for call in refused} == {"INVALID_ARGUMENT"}, refused[:3]
        assert gateway.alive() and gateway.process is not None
        gateway.process.send_signal(signal.SIGTERM)
        stack.retired.append(gateway)
        fault_row.fault("SIGTERM gateway with Kafka away and 20 refusal records queued")
        signalled = time.monotonic()
        assert exited(gateway, timeout=60) == GATEWAY_EXIT_OK, log_tail(gateway)
        text = gateway.log_path.read_text(errors="replace")
        assert "gateway_stopped" in text, log_tail(gateway)
        assert {"event": "refusal_records_undelivered", "count": 20} in [
            {k: e.get(k) for k in ("event", "count")} for e in log_events(text)
        ], log_tail(gateway)
        assert "Traceback" not in text, text[-3000:]
        fault_row.note(
            f"20 refusals answered INVALID_ARGUMENT without Kafka; exit 0"
            f" {time.monotonic() - signalled:.1f}s after SIGTERM (drain 2s), records given up"
        )
    finally:
        close_stack(stack)
