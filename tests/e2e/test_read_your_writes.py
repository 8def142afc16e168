"""Read-your-writes across gateways (issue 14 item 5), on a real broker with two real gateway
processes and a real processor.

Without consistency tokens, a pull request opened through gateway A and approved through
gateway B right after was NOT_FOUND about one time in 15: B's read model had not read the
open's result or snapshot yet. With them, the client's session sends the open's token to B,
which waits until its read model has that version: never a stale answer, 1,000 times
(``PRGATE_RYW_ROUNDS`` to change). A token no gateway ever reaches ends the call within its
deadline with UNAVAILABLE and the versions in the details; a tampered one is INVALID_ARGUMENT
on the token's field.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_status import rpc_status
from helpers.kafka import free_port

from gateway.consistency_tokens import ConsistencyTokens, Position
from gateway.refusals import details_of
from prgate.client import Client, NotFound, RetryPolicy, Session
from prgate.kafka.settings import KafkaSettings
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, outcome_pb2, query_service_pb2
from tests.e2e.stack import GatewayProcess, Stack
from tests.e2e.test_cli import prgate, row
from tests.e2e.test_grpcurl import grpcurl

ROOT = Path(__file__).resolve().parents[2]
# The README's examples name the gateways by these addresses.
README_GATEWAYS = ("127.0.0.1:50051", "127.0.0.1:50052")

ROUNDS = int(os.environ.get("PRGATE_RYW_ROUNDS", "1000"))
WORKERS = 8
SUCCEEDED = outcome_pb2.COMMAND_STATE_SUCCEEDED


def two_gateways(
    stack: Stack, metrics_ports: tuple[int, int] | None = None
) -> tuple[GatewayProcess, GatewayProcess]:
    stack.processor()
    env: list[dict[str, str]] = [{}, {}]
    if metrics_ports is not None:
        env = [{"PRGATE_METRICS_LISTEN": f"127.0.0.1:{port}"} for port in metrics_ports]
    return stack.gateway(free_port(), "a", **env[0]), stack.gateway(free_port(), "b", **env[1])


def round_trip(clients: tuple[Client, Client], number: int) -> str:
    """Open through one gateway, approve through the other, read back through the first;
    returns what was wrong ("" for nothing)."""
    first, second = clients if number % 2 == 0 else clients[::-1]
    opened = first.open_pull_request(
        "acme/ryw", f"round {number}", "ada", f"feature/{uuid.uuid4().hex[:8]}", "main"
    )
    pull_request_id = opened.pull_request_id
    try:
        approved = second.approve(pull_request_id, "bob")
    except NotFound:
        return "NOT_FOUND on approve"
    if (approved.state, approved.result.version) != (SUCCEEDED, 2):
        return f"approve answered {approved.state} at version {approved.result.version}"
    seen = first.get(pull_request_id)
    if seen.version < 2 or [r.reviewer for r in seen.reviews] != ["bob"]:
        return f"get answered version {seen.version}"
    return ""


def test_open_on_one_gateway_act_on_another_never_reads_stale(stack: Stack) -> None:
    metrics_ports = (free_port(), free_port())
    gateway_a, gateway_b = two_gateways(stack, metrics_ports)
    session = Session()  # one client's memory, whichever gateway it talks to
    no_retry = RetryPolicy(max_attempts=1)
    with (
        Client(gateway_a.target, timeout=20, session=session, retry=no_retry) as on_a,
        Client(gateway_b.target, timeout=20, session=session, retry=no_retry) as on_b,
        ThreadPoolExecutor(WORKERS) as pool,
    ):
        started = time.monotonic()
        outcomes = list(pool.map(lambda n: round_trip((on_a, on_b), n), range(ROUNDS)))
        elapsed = time.monotonic() - started
    wrong = Counter(outcome for outcome in outcomes if outcome)
    # How often a gateway had to wait for its read model (a measurement, not a promise: how
    # often the race happens depends on the machine).
    waits = [
        (value(scrape(port), "version_waits"), value(scrape(port), "version_waits_timed_out"))
        for port in metrics_ports
    ]
    print(f"{ROUNDS} rounds in {elapsed:.1f} s; wrong: {dict(wrong)}; waits (a, b): {waits}")
    assert wrong == Counter(), wrong
    assert all(timed_out == 0 for _, timed_out in waits), waits


def call_status(call: object) -> tuple[grpc.StatusCode, dict[str, object]]:
    assert isinstance(call, grpc.RpcError)
    status = rpc_status.from_call(call)  # type: ignore[arg-type]
    assert status is not None
    return call.code(), dict(details_of(status))


def test_a_token_the_read_model_never_reaches_ends_the_call_within_its_deadline(
    stack: Stack, kafka_settings: KafkaSettings
) -> None:
    gateway_a, gateway_b = two_gateways(stack)
    opened = gateway_a.commands().OpenPullRequest(
        svc.OpenPullRequestRequest(
            command=commands_pb2.OpenPullRequest(
                repository="acme/ryw",
                title="behind",
                author="ada",
                source_branch="feature/behind",
                target_branch="main",
            )
        ),
        timeout=20,
    )
    pull_request_id = opened.receipt.pull_request_id
    # A token for a version no command made (minted with the deployment's key, as a gateway
    # of it would, so only "never reached" is wrong with it).
    tokens = ConsistencyTokens.for_deployment("", kafka_settings.topics.pull_requests)
    ahead = tokens.issue(Position(pull_request_id, 1_000))
    for gateway in (gateway_a, gateway_b):
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as ended:
            gateway.queries().GetPullRequest(
                query_service_pb2.GetPullRequestRequest(
                    pull_request_id=pull_request_id, consistency_token=ahead
                ),
                timeout=2.0,
            )
        elapsed = time.monotonic() - started
        code, details = call_status(ended.value)
        assert code == grpc.StatusCode.UNAVAILABLE, ended.value
        assert 1.0 < elapsed < 2.0  # waited, and answered before the deadline
        info = details["ErrorInfo"]
        assert info.reason == "READ_MODEL_BEHIND"  # type: ignore[attr-defined]
        assert dict(info.metadata) == {  # type: ignore[attr-defined]
            "pull_request_id": pull_request_id,
            "wanted_version": "1000",
            "reached_version": "1",
        }
        # A command with it produces nothing: the pull request stays at version 1.
        with pytest.raises(grpc.RpcError) as command_ended:
            gateway.commands().ApprovePullRequest(
                svc.ApprovePullRequestRequest(
                    command=commands_pb2.ApprovePullRequest(
                        pull_request_id=pull_request_id, reviewer="bob"
                    ),
                    options=svc.CommandOptions(consistency_token=ahead),
                ),
                timeout=2.0,
            )
        assert command_ended.value.code() == grpc.StatusCode.UNAVAILABLE
    current = gateway_b.queries().GetPullRequest(
        query_service_pb2.GetPullRequestRequest(
            pull_request_id=pull_request_id, consistency_token=opened.receipt.consistency_token
        ),
        timeout=5,
    )
    assert current.pull_request.version == 1
    assert tokens.read(current.consistency_token, "t") == Position(pull_request_id, 1)

    # Tampered, or of another deployment: INVALID_ARGUMENT on the token's field, at once.
    token = opened.receipt.consistency_token
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    foreign = ConsistencyTokens.for_deployment("", "elsewhere.pull-requests").issue(
        Position(pull_request_id, 1)
    )
    for bad in (tampered, foreign):
        with pytest.raises(grpc.RpcError) as refused:
            gateway_b.queries().GetPullRequest(
                query_service_pb2.GetPullRequestRequest(
                    pull_request_id=pull_request_id, consistency_token=bad
                ),
                timeout=5,
            )
        code, details = call_status(refused.value)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        (violation,) = details["BadRequest"].field_violations  # type: ignore[attr-defined]
        assert (violation.field, violation.reason) == (
            "consistency_token",
            "INVALID_CONSISTENCY_TOKEN",
        )


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


def value(text: str, kind: str) -> float:
    """The read model's running total ``prgate_gateway_read_model_<kind>_total`` in a scrape."""
    found = re.search(rf"^prgate_gateway_read_model_{kind}_total (\S+)$", text, re.M)
    assert found, f"no read model count {kind} in:\n{text}"
    return float(found.group(1))


def readme_block(name: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(rf"<!-- {name}:begin -->\n```sh\n(.*?)```\n<!-- {name}:end -->", text, re.S)
    assert block, f"README lost its {name} block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def as_written(line: str, gateways: tuple[GatewayProcess, ...], values: dict[str, str]) -> str:
    for address, gateway in zip(README_GATEWAYS, gateways, strict=True):
        line = line.replace(address, gateway.target)
    for name, value in values.items():
        line = line.replace(f"${name}", value)
    assert "$" not in line, line
    return line


def test_the_readme_consistency_examples_run_as_written(stack: Stack, tmp_path: Path) -> None:
    gateways = two_gateways(stack)
    # prgate pr: the session goes from one run to the next through the file.
    env = {
        **os.environ,
        "PRGATE_CONSISTENCY_FILE": str(tmp_path / "tokens.json"),
        "PYTHONUNBUFFERED": "1",
    }
    values: dict[str, str] = {}
    outputs = []
    for line in readme_block("consistency-cli-examples"):
        args = shlex.split(as_written(line, gateways, values))
        assert args[0] == "prgate", line
        done = prgate(args[1:], env)
        outputs.append(done.stdout)
        values.setdefault("PR", row(done.stdout, "pull request"))
    _, approved, read = outputs
    assert row(approved, "state") == "SUCCEEDED" and row(approved, "version") == "2"
    assert row(read, "version") == "2" and row(read, "reviews") == "bob"
    kept = Session.from_json((tmp_path / "tokens.json").read_text())
    assert kept.token(values["PR"])

    # grpcurl: each answer's consistencyToken goes into the next line.
    values = {}
    answers = []
    for line in readme_block("consistency-grpcurl-examples"):
        args = shlex.split(as_written(line, gateways, values))
        assert args[0] == "grpcurl", line
        done = subprocess.run(
            [grpcurl(), "-max-time", "30", *args[1:]],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        answer = json.loads(done.stdout)
        answers.append(answer)
        receipt = answer.get("receipt", {})
        values.setdefault("PR", receipt.get("pullRequestId", ""))
        values["TOKEN"] = receipt.get("consistencyToken") or answer["consistencyToken"]
    _, approve, get = answers
    assert approve["receipt"]["state"] == "COMMAND_STATE_SUCCEEDED"
    assert approve["receipt"]["result"]["version"] == "2"
    assert get["pullRequest"]["version"] == "2"
    assert [r["reviewer"] for r in get["pullRequest"]["reviews"]] == ["bob"]
