"""A pull request's life through gateway and processor, archived and then audited.

The archive runs as ``python -m archive`` beside the processor. Afterwards every record a
read_committed reader sees is in its table exactly once (the gateway's synchronous refusal
included, on the refusals topic), ``prgate audit`` tells the story, and DuckDB and polars read
the same tables.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import grpc
import polars as pl
import pytest
from helpers.ids import new_id
from helpers.kafka import consume_all, produce

from archive import audit
from archive.query import connect
from prgate.kafka import codec
from prgate.kafka.settings import KafkaSettings
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import commands_pb2, outcome_pb2, pull_request_pb2
from tests.e2e.stack import GatewayProcess, Stack
from tests.integration.archive_helpers import (
    archived_offsets,
    committed_offsets,
    duplicates,
    start_archive,
    wait_archived,
)

COMPLETED = svc.CommandOptions(response_mode=svc.RESPONSE_MODE_COMPLETED)
SUCCEEDED = outcome_pb2.COMMAND_STATE_SUCCEEDED


def audit_json(
    capsys: pytest.CaptureFixture[str], root: Path, *argv: str
) -> list[dict[str, object]]:
    capsys.readouterr()
    assert audit.main([*argv, "--root", str(root), "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def life(gateway: GatewayProcess) -> str:
    """Open (ada), approve (bob), a failing check, a refused merge, a passing check, a merge."""
    commands = gateway.commands()
    opened = commands.OpenPullRequest(
        svc.OpenPullRequestRequest(
            command=commands_pb2.OpenPullRequest(
                repository="acme/widgets", title="Add a widget", author="ada",
                source_branch=f"feature/{uuid.uuid4().hex[:8]}", target_branch="main",
            )
        ),
        timeout=20,
    )  # fmt: skip
    pr = opened.receipt.pull_request_id
    approve = commands_pb2.ApprovePullRequest(pull_request_id=pr, reviewer="bob")
    commands.ApprovePullRequest(svc.ApprovePullRequestRequest(command=approve), timeout=20)

    def check(conclusion: int) -> None:
        command = commands_pb2.RecordCheckResult(
            pull_request_id=pr, check_name="ci", conclusion=conclusion
        )
        commands.RecordCheckResult(svc.RecordCheckResultRequest(command=command), timeout=20)

    check(pull_request_pb2.CHECK_CONCLUSION_FAILURE)
    merge = commands_pb2.MergePullRequest(pull_request_id=pr, merged_by_user="bob")
    with pytest.raises(grpc.RpcError) as refused:
        commands.MergePullRequest(svc.MergePullRequestRequest(command=merge), timeout=20)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    check(pull_request_pb2.CHECK_CONCLUSION_SUCCESS)
    merged = commands.MergePullRequest(
        svc.MergePullRequestRequest(command=merge, options=COMPLETED), timeout=20
    )
    assert merged.receipt.state == SUCCEEDED
    return pr


def test_a_pull_request_life_is_archived_once_and_audited(
    stack: Stack, gateway: GatewayProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka: KafkaSettings = stack.kafka
    root = tmp_path / "archive"
    member = start_archive(kafka, root, tmp_path, "a1")
    stack.services.append(member)
    pr = life(gateway)
    # A second merge straight onto the commands topic (the gateway would refuse it): the
    # processor rejects it, and the archive still has the command and its rejection.
    late = commands_pb2.CommandEnvelope(
        command_id=new_id(pr), pull_request_id=pr, caller="mallory",
        merge_pull_request=commands_pb2.MergePullRequest(pull_request_id=pr,
                                                         merged_by_user="mallory"),
    )  # fmt: skip
    record = codec.command_record(kafka.topics.commands, late, reply_to=kafka.topics.results)
    produce(kafka, record.topic, [(record.key, record.value or b"", record.headers)])

    deadline = time.monotonic() + 30
    answered = late.command_id.encode()  # results are keyed by command id
    while not any(m.key() == answered for m in consume_all(kafka, kafka.topics.results)):
        assert time.monotonic() < deadline, "the processor did not answer the late merge"
        time.sleep(0.2)

    expected = committed_offsets(kafka)
    archived = wait_archived(root, expected, timeout=60)
    for table, offsets in expected.items():
        assert archived[table] == offsets, table
        assert duplicates(archived[table]) == []

    history = audit_json(capsys, root, "pr", pr)
    story = [(h["kind"], h["what"], h["actor"]) for h in history if h["kind"] == "command"]
    assert story == [
        ("command", "OpenPullRequest", "ada"),
        ("command", "ApprovePullRequest", "bob"),
        ("command", "RecordCheckResult", None),
        ("command", "RecordCheckResult", None),
        ("command", "MergePullRequest", "bob"),
        ("command", "MergePullRequest", "mallory"),
    ]
    outcomes = {h["command_id"]: h["what"] for h in history if h["kind"] == "result"}
    assert outcomes[late.command_id] == "REJECTED"
    assert list(outcomes.values()).count("SUCCEEDED") == 5
    events = [h["what"] for h in history if h["kind"] == "event"]
    assert events[0] == "PullRequestOpened" and "PullRequestMerged" in events

    # The merge the gateway refused itself never reached the commands topic; its refusal did.
    refused = [h for h in history if h["kind"] == "refused"]
    assert [(h["what"], h["actor"]) for h in refused] == [("MergePullRequest", "bob")]
    assert "FAILED_PRECONDITION" in str(refused[0]["detail"])
    bob = audit_json(capsys, root, "actor", "bob")
    assert [(c["command_type"], c["outcome"]) for c in bob] == [
        ("ApprovePullRequest", "SUCCEEDED"),
        ("MergePullRequest", "REFUSED"),
        ("MergePullRequest", "SUCCEEDED"),
    ]

    mallory = audit_json(capsys, root, "actor", "mallory")
    assert [(c["command_type"], c["outcome"]) for c in mallory] == [("MergePullRequest",
                                                                      "REJECTED")]  # fmt: skip
    by_reason = audit_json(capsys, root, "refusals")
    assert {r["refused_by"] for r in by_reason} == {"gateway", "processor"}
    (gateway_row,) = [r for r in by_reason if r["refused_by"] == "gateway"]
    assert (gateway_row["kind"], gateway_row["refusals"]) == ("FAILED_PRECONDITION", 1)
    one_by_one = audit_json(capsys, root, "refusals", "--reason", str(gateway_row["reason"]))
    assert [(r["refused_by"], r["actor"], r["pull_request_id"]) for r in one_by_one] == [
        ("gateway", "bob", pr)
    ]

    # The same tables through DuckDB and polars.
    con = connect(root)
    versions = con.execute(
        "select version from events where pull_request_id = ? order by version", [pr]
    ).fetchall()
    assert [v for (v,) in versions] == list(range(1, len(versions) + 1))
    frame = pl.read_delta(str(root / "results")).filter(pl.col("pull_request_id") == pr)
    assert frame.filter(pl.col("outcome") == "REJECTED")["command_id"].to_list() == [
        late.command_id
    ]
    assert archived_offsets(root) == archived

    # The README's DuckDB example, run as written there (its root and pull request id swapped
    # for this test's); each query's rows are kept where the README shows them.
    shown = readme_queries(root, pr)
    assert [(actor, command, outcome) for _, actor, command, outcome, _ in shown[0]] == [
        ("ada", "OpenPullRequest", "SUCCEEDED"),
        ("bob", "ApprovePullRequest", "SUCCEEDED"),
        (None, "RecordCheckResult", "SUCCEEDED"),
        (None, "RecordCheckResult", "SUCCEEDED"),
        ("bob", "MergePullRequest", "SUCCEEDED"),
        ("mallory", "MergePullRequest", "REJECTED"),
    ]
    assert any(reason == "PULL_REQUEST_NOT_OPEN" and n >= 1 for _, reason, n in shown[1])


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_queries(root: Path, pr: str) -> list[list[tuple[object, ...]]]:
    """Run the first Python block of the README's "### Querying" section; the rows of each
    relation it ``.show()``s, in order."""
    section = README.read_text().split("### Querying", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    example_root = 'Path.home() / ".cache/prgate/archive"'
    example_pr = "pr-9fd77473410051d2bb77827e8a25bb15"
    assert example_root in block and example_pr in block, "the README example changed"
    shown: list[list[tuple[object, ...]]] = []

    class Shown:
        def __init__(self, relation: object) -> None:
            self.relation = relation

        def show(self) -> None:
            shown.append(self.relation.fetchall())  # type: ignore[attr-defined]

    class Connection:
        def __init__(self, con: object) -> None:
            self.con = con

        def sql(self, query: str) -> Shown:
            return Shown(self.con.sql(query))  # type: ignore[attr-defined]

    code = block.replace(example_root, repr(str(root))).replace(example_pr, pr)
    code = code.replace("from archive.query import connect", "")
    exec(code, {"connect": lambda path: Connection(connect(Path(path)))})
    assert len(shown) == 2
    return shown
