"""Sizes and text at the boundary (issue 12, items 4-7), through real gateways, a real
processor and a real broker.

- A pull request stops growing at its limits: the 4,300 distinct check names of the issue are
  refused once ``PRGATE_MAX_CHECKS`` is reached, by the processor (behind a gateway configured
  looser, as an old or misconfigured one would be) and by a gateway with the defaults; the
  processor never aborts a transaction over it, and an unrelated pull request on the same
  partition keeps completing.
- A ListPullRequests page stops at the gRPC message limit and the listing goes on with its
  token, on any gateway of the deployment; tampered, foreign, made-up and invalid-UTF-8
  tokens are INVALID_ARGUMENT on ``page_token``; nothing of it logs a traceback.
- A title with a bidirectional control is refused and nothing reaches Kafka; an old snapshot
  holding one is printed escaped by the CLI; repository names are one whatever their case.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from grpc_status import rpc_status
from helpers.kafka import produce

from gateway.errors import details_of
from prgate.domain import Policy, max_snapshot_bytes
from prgate.kafka import codec
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import pull_request_pb2
from prgate.v1 import query_service_pb2 as qry
from tests.e2e.stack import ROOT, GatewayProcess
from tests.faults.conftest import FaultStack, close_stack, log_tail, open_stack
from tests.faults.load import Call, Client, first_success, open_fields, step_command
from tests.faults.readback import OffsetProbe, read_topic
from tests.faults.summary import Row
from tests.faults.verify import Ledger, verify

COMPLETED = svc.RESPONSE_MODE_COMPLETED
SUCCESS = pull_request_pb2.CHECK_CONCLUSION_SUCCESS
DEFAULTS = Policy()
CHECK_NAMES = 4300  # the case: distinct names of ~250 characters


@pytest.fixture
def one_partition(kafka_bootstrap: str, tmp_path: Path) -> Iterator[FaultStack]:
    """Services on topics of one partition: every pull request shares it."""
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:12]}.", partitions=1
    )
    ensure_topics(kafka)
    stack = open_stack(kafka, tmp_path)
    try:
        yield stack
    finally:
        close_stack(stack)


def check_name(i: int) -> str:
    return f"check-{i:05d}-" + "c" * 238  # 250 characters


def no_traceback(*services: object) -> None:
    for service in services:
        text = service.log_path.read_text(errors="replace")  # type: ignore[attr-defined]
        assert "Traceback" not in text, log_tail(service)  # type: ignore[arg-type]


def test_a_pull_request_stops_growing_at_its_limits(
    one_partition: FaultStack, fault_row: Row
) -> None:
    stack = one_partition
    processor = stack.processor()
    # An "old" gateway that lets everything through to the processor (its limits are the
    # issue's numbers), and one with the defaults.
    loose = stack.gateway(
        name="loose",
        PRGATE_MAX_CHECKS=str(CHECK_NAMES),
        PRGATE_MAX_REVIEWS="200",
        PRGATE_MAX_MESSAGE_BYTES=str(4 * 1024 * 1024),
    )
    strict = stack.gateway(name="strict")
    ledger = Ledger()
    via_loose = Client(lambda: [loose], ledger, deadline_s=30.0)
    via_strict = Client(lambda: [strict], ledger, deadline_s=30.0)
    first_success(via_strict, timeout=60)
    growing = via_strict.send("OpenPullRequest", open_fields(1), COMPLETED).pull_request_id
    bystander = via_strict.send("OpenPullRequest", open_fields(2), COMPLETED).pull_request_id

    # The unrelated pull request keeps completing while the other one is flooded.
    bystander_calls: list[Call] = []
    flooding = threading.Event()
    flooding.set()

    def bystander_loop() -> None:
        n = 0
        while flooding.is_set() and n < 200:
            n += 1
            rpc, fields = step_command("title", bystander, n)
            bystander_calls.append(via_strict.send(rpc, fields, COMPLETED))

    def record(i: int) -> Call:
        fields = {"pull_request_id": growing, "check_name": check_name(i), "conclusion": SUCCESS}
        return via_loose.send("RecordCheckResult", fields, COMPLETED)

    watcher = threading.Thread(target=bystander_loop, name="bystander")
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            flood = list(pool.map(record, range(CHECK_NAMES)))
    finally:
        flooding.clear()
        watcher.join(timeout=60)
    fault_row.fault(f"{CHECK_NAMES} distinct check names on one pull request")
    outcomes = Counter((c.code, c.state or c.reason) for c in flood)
    assert outcomes == {
        ("OK", "COMMAND_STATE_SUCCEEDED"): DEFAULTS.max_checks,
        ("FAILED_PRECONDITION", "TOO_MANY_CHECKS"): CHECK_NAMES - DEFAULTS.max_checks,
    }, outcomes
    refused = next(c for c in flood if c.code != "OK")
    assert f"at most {DEFAULTS.max_checks} distinct check names" in refused.message
    assert bystander_calls and all(
        c.code == "OK" and c.state == "COMMAND_STATE_SUCCEEDED" for c in bystander_calls
    ), Counter((c.code, c.reason) for c in bystander_calls)

    # The gateway with the defaults refuses a new name itself: nothing reaches Kafka. A check
    # already recorded can still be reported.
    probe = OffsetProbe(stack.kafka, stack.kafka.topics.commands)
    try:
        before = probe.count()
        fields = {"pull_request_id": growing, "check_name": "one-more", "conclusion": SUCCESS}
        refused_here = via_strict.send("RecordCheckResult", fields, COMPLETED)
        assert (refused_here.code, refused_here.reason) == (
            "FAILED_PRECONDITION",
            "TOO_MANY_CHECKS",
        )
        assert probe.count() == before
    finally:
        probe.close()
    fields = {"pull_request_id": growing, "check_name": check_name(0), "conclusion": SUCCESS}
    assert (
        via_strict.send("RecordCheckResult", fields, COMPLETED).state == "COMMAND_STATE_SUCCEEDED"
    )

    # Reviews from distinct reviewers stop at their limit the same way, at both layers.
    reviews = [
        via_loose.send(
            "ApprovePullRequest", {"pull_request_id": growing, "reviewer": f"r{i}"}, COMPLETED
        )
        for i in range(DEFAULTS.max_reviews + 3)
    ]
    assert [c.code for c in reviews].count("OK") == DEFAULTS.max_reviews
    assert {c.reason for c in reviews if c.code != "OK"} == {"TOO_MANY_REVIEWS"}
    extra = via_strict.send(
        "ApprovePullRequest", {"pull_request_id": growing, "reviewer": "zed"}, COMPLETED
    )
    assert (extra.code, extra.reason) == ("FAILED_PRECONDITION", "TOO_MANY_REVIEWS")

    # The last snapshot holds exactly the limits and stays within the computed bound; the
    # processor never aborted a transaction and still serves the partition.
    snapshots = read_topic(stack.kafka, stack.kafka.topics.pull_requests)
    last = [
        codec.decode_snapshot(m.key(), m.value(), m.headers())
        for m in snapshots
        if codec.key_text(m.key()) == growing
    ][-1]
    assert (len(last.checks), len(last.reviews)) == (DEFAULTS.max_checks, DEFAULTS.max_reviews)
    assert len(last.SerializeToString()) <= max_snapshot_bytes(DEFAULTS)
    for step in ("approve", "check_success", "merge"):
        rpc, fields = step_command(step, bystander, 0)
        assert via_strict.send(rpc, fields, COMPLETED).code == "OK"
    processor_log = processor.log_path.read_text(errors="replace")
    assert '"event": "transaction_aborting"' not in processor_log, log_tail(processor)
    stack.assert_alive()
    no_traceback(processor, loose, strict)

    verdict = verify(stack.kafka, ledger)
    fault_row.take(verdict, ledger.calls)
    fault_row.note(
        f"{outcomes[('FAILED_PRECONDITION', 'TOO_MANY_CHECKS')]} check names refused by the"
        f" processor, 1 by the gateway; {len(bystander_calls)} bystander commands all"
        f" SUCCEEDED; last snapshot {len(last.SerializeToString())} bytes"
        f" (bound {max_snapshot_bytes(DEFAULTS)}); 0 aborts; {verdict.summary()}"
    )
    verdict.assert_ok()


def list_call(gateway: GatewayProcess, **fields: object) -> qry.ListPullRequestsResponse:
    request = qry.ListPullRequestsRequest(**fields)  # type: ignore[arg-type]
    response: qry.ListPullRequestsResponse = gateway.queries().ListPullRequests(request, timeout=10)
    return response


def list_refusal(gateway: GatewayProcess, **fields: object) -> tuple[str, str, str]:
    """(code, field of the BadRequest violation, description) of a refused listing."""
    with pytest.raises(grpc.RpcError) as refused:
        list_call(gateway, **fields)
    error = refused.value
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    (violation,) = details_of(status)["BadRequest"].field_violations  # type: ignore[attr-defined]
    return error.code().name, violation.field, violation.description  # type: ignore[attr-defined]


def test_list_pages_fit_the_message_size_and_tokens_are_checked(
    stack: FaultStack, fault_row: Row
) -> None:
    stack.processor()
    first = stack.gateway(name="g1")
    second = stack.gateway(name="g2")
    ledger = Ledger()
    client = Client(lambda: [first], ledger, deadline_s=20.0)
    first_success(client, timeout=60)
    repository = "acme/big"
    opened = []
    for n in range(20):  # 20 x 60 kB: a default page of 100 would be 1.2 MB, over 1 MiB
        fields = {**open_fields(n), "repository": repository, "description": "d" * 60_000}
        call = client.send("OpenPullRequest", fields, COMPLETED)
        assert call.code == "OK", call
        opened.append(call.pull_request_id)

    # Page by page, alternating gateways: each page fits, together they are the listing.
    pages: list[qry.ListPullRequestsResponse] = []
    token = ""
    while True:
        gateway = (first, second)[len(pages) % 2]
        page = list_call(gateway, repository=repository, page_token=token)
        pages.append(page)
        assert page.ByteSize() <= 1024 * 1024
        token = page.next_page_token
        if not token:
            break
    listed = [p.pull_request_id for page in pages for p in page.pull_requests]
    assert sorted(listed) == sorted(opened) and len(listed) == len(set(listed))
    assert len(pages) >= 2 and len(pages[0].pull_requests) < 20

    # Tokens: tampered, truncated, of another listing, made up, invalid UTF-8 inside.
    token = list_call(first, repository=repository, page_size=1).next_page_token
    flipped = token[:4] + ("A" if token[4] != "A" else "B") + token[5:]
    made_up = [
        flipped,
        token[:-4],
        "cHItMQ",
        base64.urlsafe_b64encode(b"prgate.list.v1:\xff\xfe").decode(),
    ]
    for bad in made_up:
        code, field, description = list_refusal(first, repository=repository, page_token=bad)
        assert (code, field) == ("INVALID_ARGUMENT", "page_token")
        assert description == "page_token was not issued by this service"
    code, field, description = list_refusal(second, repository="acme/other", page_token=token)
    assert (code, field) == ("INVALID_ARGUMENT", "page_token")
    assert description.startswith("page_token belongs to another listing")
    fault_row.fault("made-up or tampered page tokens")
    # Invalid UTF-8 in the string field itself: the request does not even parse.
    raw = first.channel or grpc.insecure_channel(first.target)
    call = raw.unary_unary("/prgate.v1.PullRequestQueryService/ListPullRequests")
    with pytest.raises(grpc.RpcError) as undecodable:
        call(b"\x22\x02\xff\xfe", timeout=10)
    assert undecodable.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "codec" not in (undecodable.value.details() or "")  # type: ignore[attr-defined]

    stack.assert_alive()
    no_traceback(first, second)
    verdict = verify(stack.kafka, ledger)
    fault_row.take(verdict, ledger.calls)
    fault_row.note(
        f"20 pull requests of 60 kB listed in {len(pages)} pages of at most 1 MiB across two"
        f" gateways; {len(made_up) + 2} bad tokens refused on page_token; {verdict.summary()}"
    )
    verdict.assert_ok()


def cli(gateway: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRGATE_TARGET": gateway.target, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "prgate.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hostile_text_is_refused_and_old_text_printed_escaped(
    stack: FaultStack, fault_row: Row
) -> None:
    stack.processor()
    gateway = stack.gateway()
    ledger = Ledger()
    client = Client(lambda: [gateway], ledger, deadline_s=20.0)
    first_success(client, timeout=60)

    # A Trojan Source title is refused before anything reaches Kafka.
    probe = OffsetProbe(stack.kafka, stack.kafka.topics.commands)
    try:
        before = probe.count()
        for title in ("Fix \u202eexe.txt", "Invisible\u200b tag", "Tag\U000e0041"):
            refused = client.send("OpenPullRequest", {**open_fields(7), "title": title}, COMPLETED)
            assert (refused.code, refused.reason) == ("INVALID_ARGUMENT", "TITLE_FORMAT_CHARACTERS")
            assert "U+" in refused.message, refused.message
        assert probe.count() == before
    finally:
        probe.close()
    fault_row.fault("titles with bidirectional and invisible characters")

    # Repository names: one repository whatever the case; new ones are stored in lower case.
    upper = client.send(
        "OpenPullRequest", {**open_fields(8), "repository": "ACME/Widgets"}, COMPLETED
    )
    assert upper.code == "OK", upper
    # An old snapshot, from before the rules: mixed case, a bidi title and an escape sequence.
    old = pull_request_pb2.PullRequest(
        pull_request_id="pr-old-hostile",
        repository="ACME/Widgets",
        title="Fix \u202eexe.txt\x1b[2J",
        author="ada",
        source_branch="feature/old",
        target_branch="main",
        status=pull_request_pb2.PULL_REQUEST_STATUS_OPEN,
        version=1,
    )
    record = codec.snapshot_record(stack.kafka.topics.pull_requests, old, "c-old")
    produce(stack.kafka, record.topic, [(record.key, record.value or b"", record.headers)])
    fault_row.fault("old snapshot with a bidi title on the compacted topic")
    for _ in range(100):
        found = list_call(gateway, repository="acme/widgets").pull_requests
        if any(p.pull_request_id == old.pull_request_id for p in found):
            break
        threading.Event().wait(0.1)
    for spelling in ("acme/widgets", "ACME/WIDGETS"):
        ids = {p.pull_request_id for p in list_call(gateway, repository=spelling).pull_requests}
        assert {upper.pull_request_id, old.pull_request_id} <= ids, spelling
    stored = gateway.queries().GetPullRequest(
        qry.GetPullRequestRequest(pull_request_id=upper.pull_request_id), timeout=10
    )
    assert stored.pull_request.repository == "acme/widgets"

    # The CLI prints the old title escaped, in a table, a list and JSON.
    shown = cli(gateway, "pr", "get", old.pull_request_id)
    listed = cli(gateway, "pr", "list", "--repository", "acme/widgets")
    as_json = cli(gateway, "pr", "get", old.pull_request_id, "--json")
    for done in (shown, listed, as_json):
        assert done.returncode == 0, done.stderr
        assert "\u202e" not in done.stdout and "\x1b" not in done.stdout, done.stdout
    assert "Fix \\u202eexe.txt\\x1b[2J" in shown.stdout
    assert "\\u202e" in listed.stdout and "\\u202e" in as_json.stdout

    stack.assert_alive()
    no_traceback(gateway)
    verdict = verify(stack.kafka, ledger, ignore_keys=frozenset({old.pull_request_id}))
    fault_row.take(verdict, ledger.calls)
    fault_row.note(f"3 hostile titles refused, 0 records produced for them; {verdict.summary()}")
    verdict.assert_ok()
