"""prgate.kafka.local without a real broker: tool checks, caching, config, failure paths, CLI.

A fake ``java`` (a shell script on a private PATH) stands in for the JVM where the point is how
the code reacts, not Kafka itself.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.kafka import free_port

from prgate.cli import kafka as cli_kafka
from prgate.cli import main as cli
from prgate.kafka.local import (
    LocalKafka,
    LocalKafkaError,
    MissingToolError,
    check_tools,
)
from prgate.kafka.node_config import random_cluster_id
from prgate.kafka.provision import provision

FAKE_JAVA = """#!/bin/sh
case "$1" in
  -version) echo 'openjdk version "{version}" 2024-01-16' >&2; exit 0;;
esac
case "$*" in
  *StorageTool*) mkdir -p "{data}" && touch "{data}/meta.properties"; exit 0;;
  *kafka.Kafka*) echo "fake broker: {behaviour}"
    if [ "{behaviour}" = crash ]; then exit 3; fi
    trap 'echo "fake broker: got TERM"; kill $! 2>/dev/null; exit 0' TERM
    sleep 60 & wait; exit 0;;
esac
exit 1
"""


def fake_bin(tmp_path: Path, *, java_version: str | None = "17.0.9", mvn: bool = False,
             data: Path | None = None, behaviour: str = "hang") -> Path:  # fmt: skip
    """A directory with only the tools asked for, to be the whole PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if java_version is not None:
        script = FAKE_JAVA.format(
            version=java_version, data=data or tmp_path / "data", behaviour=behaviour
        )
        (bin_dir / "java").write_text(script)
        (bin_dir / "java").chmod(0o755)
    if mvn:
        (bin_dir / "mvn").write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / "mvn").chmod(0o755)
    return bin_dir


def test_missing_java_and_maven_are_both_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingToolError) as missing:
        check_tools(need_maven=True, environ={"PATH": str(empty)})
    message = str(missing.value)
    assert "missing on PATH: java (Java 17 or newer" in message
    assert "mvn (Apache Maven" in message


def test_only_the_missing_tool_is_named(tmp_path: Path) -> None:
    env = {"PATH": str(fake_bin(tmp_path))}
    with pytest.raises(MissingToolError) as missing:
        check_tools(need_maven=True, environ=env)
    assert "mvn" in str(missing.value) and "java (" not in str(missing.value)
    assert check_tools(need_maven=False, environ=env) == str(tmp_path / "bin" / "java")


def test_java_older_than_17_is_refused(tmp_path: Path) -> None:
    env = {"PATH": str(fake_bin(tmp_path, java_version="1.8.0_392", mvn=True))}
    with pytest.raises(MissingToolError, match="is Java 8; the Kafka broker needs Java 17"):
        check_tools(need_maven=True, environ=env)


def test_java_home_is_used_when_java_is_not_on_path(tmp_path: Path) -> None:
    bin_dir = fake_bin(tmp_path, java_version="21.0.1")
    env = {"PATH": "/nonexistent", "JAVA_HOME": str(bin_dir.parent)}
    assert check_tools(need_maven=False, environ=env) == str(bin_dir / "java")


def test_a_provisioned_cache_does_not_need_maven(tmp_path: Path) -> None:
    home = tmp_path / "kafka-home"
    (home / "libs").mkdir(parents=True)
    (home / ".complete").write_text("4.1.1\n")
    # No java and no mvn on PATH: reaching Maven (or even checking for it) would fail.
    assert provision(home, environ={"PATH": str(tmp_path / "nothing")}) == home / "libs"


def test_provisioning_reports_a_failing_maven(tmp_path: Path) -> None:
    env = {"PATH": str(fake_bin(tmp_path, mvn=True))}
    with pytest.raises(LocalKafkaError, match=re.escape("Maven could not resolve Kafka 4.1.1")):
        provision(tmp_path / "home", environ=env)
    assert not (tmp_path / "home" / ".complete").exists()


def test_cluster_ids_look_like_kafka_uuids() -> None:
    ids = {random_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)


def test_server_properties_single_node_kraft_on_loopback(tmp_path: Path) -> None:
    broker = LocalKafka(port=19092, controller_port=19999, state_dir=tmp_path)
    broker._write_config()
    props = dict(
        line.split("=", 1)
        for line in broker.properties_file.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19999"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19999"
    assert props["log.dirs"] == str(tmp_path / "data")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
    ):
        assert props[key] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert broker.bootstrap_servers == "127.0.0.1:19092"


def test_a_stale_or_foreign_pid_file_is_never_signalled(tmp_path: Path) -> None:
    broker = LocalKafka(port=19092, state_dir=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    broker.pid_file.write_text(f"{os.getpid()}\n")  # alive, but it is this test, not Kafka

    assert broker.pid() is None
    assert broker.stop() is False  # and we are still here
    assert not broker.pid_file.exists()


def _broker_with_fake_java(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, behaviour: str
) -> LocalKafka:
    home = tmp_path / "home"
    (home / "libs").mkdir(parents=True)
    (home / ".complete").write_text("4.1.1\n")
    state = tmp_path / "state"
    bin_dir = fake_bin(tmp_path, data=state / "data", behaviour=behaviour)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    return LocalKafka(free_port(), controller_port=free_port(), state_dir=state, kafka_home=home)


def test_start_timeout_shows_the_log_tail_and_stops_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = _broker_with_fake_java(tmp_path, monkeypatch, "hang")
    started = time.monotonic()
    with pytest.raises(LocalKafkaError) as failed:
        broker.start(timeout=2.0)

    assert time.monotonic() - started < 20
    message = str(failed.value)
    assert "did not answer metadata requests" in message and "within 2s" in message
    assert "fake broker: hang" in message
    assert broker.pid() is None and not broker.pid_file.exists()
    assert "fake broker: got TERM" in broker.log_file.read_text()


def test_a_broker_that_exits_while_starting_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = _broker_with_fake_java(tmp_path, monkeypatch, "crash")
    with pytest.raises(LocalKafkaError, match="Kafka exited while starting") as failed:
        broker.start(timeout=20.0)
    assert "fake broker: crash" in str(failed.value)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``prgate`` sets up the root logger; give the test session its own back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cli_prints_a_clear_error_without_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    argv = ["kafka", "start", "--port", "19094", "--kafka-home", str(tmp_path / "home"),
            "--state-dir", str(tmp_path / "state")]  # fmt: skip

    assert cli.main(argv) == 1

    err = capsys.readouterr().err
    assert "prgate: error: cannot run the local Kafka broker, missing on PATH: java" in err
    assert "mvn" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("bootstrap", "port"),
    [("127.0.0.1:19092", 19092), ("localhost:9092", 9092), ("kafka:9092", None),
     ("127.0.0.1:1,127.0.0.1:2", 1), ("127.0.0.1:1,kafka:2", None), ("", None)],
)  # fmt: skip
def test_loopback_bootstrap_selects_the_local_port(bootstrap: str, port: int | None) -> None:
    assert cli_kafka.loopback_port(bootstrap) == port


def test_delegated_subcommand_that_is_missing_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli.DELEGATED, "processor", ("no_such_module.app:main", "x"))
    assert cli.main(["processor", "--help"]) == 1
    assert "`prgate processor` is not available: cannot import no_such_module.app" in (
        capsys.readouterr().err
    )


def test_own_child_is_running_even_before_its_cmdline_is_visible(tmp_path: Path) -> None:
    # Regression: right after exec, /proc/PID/cmdline can be empty, and a just-spawned broker
    # was reported as "exited while starting". For its own child the object asks the child.
    broker = LocalKafka(port=19092, state_dir=tmp_path)
    child = subprocess.Popen(["sleep", "30"])  # its cmdline never names kafka.Kafka
    try:
        broker._proc = child
        broker.pid_file.write_text(f"{child.pid}\n")
        assert broker.pid() == child.pid
        child.terminate()
        child.wait(10)
        assert broker.pid() is None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
