"""The `prgate pr` and `prgate events tail` commands as subprocesses against a real gateway:
the README's examples as written, JSON output, error output and exit codes."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

from prgate.client import Client
from prgate.kafka.settings import KafkaSettings
from tests.e2e.stack import GatewayProcess

ROOT = Path(__file__).resolve().parents[2]


def cli_env(gateway: GatewayProcess, kafka: KafkaSettings | None = None) -> dict[str, str]:
    env = {**os.environ, "PRGATE_TARGET": gateway.target, "PYTHONUNBUFFERED": "1"}
    # Keep no consistency tokens in the home directory of whoever runs the tests (one gateway
    # here; tests/e2e/test_read_your_writes.py runs the CLI across two, with a file of its own).
    env["PRGATE_CONSISTENCY_FILE"] = ""
    if kafka is not None:
        env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.bootstrap_servers
        env["PRGATE_TOPIC_PREFIX"] = kafka.topic_prefix
    return env


def prgate(
    args: list[str], env: dict[str, str], *, expect: int = 0, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "prgate.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    shown = f"prgate {shlex.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.returncode == expect, shown
    assert "Traceback" not in done.stderr, shown
    return done


def row(output: str, name: str) -> str:
    """The value of a `name  value` row of a table."""
    found = re.findall(rf"^{re.escape(name)}\s{{2,}}(\S.*)$", output, re.M)
    assert found, f"no {name!r} row in:\n{output}"
    return found[-1].strip()


def readme_examples() -> list[tuple[str, int]]:
    """(command line, expected exit code) of the README's CLI block."""
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- cli-examples:begin -->\n```sh\n(.*?)```\n<!-- cli-examples:end -->", text, re.S
    )
    assert block, "README lost its CLI examples block"
    examples = []
    for raw in block.group(1).splitlines():
        line, _, note = raw.partition("   # ")
        expected = re.match(r"exit (\d)", note)
        examples.append((line.strip(), int(expected.group(1)) if expected else 0))
    assert len(examples) >= 15
    return examples


def test_readme_cli_examples_run_as_written(
    gateway: GatewayProcess, kafka_settings: KafkaSettings
) -> None:
    env = cli_env(gateway, kafka_settings)
    values: dict[str, str] = {}
    seen: dict[str, subprocess.CompletedProcess[str]] = {}
    for example, expected in readme_examples():
        line = example
        for name, value in values.items():
            line = line.replace(f"${name}", value)
        args = shlex.split(line)
        assert args[0] == "prgate" and "$" not in line, line
        done = prgate(args[1:], env, expect=expected)
        if "pull request" in done.stdout and "PR" not in values:
            values["PR"] = row(done.stdout, "pull request")
        if re.search(r"^command\s", done.stdout, re.M):
            values["CMD"] = row(done.stdout, "command")
        seen.setdefault(" ".join(args[1:3]), done)
        key = " ".join(args[1:3])
        if key == "pr merge" and expected == 1:
            assert "prgate: FAILED_PRECONDITION: check ci is FAILURE" in done.stderr
            assert "precondition CHECKS_NOT_PASSING on ci" in done.stderr
        elif key == "pr merge":
            assert row(done.stdout, "state") == "SUCCEEDED"
            assert "PullRequestMerged" in row(done.stdout, "events")
        elif key == "pr get" and "--json" in args:
            entity = json.loads(done.stdout)
            assert entity["status"] == "PULL_REQUEST_STATUS_MERGED"
            assert entity["title"] == "Add a better widget"
        elif key == "pr get" and "pr-unknown" in args:
            assert "prgate: NOT_FOUND: pull request pr-unknown does not exist" in done.stderr
        elif key == "pr get":
            assert row(done.stdout, "status") == "MERGED"
            assert row(done.stdout, "checks") == "ci:SUCCESS"
        elif key == "pr list":
            assert re.search(rf"^{values['PR']}\s+MERGED\s", done.stdout, re.M), done.stdout
        elif key == "pr revert":
            assert row(done.stdout, "state") == "ACCEPTED"
        elif key == "pr watch" and "--command" in args:
            assert re.findall(r"^state\s+(\w+)$", done.stdout, re.M) == ["ACCEPTED", "SUCCEEDED"]
        elif key == "pr watch":
            (only,) = done.stdout.splitlines()
            assert " REVERTED " in only
        elif key == "events tail":
            lines = done.stdout.splitlines()
            assert len(lines) == 5
            assert f"{values['PR']}  v1  PullRequestOpened" in lines[0]
    assert {"pr open", "pr close", "pr reopen", "pr check", "pr approve", "pr retitle"} <= set(seen)


def test_json_output_errors_and_exit_codes(gateway: GatewayProcess) -> None:
    env = cli_env(gateway)
    key = f"cli-{uuid.uuid4().hex}"
    open_args = ["pr", "open", "--repository", "acme/cli", "--title", "CLI", "--author", "ada"]
    open_args += ["--source-branch", "feature/cli", "--target-branch", "main", "--json"]
    first = json.loads(prgate([*open_args, "--idempotency-key", key], env).stdout)
    assert first["state"] == "COMMAND_STATE_SUCCEEDED" and first["result"]["version"] == "1"
    pr = first["pullRequestId"]
    again = json.loads(prgate([*open_args, "--idempotency-key", key], env).stdout)
    assert again["pullRequestId"] == pr and again["commandId"] == first["commandId"]
    reused = prgate(
        [*open_args[:5], "Other", *open_args[6:], "--idempotency-key", key], env, expect=1
    )
    assert "prgate: ALREADY_EXISTS" in reused.stderr
    assert json.loads(reused.stdout)["code"] == 6

    invalid = prgate(
        ["pr", "retitle", pr, "--title", "", "--changed-by", "ada", "--json"], env, expect=1
    )
    status = json.loads(invalid.stdout)
    assert status["code"] == 3
    (bad_request,) = [d for d in status["details"] if d["@type"].endswith("BadRequest")]
    assert bad_request["fieldViolations"][0]["field"] == "command.title"
    assert "field command.title: title is required" in invalid.stderr

    stale = prgate(
        ["pr", "approve", pr, "--reviewer", "bob", "--expected-version", "7"], env, expect=1
    )
    assert "prgate: ABORTED" in stale.stderr

    # A live view in the background sees each new version once, in order.
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prgate.cli",
            "pr",
            "watch",
            pr,
            "--json",
            "--max",
            "3",
            "--timeout",
            "60",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        assert json.loads(watcher.stdout.readline())["version"] == "1"
        prgate(["pr", "approve", pr, "--reviewer", "bob"], env)
        prgate(["pr", "check", pr, "--name", "ci", "--conclusion", "success"], env)
        rest, errors = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, errors
    assert [json.loads(line)["version"] for line in rest.splitlines()] == ["2", "3"]

    merge = json.loads(
        prgate(["pr", "merge", pr, "--by", "bob", "--no-wait", "--json"], env).stdout
    )
    assert merge["state"] == "COMMAND_STATE_ACCEPTED"
    watched = prgate(["pr", "watch", "--command", merge["commandId"], "--json"], env)
    states = [json.loads(line)["state"] for line in watched.stdout.splitlines()]
    assert states == ["COMMAND_STATE_ACCEPTED", "COMMAND_STATE_SUCCEEDED"]
    merged_again = prgate(["pr", "merge", pr, "--by", "bob"], env, expect=1)
    assert "PULL_REQUEST_NOT_OPEN" in merged_again.stderr

    listed = [
        json.loads(line)
        for line in prgate(
            ["pr", "list", "--repository", "acme/cli", "--json"], env
        ).stdout.splitlines()
    ]
    assert [p["pullRequestId"] for p in listed] == [pr] and listed[0][
        "status"
    ] == "PULL_REQUEST_STATUS_MERGED"

    started = time.monotonic()
    prgate(["pr", "watch", pr, "--max", "5", "--timeout", "1"], env, expect=3)
    assert time.monotonic() - started < 30
    down = prgate(["pr", "get", pr, "--target", "127.0.0.1:1", "--retries", "2"], env, expect=3)
    assert "prgate: UNAVAILABLE" in down.stderr
    usage = prgate(["pr", "check", pr, "--name", "ci"], env, expect=2)
    assert "--conclusion" in usage.stderr
    prgate(["pr", "watch"], env, expect=2)


def test_events_tail_from_the_end_and_from_the_beginning(
    gateway: GatewayProcess, kafka_settings: KafkaSettings
) -> None:
    env = cli_env(gateway, kafka_settings)
    with Client(gateway.target, timeout=20) as client:
        before = client.open_pull_request(
            "acme/tail", "Before", "ada", "f/a", "main"
        ).pull_request_id
        tail = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prgate.cli",
                "events",
                "tail",
                "--json",
                "--max",
                "2",
                "--timeout",
                "60",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert tail.stderr is not None
            ready = tail.stderr.readline()
            for _ in range(5):  # librdkafka's own log lines (JSON, logs.py) may come first
                if '"event": "librdkafka"' not in ready:
                    break
                ready = tail.stderr.readline()
            assert "from the end" in ready, ready
            after = client.open_pull_request(
                "acme/tail", "After", "ada", "f/b", "main"
            ).pull_request_id
            client.approve(after, "bob")
            out, errors = tail.communicate(timeout=60)
        finally:
            tail.kill()
    assert tail.returncode == 0, errors
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["pullRequestId"], e["version"]) for e in events] == [(after, "1"), (after, "2")]
    assert (
        "pullRequestOpened" in events[0] and events[1]["pullRequestApproved"]["reviewer"] == "bob"
    )

    everything = prgate(
        ["events", "tail", "--from-beginning", "--max", "3", "--timeout", "30"], env
    )
    lines = everything.stdout.splitlines()
    assert any(f"{before}  v1  PullRequestOpened" in line for line in lines)
    assert any(f"{after}  v2  PullRequestApproved  reviewer=bob" in line for line in lines)
    short = prgate(
        ["events", "tail", "--from-beginning", "--max", "10", "--timeout", "3"], env, expect=3
    )
    assert len(short.stdout.splitlines()) == 3 and "3 of 10 events" in short.stderr
    missing = {**env, "PRGATE_TOPIC_PREFIX": f"absent{uuid.uuid4().hex[:6]}."}
    gone = prgate(["events", "tail", "--max", "1", "--timeout", "5"], missing, expect=1)
    assert "does not exist" in gone.stderr
