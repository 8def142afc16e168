"""The Go SDK: generate a Go client from protos/ with buf and the pinned Go plugins, check the
example module is tidy against the Go module proxy, build it, and run it against a real
gateway through a pull request's life (open, a refused merge with decoded details, approve,
check, merge, WatchCommand to SUCCEEDED, Get → MERGED), alternating between two gateways of
one deployment, so its session interceptors must pass the consistency tokens on (issue 14).

Needs `go` on PATH and the Go module proxy the first time (the plugins are cached in
~/.cache/prgate/go-bin, modules in Go's own caches); a missing tool fails the test by name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.kafka import free_port

from prgate.client import Client, PullRequestStatus
from prgate.v1 import command_service_pb2 as svc
from tests.e2e.stack import GatewayProcess, Stack
from tests.sdk.unavailable_proxy import running

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "go"


def go() -> str:
    found = shutil.which("go")
    assert found, "`go` is not on PATH: the Go SDK test needs Go 1.26+"
    return found


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GOFLAGS": "-buildvcs=false", "GOTOOLCHAIN": "local"}
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(cmd)} (in {cwd}) exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done


def copy_module(tmp: Path) -> tuple[Path, Path]:
    """The committed SDK modules, copied so the test writes nothing into the work tree."""
    gen, example = tmp / "gen", tmp / "example"
    gen.mkdir()
    for name in ("go.mod", "go.sum"):
        shutil.copy(SDK / "gen" / name, gen / name)
    shutil.copytree(SDK / "example", example)
    return gen, example


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(generated module, example module, example binary), generated and built once."""
    tmp = tmp_path_factory.mktemp("go-sdk")
    gen, example = copy_module(tmp)
    run([sys.executable, str(SDK / "generate.py"), "--out", str(gen)], ROOT, timeout=900)
    run([go(), "build", "-o", str(tmp / "example-bin"), "."], example, timeout=600)
    return gen, example, tmp / "example-bin"


def test_the_go_session_interceptors_pass_their_tests(built: tuple[Path, Path, Path]) -> None:
    """``sdk/go/example/consistency_test.go``: a refused token is forgotten, by the unary
    interceptor (and the call made again without it) and by the stream interceptor (the next
    watch goes without it; it was kept, so every later watch was refused again)."""
    _, example, _ = built
    done = run([go(), "test", "-count=1", "-v", "./..."], example, timeout=600)
    passed = re.findall(r"^--- PASS: (\w+)", done.stdout, re.M)
    assert "TestARefusedTokenOnAWatchIsForgottenSoTheNextWatchWorks" in passed, done.stdout


@pytest.mark.timeout(900)  # the first run installs two plugins and fills Go's build cache
def test_generated_go_client_drives_a_pull_request(
    gateway: GatewayProcess, stack: Stack, built: tuple[Path, Path, Path]
) -> None:
    gen, example, binary = built
    generated = {p.name for p in (gen / "prgate" / "v1").glob("*.go")}
    assert {
        "command_service.pb.go",
        "command_service_grpc.pb.go",
        "query_service_grpc.pb.go",
        "pull_request.pb.go",
    } <= generated
    service = (gen / "prgate" / "v1" / "command_service_grpc.pb.go").read_text()
    assert "func NewPullRequestCommandServiceClient(" in service
    assert "package prgatev1" in service  # go_package's name part

    # go.mod and go.sum as committed are exactly what `go mod tidy` makes from the proxy.
    run([go(), "mod", "tidy", "-diff"], gen)
    run([go(), "mod", "tidy", "-diff"], example)

    second = stack.gateway(free_port(), "g1")
    command = [str(binary), "-target", gateway.target]
    done = run([*command, "-second-target", second.target], example, timeout=120)
    out = done.stdout
    # grpc-go's healthCheckConfig watched Health/Watch through the gateway's interceptors.
    assert "connected: health checked (Health/Watch SERVING)\n" in out, out
    assert re.search(r"^opened (pr-\S+) state=COMMAND_STATE_SUCCEEDED version=1$", out, re.M), out
    # The open's token is kept and goes with the approve through the second gateway.
    assert f"consistency token kept: true; next calls through {second.target}\n" in out, out
    assert "refused code=FailedPrecondition" in out
    assert re.search(r"^  precondition NOT_APPROVED on pr-\S+: merging needs", out, re.M), out
    assert re.search(r"^  reason NOT_APPROVED command_id=[0-9a-f]{32}\.[0-9a-f]{32}$", out, re.M), (
        out
    )
    assert "watch COMMAND_STATE_ACCEPTED\nwatch COMMAND_STATE_SUCCEEDED\n" in out
    match = re.search(
        r"^get (pr-\S+) status=PULL_REQUEST_STATUS_MERGED version=5 merged_by=bob$", out, re.M
    )
    assert match, out

    # The Go program's pull request is really on this gateway, merged.
    with Client(gateway.target) as client:
        merged = client.get(match.group(1))
    assert merged.status == PullRequestStatus.PULL_REQUEST_STATUS_MERGED
    assert merged.title == "Add a widget from Go"


@pytest.mark.timeout(900)
def test_go_client_with_the_published_service_config_rides_a_gateway_restart(
    stack: Stack, built: tuple[Path, Path, Path]
) -> None:
    """sdk/service-config.json in grpc-go: the approve call is made while the gateway is down
    and answered by its restart on the same port (waitForReady, the UNAVAILABLE retry
    policy), and the call repeated with its idempotency key is the same command: the pull
    request is approved exactly once."""
    stack.processor()
    port = free_port()
    first = stack.gateway(port)
    _, example, binary = built
    config = ROOT / "sdk" / "service-config.json"
    program = subprocess.Popen(
        [str(binary), "-target", first.target, "-service-config", str(config), "-restart-pause"],
        cwd=example,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert program.stdout is not None and program.stdin is not None
        lines = []
        for line in program.stdout:
            lines.append(line)
            if line == "paused\n":
                break
        assert lines[-1:] == ["paused\n"], "".join(lines) + (
            program.stderr.read() if program.stderr else ""
        )
        opened = re.search(r"^opened (pr-\S+) ", "".join(lines), re.M)
        assert opened, lines
        first.stop()  # the Go client's connection breaks; the next call finds no gateway
        program.stdin.write("go\n")
        program.stdin.flush()
        stack.gateway(port, name="g1")  # the same address again
        out, err = program.communicate(timeout=120)
    finally:
        program.kill()
    assert program.returncode == 0, f"{''.join(lines)}{out}\n{err}"
    approved = re.search(
        r"^approved state=COMMAND_STATE_SUCCEEDED command_id=(\S+) version=2$", out, re.M
    )
    assert approved, out
    assert f"approved again command_id={approved.group(1)}\n" in out
    assert "watch COMMAND_STATE_SUCCEEDED\n" in out
    with Client(f"127.0.0.1:{port}") as client:
        pr = client.get(opened.group(1))
    assert [r.reviewer for r in pr.reviews] == ["bob"]
    assert pr.status == PullRequestStatus.PULL_REQUEST_STATUS_MERGED and pr.version == 5


APPROVE = "/prgate.v1.PullRequestCommandService/ApprovePullRequest"


@pytest.mark.timeout(900)
def test_go_client_retries_a_lost_answer_by_the_service_config_and_it_applies_once(
    gateway: GatewayProcess, built: tuple[Path, Path, Path]
) -> None:
    """A proxy passes the Go client's first ApprovePullRequest attempt to the gateway (which
    approves), drops the answer and says UNAVAILABLE. With sdk/service-config.json grpc-go
    retries that one call by its retry policy, with the same request (the same idempotency
    key), and gets the first attempt's command back: one approval. Without the config the same
    call fails UNAVAILABLE: the retry is the published config's."""
    _, example, binary = built
    config = ROOT / "sdk" / "service-config.json"
    with running(gateway.target, APPROVE) as proxy:
        done = subprocess.run(
            [str(binary), "-target", f"127.0.0.1:{proxy.port}", "-service-config", str(config)],
            cwd=example,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        attempts = list(proxy.attempts)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    out = done.stdout
    approved = re.search(
        r"^approved state=COMMAND_STATE_SUCCEEDED command_id=(\S+) version=2$", out, re.M
    )
    assert approved, out
    # Attempt 1 (answer dropped), attempt 2 (grpc-go's retry of the same call), then the
    # example's own second call with the same key.
    assert len(attempts) == 3, [a.metadata for a in attempts]
    assert attempts[0].request == attempts[1].request  # the retry resends the same bytes
    keys = {
        svc.ApprovePullRequestRequest.FromString(a.request).options.idempotency_key
        for a in attempts
    }
    assert len(keys) == 1 and keys != {""}, keys  # one key for the call and its repeat
    assert "grpc-previous-rpc-attempts" not in attempts[0].metadata
    assert attempts[1].metadata.get("grpc-previous-rpc-attempts") == "1", attempts[1].metadata
    assert "grpc-previous-rpc-attempts" not in attempts[2].metadata
    # The gateway carried out attempt 1; the retry was answered with that same command.
    assert attempts[0].dropped_answer is not None
    lost = svc.ApprovePullRequestResponse.FromString(attempts[0].dropped_answer)
    assert lost.receipt.command_id == approved.group(1), (lost, out)
    assert f"approved again command_id={approved.group(1)}\n" in out
    opened = re.search(r"^opened (pr-\S+) ", out, re.M)
    assert opened, out
    with Client(gateway.target) as client:
        pr = client.get(opened.group(1))
    assert [r.reviewer for r in pr.reviews] == ["bob"]
    assert pr.status == PullRequestStatus.PULL_REQUEST_STATUS_MERGED and pr.version == 5

    # The control: the default config has no retry policy, so the lost answer is the error.
    with running(gateway.target, APPROVE) as proxy:
        bare = subprocess.run(
            [str(binary), "-target", f"127.0.0.1:{proxy.port}"],
            cwd=example,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        tried = len(proxy.attempts)
    assert bare.returncode != 0, bare.stdout
    assert "approve: rpc error: code = Unavailable" in bare.stderr, bare.stderr
    assert tried == 1
