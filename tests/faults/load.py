"""A load of real commands through one or more gateways, every call recorded in a Ledger.

Each worker thread owns its pull requests and walks each through a short script (title,
approve, checks, merge, revert / close, reopen ...), with the response mode chosen at random
(ACCEPTED, COMPLETED or the command's default). Every call carries an idempotency key, so a
call cut off by a fault can be retried with the same key (same command id) on another gateway.
Rejections are normal outcomes here: what matters is what the gateway *said*, which the
ledger keeps for :func:`tests.faults.verify.verify`.

Every loop is bounded in count and time: ``max_commands`` per worker, the call deadline, and
``Load.stop()`` joins with a timeout.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_status import rpc_status

from gateway.errors import details_of
from gateway.idempotency import command_id_for_key, open_ids_for_key
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import outcome_pb2, pull_request_pb2
from prgate.v1.results_pb2 import CommandResult
from tests.e2e.stack import GatewayProcess
from tests.faults.ledger import Answer, Ledger

MODES = (
    svc.RESPONSE_MODE_ACCEPTED,
    svc.RESPONSE_MODE_COMPLETED,
    svc.RESPONSE_MODE_UNSPECIFIED,
)
# What a pull request goes through after it was opened; rejections along the way are fine.
SCRIPTS: tuple[tuple[str, ...], ...] = (
    ("title", "approve", "check_success", "merge", "revert"),
    ("title", "check_failure", "close", "reopen", "title", "approve", "check_success", "merge"),
    ("approve", "close", "reopen", "close"),
)
# Reasons in ErrorInfo that mean "the command is on Kafka" although the call did not succeed.
ACCEPTED_REASONS = frozenset({"RESULT_NOT_IN_TIME", "COMMAND_FAILED"})


@dataclass(frozen=True)
class Call:
    """One RPC as the client saw it."""

    rpc: str
    command_id: str
    pull_request_id: str
    code: str  # grpc.StatusCode name, OK included
    state: str  # receipt state name on OK, else ""
    reason: str  # ErrorInfo reason, "" when the error carried none
    message: str
    deadline_s: float
    wall_s: float
    target: str
    key: str = ""
    mode: int = 0
    fields: tuple[tuple[str, Any], ...] = ()

    @property
    def accepted(self) -> bool:
        if self.code == "OK":
            return self.state in ("COMMAND_STATE_ACCEPTED", "COMMAND_STATE_SUCCEEDED")
        return self.reason in ACCEPTED_REASONS


def build(rpc: str, fields: dict[str, Any], mode: int, key: str) -> Any:
    """The ``<rpc>Request`` with ``fields`` as its command and the given options."""
    request = getattr(svc, f"{rpc}Request")()
    command = request.command
    for name, value in fields.items():
        setattr(command, name, value)
    request.options.response_mode = mode
    request.options.idempotency_key = key
    return request


def step_command(step: str, pr: str, n: int) -> tuple[str, dict[str, Any]]:
    """The RPC and command fields of one script step on pull request ``pr``."""
    success, failure = (
        pull_request_pb2.CHECK_CONCLUSION_SUCCESS,
        pull_request_pb2.CHECK_CONCLUSION_FAILURE,
    )
    table: dict[str, tuple[str, dict[str, Any]]] = {
        "title": ("ChangePullRequestTitle", {"title": f"Title {n}", "changed_by": "ada"}),
        "approve": ("ApprovePullRequest", {"reviewer": "bob"}),
        "check_success": (
            "RecordCheckResult",
            {"check_name": "ci", "conclusion": success},
        ),
        "check_failure": ("RecordCheckResult", {"check_name": "ci", "conclusion": failure}),
        "merge": ("MergePullRequest", {"merged_by_user": "bob"}),
        "revert": ("RevertPullRequest", {"actor": "bob", "reason": "broke the build"}),
        "close": ("ClosePullRequest", {"actor": "ada"}),
        "reopen": ("ReopenPullRequest", {"actor": "ada"}),
    }
    rpc, fields = table[step]
    return rpc, {"pull_request_id": pr, **fields}


def open_fields(n: int) -> dict[str, Any]:
    return {
        "repository": "acme/widgets",
        "title": f"Widget {n}",
        "description": "load from tests/faults",
        "author": "ada",
        "source_branch": f"feature/w{n}",
        "target_branch": "main",
    }


class Client:
    """Sends commands to gateways and records each call (thread-safe).

    ``targets()`` lists the gateways to use, in order of preference; a call cut off with
    UNAVAILABLE is retried (same idempotency key) on the next one, at most ``retries`` times.
    """

    def __init__(
        self,
        targets: Callable[[], Sequence[GatewayProcess]],
        ledger: Ledger,
        *,
        deadline_s: float = 6.0,
        retries: int = 0,
    ) -> None:
        self._targets = targets
        self.ledger = ledger
        self.deadline_s = deadline_s
        self.retries = retries
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.in_flight = 0
        # Calls in flight per gateway name (GatewayProcess.name).
        self.in_flight_on: Counter[str] = Counter()

    def send(
        self,
        rpc: str,
        fields: dict[str, Any],
        mode: int,
        *,
        key: str | None = None,
        first_target: int = 0,
    ) -> Call:
        """One command (plus retries on UNAVAILABLE); returns the last call's outcome."""
        key = key or uuid.uuid4().hex
        call = self._once(rpc, fields, mode, key, first_target)
        for attempt in range(1, self.retries + 1):
            if call.code != "UNAVAILABLE":
                break
            time.sleep(0.2 * attempt)
            call = self._once(rpc, fields, mode, key, first_target + attempt)
        return call

    def _once(self, rpc: str, fields: dict[str, Any], mode: int, key: str, index: int) -> Call:
        targets = self._targets()
        gateway = targets[index % len(targets)]
        request = build(rpc, fields, mode, key)
        pr = fields.get("pull_request_id", "")
        if rpc == "OpenPullRequest":
            command_id, pr = open_ids_for_key("", key)
        else:
            command_id = command_id_for_key("", key, pr)
        started = time.monotonic()
        code, state, reason, message = "OK", "", "", ""
        told_id, told_pr, told_result = "", "", None
        with self._lock:
            self.in_flight += 1
            self.in_flight_on[gateway.name] += 1
        try:
            response = getattr(gateway.commands(), rpc)(request, timeout=self.deadline_s)
            receipt = response.receipt
            state = outcome_pb2.CommandState.Name(receipt.state)
            told_id, told_pr = receipt.command_id, receipt.pull_request_id
            if receipt.HasField("result"):
                told_result = CommandResult()
                told_result.CopyFrom(receipt.result)
            pr = receipt.pull_request_id or pr
        except grpc.RpcError as exc:
            code, message, reason, found_id = describe_error(exc)
            told_id = found_id
        finally:
            with self._lock:
                self.in_flight -= 1
                self.in_flight_on[gateway.name] -= 1
        call = Call(
            rpc,
            command_id,
            pr,
            code,
            state,
            reason,
            message,
            self.deadline_s,
            time.monotonic() - started,
            gateway.name,
            key,
            mode,
            tuple(fields.items()),
        )
        self.ledger.record(
            command_id,
            rpc,
            state or (f"{code}/{reason}" if reason else code),
            accepted=call.accepted,
            pull_request_id=pr,
            answer=Answer(
                code,
                state,
                reason,
                told_id,
                told_pr,
                told_result,
                at=time.monotonic(),
            ),
        )
        with self._lock:
            self.calls.append(call)
        return call

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)


def describe_error(exc: grpc.RpcError) -> tuple[str, str, str, str]:
    """(code name, message, ErrorInfo reason, command id from ErrorInfo) of a failed call."""
    code = exc.code().name  # type: ignore[attr-defined]
    message = exc.details() or ""  # type: ignore[attr-defined]
    reason, command_id = "", ""
    try:
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    except ValueError:
        status = None
    if status is not None:
        info = details_of(status).get("ErrorInfo")
        if info is not None:
            reason = info.reason  # type: ignore[attr-defined]
            command_id = info.metadata.get("command_id", "")  # type: ignore[attr-defined]
    return code, message, reason, command_id


class Load:
    """``workers`` threads sending commands until ``stop()`` or ``max_commands`` each."""

    def __init__(
        self,
        client: Client,
        *,
        workers: int,
        max_commands: int,
        seed: int,
        think_s: float = 0.02,
        open_prs: int = 3,
        pin_target: int | None = None,
    ) -> None:
        """``pin_target``: every worker starts its calls on that gateway (else spread)."""
        self.client = client
        self._workers = workers
        self._max_commands = max_commands
        self._seed = seed
        self._think_s = think_s
        self._open_prs = open_prs
        self._pin_target = pin_target
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self) -> Load:
        for index in range(self._workers):
            thread = threading.Thread(
                target=self._guarded, args=(index,), name=f"faults-load-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the workers to stop and wait for their calls in flight (bounded)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"load workers still running after {timeout}s: {alive}"
        assert not self.errors, f"load workers failed: {self.errors!r}"

    def wait(self, timeout: float) -> None:
        """Wait until every worker sent its ``max_commands`` (bounded), then stop."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self.stop(timeout=max(1.0, deadline - time.monotonic()))

    def _guarded(self, index: int) -> None:
        try:
            self._work(index)
        except BaseException as exc:  # surfaced by stop()
            self.errors.append(exc)

    def _work(self, index: int) -> None:
        rng = random.Random(self._seed * 1000 + index)
        prs: list[tuple[str, list[str]]] = []
        target = index if self._pin_target is None else self._pin_target
        for n in range(self._max_commands):
            if self._stop.is_set():
                return
            mode = rng.choice(MODES)
            if len(prs) < self._open_prs or rng.random() < 0.1:
                call = self.client.send(
                    "OpenPullRequest", open_fields(n), mode, first_target=target
                )
                if call.code == "OK":
                    prs.append((call.pull_request_id, list(rng.choice(SCRIPTS))))
            else:
                slot = rng.randrange(len(prs))
                pr, steps = prs[slot]
                rpc, fields = step_command(steps.pop(0), pr, n)
                if not steps:
                    prs.pop(slot)
                self.client.send(rpc, fields, mode, first_target=target)
            if self._think_s:
                self._stop.wait(rng.uniform(0, 2 * self._think_s))


def first_success(client: Client, timeout: float) -> float:
    """Open pull requests (COMPLETED) until one SUCCEEDED: gateway and processor both serve.

    Returns the seconds it took; fails the test after ``timeout`` seconds.
    """
    started = time.monotonic()
    last: Call | None = None
    attempt = 0
    while time.monotonic() - started < timeout:
        attempt += 1
        last = client.send("OpenPullRequest", open_fields(attempt), svc.RESPONSE_MODE_COMPLETED)
        if last.code == "OK" and last.state == "COMMAND_STATE_SUCCEEDED":
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"no command SUCCEEDED within {timeout}s; last call: {last}")
