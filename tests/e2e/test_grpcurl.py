"""The README's grpcurl examples, run as written against a real gateway (reflection, no protos)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.stack import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]
README_ADDRESS = "127.0.0.1:50051"


def grpcurl() -> str:
    local = ROOT / ".venv" / "bin" / "grpcurl"
    found = str(local) if local.exists() else shutil.which("grpcurl")
    assert found, "grpcurl is not installed: run `make tools` (go install, pinned in the Makefile)"
    return found


def readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- grpcurl-examples:begin -->\n```sh\n(.*?)```\n<!-- grpcurl-examples:end -->",
        text,
        re.S,
    )
    assert block, "README lost its grpcurl examples block"
    lines = [line for line in block.group(1).splitlines() if line.startswith("grpcurl ")]
    assert len(lines) >= 10
    return lines


def camel(value: Any) -> Any:
    """grpcurl prints proto field names (snake_case); the examples use JSON names."""
    if isinstance(value, dict):
        return {
            re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): camel(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def parse(text: str) -> Any:
    return camel(json.loads(text))


def run(
    line: str, gateway: GatewayProcess, values: dict[str, str], max_time: float = 30
) -> subprocess.CompletedProcess[str]:
    for name, value in values.items():
        line = line.replace(f"${name}", value)
    args = shlex.split(line.replace(README_ADDRESS, gateway.target))
    return subprocess.run(
        [grpcurl(), "-max-time", str(max_time), *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_reflection_lists_the_services(gateway: GatewayProcess) -> None:
    out = subprocess.run(
        [grpcurl(), "-plaintext", gateway.target, "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert "prgate.v1.PullRequestCommandService" in out
    assert "prgate.v1.PullRequestQueryService" in out
    assert "grpc.health.v1.Health" in out
    described = subprocess.run(
        [
            grpcurl(),
            "-plaintext",
            gateway.target,
            "describe",
            "prgate.v1.PullRequestCommandService",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "rpc WatchCommand ( .prgate.v1.WatchCommandRequest )" in described
    assert "returns ( stream .prgate.v1.WatchCommandResponse )" in described


def test_readme_examples_run_as_written(gateway: GatewayProcess) -> None:
    values: dict[str, str] = {}
    outputs: list[str] = []
    lines = readme_examples()
    for line in lines[:-1]:
        if line.endswith("/WatchPullRequest"):
            # A watch never ends by itself (a person presses Ctrl-C): stop it after 3 s.
            watched = run(line, gateway, values, max_time=3)
            assert "DeadlineExceeded" in watched.stderr, watched.stderr
            snapshot = parse(watched.stdout)["pullRequest"]
            assert snapshot["pullRequestId"] == values["PR"]
            assert snapshot["status"] == "PULL_REQUEST_STATUS_OPEN"
            continue
        done = run(line, gateway, values)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        outputs.append(done.stdout)
        if line.endswith("/OpenPullRequest"):
            receipt = parse(done.stdout)["receipt"]
            assert receipt["state"] == "COMMAND_STATE_SUCCEEDED"
            values["PR"] = receipt["pullRequestId"]
        if line.endswith("/MergePullRequest"):
            receipt = parse(done.stdout)["receipt"]
            assert receipt["state"] == "COMMAND_STATE_ACCEPTED"
            values["CMD"] = receipt["commandId"]
        if line.endswith("/WatchCommand"):
            states = [
                parse(part)["receipt"]["state"]
                for part in re.split(r"(?<=})\n(?={)", done.stdout.strip())
            ]
            assert states == ["COMMAND_STATE_ACCEPTED", "COMMAND_STATE_SUCCEEDED"]
        if line.endswith("/GetPullRequest"):
            entity = parse(done.stdout)["pullRequest"]
            assert entity["status"] == "PULL_REQUEST_STATUS_MERGED"
            assert entity["title"] == "Add a better widget"
        if line.endswith("/ListPullRequests"):
            listed = parse(done.stdout)["pullRequests"]
            assert values["PR"] in [p["pullRequestId"] for p in listed]
        if line.endswith(("/ClosePullRequest", "/ReopenPullRequest")):
            receipt = parse(done.stdout)["receipt"]
            assert receipt["state"] == "COMMAND_STATE_SUCCEEDED"
        if line.endswith("/RevertPullRequest"):
            receipt = parse(done.stdout)["receipt"]
            assert receipt["state"] == "COMMAND_STATE_SUCCEEDED"
    assert '"SERVING"' in outputs[1]
    refused = run(lines[-1].replace("grpcurl ", "grpcurl -format-error ", 1), gateway, values)
    assert refused.returncode != 0
    status = parse(refused.stderr)
    assert status["code"] == 3, "INVALID_ARGUMENT"
    (bad_request,) = [d for d in status["details"] if d["@type"].endswith("BadRequest")]
    fields = {v["field"] for v in bad_request["fieldViolations"]}
    assert "command.title" in fields
