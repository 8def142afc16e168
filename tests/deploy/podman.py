"""podman for the image tests, through deploy/image.sh (the project's container settings).

build_image(TAG)                       deploy/image.sh build TAG; returns the seconds it took
run(TAG, "gateway", "--help")          a container to its end: CompletedProcess
with Containers(TAG) as c:             detached containers, all removed at the end
    c.start("gw", ["gateway"], env={...})
    c.signal("gw", "TERM"); c.wait("gw")
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]
IMAGE_SH = ROOT / "deploy" / "image.sh"
# As in deploy/k8s: nothing writable but /tmp (podman's --read-only mounts a tmpfs there).
HARDENED = ["--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges"]


def podman(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``podman ARGS`` with the project's settings; never raises on a non-zero exit."""
    return subprocess.run(
        [str(IMAGE_SH), "podman", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def build_image(tag: str) -> float:
    """Build ``tag`` (installing podman and making the base when missing); seconds taken.

    Raises AssertionError with the end of the build's output when it fails.
    """
    started = time.monotonic()
    result = subprocess.run(
        [str(IMAGE_SH), "build", tag],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return time.monotonic() - started


def run(
    tag: str, *args: str, entrypoint: str | None = None, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``tag`` with ``args`` (after its entry point) to the end, hardened, removed after.

    Without a network: podman's default bridge would add firewall rules to the host.
    """
    chosen = ["--entrypoint", entrypoint] if entrypoint else []
    return podman("run", "--rm", "--network=none", *HARDENED, *chosen, *options, tag, *args)


class Containers:
    """Detached containers of one test (host network), removed on exit."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.prefix = f"prgate-test-{uuid.uuid4().hex[:8]}"
        self.names: list[str] = []

    def __enter__(self) -> Containers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for name in self.names:
            if exc_type is not None:  # shown by pytest when the test failed
                print(f"----- {name} log -----\n{self.logs(name)[-4000:]}")
            podman("rm", "-f", "-t", "0", self.full(name))

    def full(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def start(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        volumes: tuple[str, ...] = (),
    ) -> None:
        """Start ``prgate ARGS`` detached on the host's network, hardened like deploy/k8s."""
        options = [f"--env={key}={value}" for key, value in env.items()]
        options += [f"--volume={volume}" for volume in volumes]
        result = podman(
            "run", "-d", "--network=host", f"--name={self.full(name)}",
            *HARDENED, *options, self.tag, *args,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        self.names.append(name)

    def signal(self, name: str, signal: str) -> None:
        result = podman("kill", f"--signal={signal}", self.full(name))
        assert result.returncode == 0, result.stderr

    def wait(self, name: str, timeout: float = 60.0) -> int:
        """Wait for the container to end; its exit code."""
        result = podman("wait", self.full(name), timeout=timeout)
        assert result.returncode == 0, result.stderr
        return int(result.stdout.strip())

    def running(self, name: str) -> bool:
        result = podman("inspect", "--format={{.State.Running}}", self.full(name))
        return result.stdout.strip() == "true"

    def logs(self, name: str) -> str:
        result = podman("logs", self.full(name))
        return result.stdout + result.stderr
