"""The container image (deploy/Containerfile), built with podman and run as deploy/k8s runs it:
non-root, read-only root file system, no capabilities.

The build goes through deploy/image.sh, which installs podman, runc and debootstrap when they
are missing and makes the Debian base once (cached under ~/.cache/prgate). Then a processor, an
archive and a gateway run in containers on the host network against the session's broker: a
pull request opened through the containerised gateway with a bearer token from a mounted file
is handled by the containerised processor and shows up in the archive's tables, read by
`prgate audit` in another container. SIGTERM to each container (PID 1 is the Python process)
ends it with exit code 0, the gateway after its drain window.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers.kafka import free_port

from prgate.client import Client, Unauthenticated
from prgate.kafka.contract import Topics
from prgate.kafka.settings import KafkaSettings
from prgate.v1 import outcome_pb2
from tests.deploy.podman import ROOT, Containers, build_image, podman, run

pytestmark = pytest.mark.image  # `-m 'not image'` leaves these out (they need root)

# One tag per checkout: test runs of several checkouts on one machine share podman's storage.
TAG = f"localhost/prgate:test-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]}"
UID = 10001
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    seconds = build_image(TAG)
    print(f"image build: {seconds:.1f} s", file=sys.stderr)
    yield TAG


def test_image_runs_as_a_non_root_user_that_cannot_change_it(image: str) -> None:
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["prgate"] and config["Cmd"] == ["gateway"]
    probe = "import os; print(os.getuid(), os.getgid(), os.access('/opt/venv/lib', os.W_OK))"
    result = run(image, "-c", probe, entrypoint="python")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(UID), str(UID), "False"]


@pytest.mark.parametrize(
    "args",
    [["gateway"], ["processor"], ["archive"], ["archive", "maintain"], ["topics", "ensure"]],
    ids=" ".join,
)
def test_entry_point_answers_help(image: str, args: list[str]) -> None:
    result = run(image, *args, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: prgate {' '.join(args)}" in result.stdout


def health(target: str, service: str = "") -> int | None:
    """The health status of ``service``, or None while the port does not answer."""
    with grpc.insecure_channel(target) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.RpcError:
            return None
        return int(answer.status)


def wait_for(condition: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout} s: {condition}")


def owned_dir(path: Path, mode: int) -> Path:
    """A directory the image's user owns (group, for files), as fsGroup makes it in Kubernetes."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, UID, UID)
    path.chmod(mode)
    return path


def test_services_run_in_containers_and_stop_on_sigterm(
    image: str, kafka_settings: KafkaSettings, ensured_topics: Topics, tmp_path: Path
) -> None:
    token = secrets.token_urlsafe(32)
    auth = owned_dir(tmp_path / "auth", 0o750)
    tokens = auth / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"principal": "ada", "token": token, "roles": []}]}))
    os.chown(tokens, 0, UID)  # a Secret volume with fsGroup and defaultMode 0440
    tokens.chmod(0o440)
    tables = owned_dir(tmp_path / "archive", 0o755)
    run_id = uuid.uuid4().hex[:8]
    kafka = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "PRGATE_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "PRGATE_PARTITIONS": str(kafka_settings.partitions),
    }
    archive_env = {**kafka, "PRGATE_ARCHIVE_ROOT": "/var/lib/prgate/archive"}
    archive_volume = f"{tables}:/var/lib/prgate/archive"
    port = free_port()
    target = f"127.0.0.1:{port}"
    with Containers(image) as containers:
        containers.start(
            "processor",
            ["processor"],
            {
                **kafka,
                "PRGATE_PROCESSOR_INSTANCE_ID": "prgate-processor-0",
                "PRGATE_PROCESSOR_GROUP_ID": f"processor-{run_id}",
            },
        )
        containers.start(
            "archive",
            ["archive"],
            {
                **archive_env,
                "PRGATE_ARCHIVE_INSTANCE_ID": "prgate-archive-0",
                "PRGATE_ARCHIVE_GROUP_ID": f"archive-{run_id}",
                "PRGATE_ARCHIVE_FLUSH_INTERVAL_MS": "300",
            },
            volumes=(archive_volume,),
        )
        containers.start(
            "gateway",
            ["gateway"],
            {
                **kafka,
                "PRGATE_LISTEN": target,
                "PRGATE_DRAIN_S": "3",
                "PRGATE_AUTH_TOKEN_FILE": "/etc/prgate/auth/tokens.json",
            },
            volumes=(f"{auth}:/etc/prgate/auth:ro",),
        )
        wait_for("gateway SERVING", lambda: health(target) == SERVING, timeout=90)

        with Client(target, timeout=10) as anonymous, pytest.raises(Unauthenticated):
            anonymous.get("pr-0000")
        with Client(target, token=token, timeout=60) as client:
            opened = client.open_pull_request(
                "acme/widgets", "Built in a container", "ada", f"feature/{run_id}", "main"
            )
        assert opened.state == outcome_pb2.COMMAND_STATE_SUCCEEDED  # the processor answered
        pr_id = opened.pull_request_id

        def archived() -> bool:
            audit = run(
                image, "audit", "pr", pr_id, "--json",
                options=("--env=PRGATE_ARCHIVE_ROOT=/var/lib/prgate/archive",
                         f"--volume={archive_volume}:ro"),
            )  # fmt: skip
            rows = [json.loads(line) for line in audit.stdout.splitlines() if line.strip()]
            return any(row.get("kind") == "command" for row in rows)

        wait_for(f"{pr_id} in the archive, read by `prgate audit`", archived, timeout=60)

        # SIGTERM to PID 1: health NOT_SERVING at once while the port still answers (drain)...
        containers.signal("gateway", "TERM")
        wait_for("gateway NOT_SERVING", lambda: health(target) == NOT_SERVING, timeout=2.5)
        assert containers.running("gateway")
        # ...then it stops by itself, cleanly.
        assert containers.wait("gateway") == 0
        for name in ("processor", "archive"):
            containers.signal(name, "TERM")
            assert containers.wait(name) == 0, containers.logs(name)[-3000:]
