"""Provisioning of the Kafka runtime: check ``java``/``mvn`` and resolve the jars with Maven.

The jars land in a cache outside the repository (``~/.cache/prgate/kafka-<version>`` or
``PRGATE_KAFKA_HOME``) and are resolved once: a ``.complete`` marker makes later runs skip
Maven entirely. A file lock keeps two processes (say, two test sessions) from racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path

log = logging.getLogger(__name__)

# Keep in step with prgate/kafka/pom.xml.
KAFKA_VERSION = "4.1.1"
MIN_JAVA = 17
_MAVEN_TIMEOUT_S = 600.0
_LOCK_TIMEOUT_S = 660.0


class LocalKafkaError(RuntimeError):
    """An expected failure (missing tool, busy port, timeout); the message says what to do."""


class MissingToolError(LocalKafkaError):
    """``java`` (17+) or ``mvn`` is not available."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prgate"


def default_kafka_home() -> Path:
    """``PRGATE_KAFKA_HOME`` or ``~/.cache/prgate/kafka-<version>``."""
    env = os.environ.get("PRGATE_KAFKA_HOME")
    return Path(env) if env else cache_root() / f"kafka-{KAFKA_VERSION}"


def _which(tool: str, environ: Mapping[str, str]) -> str | None:
    found = shutil.which(tool, path=environ.get("PATH", ""))
    if found is None and tool == "java" and environ.get("JAVA_HOME"):
        candidate = Path(environ["JAVA_HOME"]) / "bin" / "java"
        found = str(candidate) if os.access(candidate, os.X_OK) else None
    return found


def java_major_version(java: str) -> int:
    """The major version ``java -version`` reports (8 for ``1.8.0_x``)."""
    out = subprocess.run(
        [java, "-version"], capture_output=True, text=True, timeout=30, check=False
    )
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise LocalKafkaError(f"cannot tell the Java version from `{java} -version`")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_tools(*, need_maven: bool, environ: Mapping[str, str] | None = None) -> str:
    """Return the ``java`` to use; raise MissingToolError naming every missing tool."""
    env = os.environ if environ is None else environ
    java = _which("java", env)
    missing = []
    if java is None:
        missing.append(f"java (Java {MIN_JAVA} or newer, e.g. apt-get install openjdk-17-jre)")
    if need_maven and _which("mvn", env) is None:
        missing.append("mvn (Apache Maven, e.g. apt-get install maven)")
    if missing:
        raise MissingToolError(
            "cannot run the local Kafka broker, missing on PATH: " + "; ".join(missing)
        )
    assert java is not None
    major = java_major_version(java)
    if major < MIN_JAVA:
        raise MissingToolError(f"{java} is Java {major}; the Kafka broker needs Java {MIN_JAVA}+")
    return java


@contextlib.contextmanager
def file_lock(path: Path, timeout: float) -> Iterator[None]:
    """An exclusive lock between processes (two test sessions provisioning the same cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LocalKafkaError(
                        f"timed out after {timeout:.0f}s waiting for {path}"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def provision(home: Path | None = None, *, environ: Mapping[str, str] | None = None) -> Path:
    """Resolve Kafka's runtime jars into ``home/libs`` once; return that directory."""
    return _resolve(home or default_kafka_home(), "pom.xml", "libs", "kafka_2.13-*.jar", environ)


def provision_tools(home: Path | None = None, *, environ: Mapping[str, str] | None = None) -> Path:
    """Resolve Kafka's command-line tools (``kafka-tools`` and its dependencies,
    prgate/kafka/tools-pom.xml) into ``home/tools`` once; return that directory."""
    return _resolve(
        home or default_kafka_home(), "tools-pom.xml", "tools", "kafka-tools-[0-9]*.jar", environ
    )


def _resolve(
    home: Path, pom_name: str, directory: str, required: str, environ: Mapping[str, str] | None
) -> Path:
    """Copy the runtime dependencies of the packaged ``pom_name`` into ``home/directory`` with
    Maven, once (a marker file per directory); ``required`` is a glob that must match a jar."""
    libs = home / directory
    marker = home / (".complete" if directory == "libs" else f".{directory}-complete")
    if marker.exists():
        return libs
    check_tools(need_maven=True, environ=environ)
    mvn = _which("mvn", os.environ if environ is None else environ)
    assert mvn is not None  # check_tools made sure
    with file_lock(home / ".lock", _LOCK_TIMEOUT_S):
        if marker.exists():  # another process finished while we waited
            return libs
        pom = home / pom_name
        pom.write_bytes(resources.files("prgate").joinpath(f"kafka/{pom_name}").read_bytes())
        staging = home / f"{directory}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        log.info("kafka_provision", extra={"version": KAFKA_VERSION, "home": home, "pom": pom_name})
        started = time.monotonic()
        cmd = [
            mvn,
            "-B",
            "-q",
            "-Dstyle.color=never",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        try:
            result = subprocess.run(
                cmd, cwd=home, capture_output=True, text=True, timeout=_MAVEN_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise LocalKafkaError(f"Maven did not finish in {_MAVEN_TIMEOUT_S:.0f}s") from exc
        if result.returncode != 0 or not any(staging.glob(required)):
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            what = f"Kafka {KAFKA_VERSION}" + ("" if directory == "libs" else f" ({directory})")
            raise LocalKafkaError(f"Maven could not resolve {what}:\n{tail}")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(KAFKA_VERSION + "\n")
        log.info(
            "kafka_provisioned",
            extra={
                "jars": len(list(libs.iterdir())),
                "seconds": round(time.monotonic() - started, 1),
                "pom": pom_name,
            },
        )
    return libs
