"""Bad input on the wire: every RPC gets random and boundary messages (hypothesis), oversize
messages, and random bytes as the request body over a raw channel.

Every answer is a proper status code with a message, never INTERNAL or UNKNOWN; no process
dies; and a refused command puts no record on the commands topic (its offsets are compared
before and after every call). One gateway and one processor serve the whole module.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import query_service_pb2 as qry
from tests.e2e.stack import GatewayProcess
from tests.faults.conftest import LONG, LONG_SCALE, SHORT_SCALE, FaultStack, close_stack, open_stack
from tests.faults.ledger import Ledger
from tests.faults.load import Client, describe_error, first_success, open_fields, step_command
from tests.faults.readback import OffsetProbe
from tests.faults.summary import Row

EXAMPLES = (LONG_SCALE if LONG else SHORT_SCALE).examples
MAX_MESSAGE = 1024 * 1024  # the gateway's default PRGATE_MAX_MESSAGE_BYTES
COMMAND_SERVICE = "/prgate.v1.PullRequestCommandService/"
QUERY_SERVICE = "/prgate.v1.PullRequestQueryService/"
COMMAND_RPCS = (
    "OpenPullRequest",
    "ChangePullRequestTitle",
    "ApprovePullRequest",
    "RecordCheckResult",
    "MergePullRequest",
    "ClosePullRequest",
    "ReopenPullRequest",
    "RevertPullRequest",
)
UNARY = {
    **{rpc: COMMAND_SERVICE for rpc in COMMAND_RPCS},
    "GetPullRequest": QUERY_SERVICE,
    "ListPullRequests": QUERY_SERVICE,
}
STREAMING = {"WatchCommand": COMMAND_SERVICE, "WatchPullRequest": QUERY_SERVICE}
# What a client may be told about a message it made up. Never INTERNAL, UNKNOWN, UNAVAILABLE.
PROPER = {
    "OK",
    "INVALID_ARGUMENT",
    "FAILED_PRECONDITION",
    "NOT_FOUND",
    "ABORTED",
    "ALREADY_EXISTS",
    "RESOURCE_EXHAUSTED",
}
# A watch stream's client deadline (seconds). WatchCommand of an id the gateway does not know
# waits until just before it (reply_budget's margin, 0.2 s here) and then answers NOT_FOUND:
# the answer must come from the gateway, never from the client's own deadline (a hang).
STREAM_DEADLINE_S = 2.0
HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=not LONG,
)


@dataclass
class Wire:
    stack: FaultStack
    gateway: GatewayProcess
    kafka: KafkaSettings
    commands: OffsetProbe
    pull_requests: list[str]
    # A plain channel for typed and raw calls alike, without a client-side size limit, so
    # oversize messages meet the server's limit.
    channel: grpc.Channel
    answers: Counter[str] = field(default_factory=Counter)


@pytest.fixture(scope="module")
def wire(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wire]:
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:12]}.", partitions=3
    )
    ensure_topics(kafka)
    stack = open_stack(kafka, Path(tmp_path_factory.mktemp("wire")))
    probe: OffsetProbe | None = None
    try:
        stack.processor()
        gateway = stack.gateway()
        client = Client(lambda: [gateway], Ledger(), deadline_s=10.0)
        first_success(client, timeout=60)
        prs = [client.snapshot()[-1].pull_request_id]
        # A second pull request that is merged, so Revert and friends meet every state.
        merged = client.send("OpenPullRequest", open_fields(2), svc.RESPONSE_MODE_COMPLETED)
        for step in ("approve", "check_success", "merge"):
            rpc, fields = step_command(step, merged.pull_request_id, 0)
            client.send(rpc, fields, svc.RESPONSE_MODE_COMPLETED)
        prs.append(merged.pull_request_id)
        probe = OffsetProbe(kafka, kafka.topics.commands)
        channel = grpc.insecure_channel(
            gateway.target, options=[("grpc.max_send_message_length", -1)]
        )
        yield Wire(stack, gateway, kafka, probe, prs, channel)
        channel.close()
    finally:
        if probe is not None:
            probe.close()
        close_stack(stack)


@pytest.fixture
def row(wire: Wire, fault_row: Row) -> Iterator[Row]:
    wire.answers.clear()
    yield fault_row
    fault_row.sent = sum(wire.answers.values())
    fault_row.note(f"answers: {dict(sorted(wire.answers.items()))}")
    # Nothing a client sent brought a process down, and the gateway still serves.
    wire.stack.assert_alive()
    wire.gateway.wait_serving(timeout=10)


# -- strategies -----------------------------------------------------------------------------

CHARS = ("a", "é", "😀", "\x00", "\n", " ", "\u2028", "\ufeff")
SIZES = (0, 1, 127, 128, 129, 255, 256, 257, 4096, 4097, 65536, 65537)


def boundary_text() -> st.SearchStrategy[str]:
    return st.builds(lambda c, n: c * n, st.sampled_from(CHARS), st.sampled_from(SIZES))


def ids(wire: Wire) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(wire.pull_requests),
        st.sampled_from(["", " ", "pr-unknown", "../etc/passwd", "pr-\x00", "a" * 128, "a" * 129]),
        st.text(max_size=40),
    )


def texts() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=60), boundary_text())


def enums() -> st.SearchStrategy[int]:
    return st.one_of(st.integers(-2, 6), st.integers(-(2**31), 2**31 - 1))


BASELINE_STEP = {
    "ChangePullRequestTitle": "title",
    "ApprovePullRequest": "approve",
    "RecordCheckResult": "check_success",
    "MergePullRequest": "merge",
    "ClosePullRequest": "close",
    "ReopenPullRequest": "reopen",
    "RevertPullRequest": "revert",
}


def baseline(rpc: str, pr: str) -> dict[str, Any]:
    """A well-formed command of ``rpc`` (which the current state may still refuse)."""
    if rpc == "OpenPullRequest":
        return open_fields(0)
    return step_command(BASELINE_STEP[rpc], pr, 0)[1]


def command_request(rpc: str, wire: Wire) -> st.SearchStrategy[Any]:
    """A ``<rpc>Request``: a well-formed command with some fields (or all) made random, and
    random options."""
    command_fields = getattr(svc, f"{rpc}Request")().command.DESCRIPTOR.fields

    def strategy_of(descriptor: Any) -> st.SearchStrategy[Any]:
        if descriptor.enum_type is not None:
            return enums()
        if descriptor.name == "pull_request_id":
            return ids(wire)
        return texts()

    parts = st.fixed_dictionaries(
        {
            "valid": st.sampled_from(wire.pull_requests).map(lambda pr: baseline(rpc, pr)),
            "random": st.fixed_dictionaries({f.name: strategy_of(f) for f in command_fields}),
            "chosen": st.sets(st.sampled_from([f.name for f in command_fields])),
            "mode": st.one_of(st.sampled_from(range(3)), enums()),
            "key": st.one_of(st.just(""), st.text(max_size=20), st.just("k" * 257)),
            "expected": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.integers(0, 10)),
        }
    )
    return parts.map(lambda p: _command_request(rpc, p))


def _command_request(rpc: str, parts: dict[str, Any]) -> Any:
    request = getattr(svc, f"{rpc}Request")()
    for name, value in parts["valid"].items():
        setattr(request.command, name, value)
    for name in parts["chosen"]:
        setattr(request.command, name, parts["random"][name])
    request.options.response_mode = parts["mode"]
    request.options.idempotency_key = parts["key"]
    if parts["expected"] is not None:
        request.options.expected_version = parts["expected"]
    return request


# -- calling and judging ---------------------------------------------------------------------


def judge_unary(wire: Wire, method: str, request: Any, *, raw: bool = False) -> str:
    """Call ``method`` once and assert the answer is proper; returns the code's name."""
    service = UNARY[method]
    call = wire.channel.unary_unary(
        service + method,
        request_serializer=None if raw else type(request).SerializeToString,
        response_deserializer=None,
    )
    before = wire.commands.count()
    code, message, reason = "OK", "", ""
    try:
        call(request, timeout=10.0)
    except grpc.RpcError as exc:
        code, message, reason, _ = describe_error(exc)
    after = wire.commands.count()
    wire.answers[code] += 1
    shown = repr(request)[:300]
    assert code in PROPER or (code == "DEADLINE_EXCEEDED" and reason == "RESULT_NOT_IN_TIME"), (
        f"{method}: {code} {message!r} for {shown}"
    )
    if code != "OK":
        assert message.strip(), f"{method}: {code} without a message for {shown}"
        if reason != "RESULT_NOT_IN_TIME":
            assert after == before, f"{method}: refused ({code}) yet {after - before} record(s)"
    return code


def judge_stream(wire: Wire, method: str, request: Any, *, raw: bool = False) -> str:
    """Open ``method``'s stream and assert a proper answer: a refusal with a message, a
    stream that ends on its own, or a live stream (its first message arrived; the test then
    cancels it). DEADLINE_EXCEEDED counts only when the gateway said it (ErrorInfo reason
    RESULT_NOT_IN_TIME); the client's own deadline ending a silent stream is a hang."""
    service = STREAMING[method]
    call = wire.channel.unary_stream(
        service + method,
        request_serializer=None if raw else type(request).SerializeToString,
        response_deserializer=None,
    )
    code, message, reason = "OK", "", ""
    stream = call(request, timeout=STREAM_DEADLINE_S)
    try:
        for _ in stream:
            if method == "WatchPullRequest":
                stream.cancel()  # live: the pull request's current state arrived
                break
    except grpc.RpcError as exc:
        code, message, reason, _ = describe_error(exc)
    shown = repr(request)[:300]
    answer = judge_stream_answer(code, reason)
    wire.answers[answer] += 1
    assert answer in PROPER, f"{method}: {code}/{reason} {message!r} for {shown}"
    assert code == "OK" or message.strip(), f"{method}: {code} without a message"
    return code


def judge_stream_answer(code: str, reason: str) -> str:
    """The answer a stream's (code, ErrorInfo reason) counts as: ``"HANG"`` for a deadline
    the gateway did not explain, else the code (a gateway's RESULT_NOT_IN_TIME is OK: the
    command is on Kafka and was not done in time)."""
    if code == "DEADLINE_EXCEEDED":
        return "OK" if reason == "RESULT_NOT_IN_TIME" else "HANG"
    return code


@pytest.mark.parametrize(
    ("code", "reason", "proper"),
    [
        ("DEADLINE_EXCEEDED", "", False),  # the client's deadline ended a silent stream
        ("DEADLINE_EXCEEDED", "RESULT_NOT_IN_TIME", True),
        ("NOT_FOUND", "UNKNOWN_COMMAND", True),
        ("UNAVAILABLE", "", False),
        ("INTERNAL", "", False),
    ],
)
def test_a_hang_is_not_a_refusal(code: str, reason: str, proper: bool) -> None:
    """The judge itself: a stream that only the client's deadline ended fails the test."""
    assert (judge_stream_answer(code, reason) in PROPER) is proper


# -- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("rpc", COMMAND_RPCS)
def test_random_commands_get_proper_answers(wire: Wire, row: Row, rpc: str) -> None:
    @HYPOTHESIS
    @given(request=command_request(rpc, wire))
    def check(request: Any) -> None:
        judge_unary(wire, rpc, request)

    check()


def test_random_queries_and_watches_get_proper_answers(wire: Wire, row: Row) -> None:
    @HYPOTHESIS
    @given(
        pr=ids(wire),
        listing=st.builds(
            qry.ListPullRequestsRequest,
            page_size=st.one_of(st.integers(-2, 1001), st.integers(-(2**31), 2**31 - 1)),
            status=enums(),
            repository=texts(),
            page_token=st.one_of(st.text(max_size=40), boundary_text()),
        ),
        command_id=st.one_of(ids(wire), st.just(uuid.uuid4().hex)),
    )
    def check(pr: str, listing: Any, command_id: str) -> None:
        judge_unary(wire, "GetPullRequest", qry.GetPullRequestRequest(pull_request_id=pr))
        judge_unary(wire, "ListPullRequests", listing)
        judge_stream(wire, "WatchPullRequest", qry.WatchPullRequestRequest(pull_request_id=pr))
        judge_stream(wire, "WatchCommand", svc.WatchCommandRequest(command_id=command_id))

    check()


@pytest.mark.parametrize("method", [*UNARY, *STREAMING])
def test_random_bytes_as_request_body(wire: Wire, row: Row, method: str) -> None:
    @HYPOTHESIS
    @given(body=st.one_of(st.binary(max_size=512), st.sampled_from([b"", b"\x00", b"\xff" * 64])))
    def check(body: bytes) -> None:
        if method in STREAMING:
            judge_stream(wire, method, body, raw=True)
        else:
            judge_unary(wire, method, body, raw=True)

    check()


@pytest.mark.parametrize("rpc", ["OpenPullRequest", "ChangePullRequestTitle", "MergePullRequest"])
def test_messages_up_to_and_beyond_the_size_limit(wire: Wire, row: Row, rpc: str) -> None:
    pr = wire.pull_requests[0]
    field = {
        "OpenPullRequest": "description",
        "ChangePullRequestTitle": "title",
        "MergePullRequest": "commit_message_override",
    }[rpc]
    answers = {}
    for size in (MAX_MESSAGE // 2, MAX_MESSAGE - 1024, MAX_MESSAGE + 1, 4 * MAX_MESSAGE):
        request = getattr(svc, f"{rpc}Request")()
        if rpc != "OpenPullRequest":
            request.command.pull_request_id = pr
        setattr(request.command, field, "x" * size)
        answers[size] = judge_unary(wire, rpc, request)
    # Below the transport limit the field rules refuse it; above, the transport does.
    assert answers[MAX_MESSAGE // 2] == "INVALID_ARGUMENT", answers
    assert answers[MAX_MESSAGE - 1024] == "INVALID_ARGUMENT", answers
    assert answers[MAX_MESSAGE + 1] == "RESOURCE_EXHAUSTED", answers
    assert answers[4 * MAX_MESSAGE] == "RESOURCE_EXHAUSTED", answers
