"""The Go SDK: generate a Go client from protos/ with buf and the pinned Go plugins, check the
example module is tidy against the Go module proxy, build it, and run it against a real
gateway through a pull request's life (open, a refused merge with decoded details, approve,
check, merge, WatchCommand to SUCCEEDED, Get → MERGED).

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

from prgate.client import Client, PullRequestStatus
from tests.e2e.stack import GatewayProcess

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


@pytest.mark.timeout(900)  # the first run installs two plugins and fills Go's build cache
def test_generated_go_client_drives_a_pull_request(gateway: GatewayProcess, tmp_path: Path) -> None:
    gen, example = copy_module(tmp_path)
    run([sys.executable, str(SDK / "generate.py"), "--out", str(gen)], ROOT, timeout=900)
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
    run([go(), "build", "-o", str(tmp_path / "example-bin"), "."], example, timeout=600)

    done = run([str(tmp_path / "example-bin"), "-target", gateway.target], example, timeout=120)
    out = done.stdout
    assert re.search(r"^opened (pr-\S+) state=COMMAND_STATE_SUCCEEDED version=1$", out, re.M), out
    assert "refused code=FailedPrecondition" in out
    assert re.search(r"^  precondition NOT_APPROVED on pr-\S+: merging needs", out, re.M), out
    assert re.search(r"^  reason NOT_APPROVED command_id=\w+$", out, re.M), out
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
