"""The ``prgate`` entry point, as real subprocesses: ``--version``; a bad flag answered by the
subcommand it was given to (its usage, exit 2); a refused setting (exit 2, one line, no
secret); an unreachable gateway (exit 3); Ctrl-C at any moment (exit 130, no traceback)."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prgate.v1 import pull_request_pb2, query_service_pb2

ROOT = Path(__file__).resolve().parents[2]


def prgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prgate.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_prints_the_installed_distribution_s() -> None:
    done = prgate("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"prgate {importlib.metadata.version('prgate')}\n"


def test_a_bad_flag_prints_the_subcommand_s_usage() -> None:
    for args, usage in (
        (("pr", "get", "pr-1", "--bogus"), "usage: prgate pr get "),
        (("topics", "ensure", "--bogus", "x"), "usage: prgate topics ensure "),
        (("events", "tail", "--bogus"), "usage: prgate events tail "),
    ):
        done = prgate(*args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(usage), done.stderr
        assert f"prgate {' '.join(args[:2])}: error: unrecognized arguments: --bogus" in (
            done.stderr
        )
        assert "Traceback" not in done.stderr


# -- attacks: bad settings, an unreachable gateway, Ctrl-C --------------------------------

SECRET_NUMBER = "8675309123456789"


def test_bad_settings_exit_2_with_one_line_naming_the_setting(tmp_path: Path) -> None:
    """Every way a setting can be refused is one ``prgate: error:`` line and exit 2 (was 1
    with a bare line, or a UnicodeDecodeError traceback), never showing a secret."""
    not_utf8 = tmp_path / "latin1.toml"
    not_utf8.write_bytes(b'target = "caf\xe9:50051"\n')
    secret_typed = tmp_path / "secret.toml"
    secret_typed.write_text(f"token = {SECRET_NUMBER}\n")
    for args, env, named in (
        (("pr", "get", "pr-1", "--config", str(not_utf8)), {}, "is not UTF-8"),
        (("pr", "get", "pr-1", "--config", str(secret_typed)), {}, "invalid setting token"),
        (("pr", "get", "pr-1"), {"PRGATE_TIMEOUT": "-1"}, "PRGATE_TIMEOUT"),
        (("pr", "get", "pr-1"), {"PRGATE_TIMEOUT": "nan"}, "PRGATE_TIMEOUT"),
        (("events", "tail"), {"PRGATE_KAFKA_PROPERTIES": SECRET_NUMBER}, "KAFKA_PROPERTIES"),
        (("decode", "commands"), {"PRGATE_PARTITIONS": "six"}, "PRGATE_PARTITIONS"),
        (("topics", "describe"), {"PRGATE_CONFIG_FILE": str(not_utf8)}, "is not UTF-8"),
    ):
        done = prgate(*args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("prgate: error: "), done.stderr
        assert named in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and SECRET_NUMBER not in done.stderr


def test_connection_settings_no_call_could_use_exit_2(tmp_path: Path) -> None:
    """A missing CA file was a FileNotFoundError traceback; a file that is not PEM, an empty
    target or a token with a line break, only C-core log lines and UNAVAILABLE / UNKNOWN /
    INTERNAL (exit 3 / 1)."""
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("root:x:0:0:root:/root:/bin/sh\n")
    for args, named in (
        (("--tls-ca-file", str(tmp_path / "absent.pem")), "--tls-ca-file"),
        (("--tls-ca-file", str(not_pem)), "is not a PEM file"),
        (("--tls-cert-file", str(not_pem), "--tls-key-file", str(not_pem)), "--tls-cert-file"),
        (("--target", ""), "--target / PRGATE_TARGET: empty"),
        (("--token", "hunter2\nsecret"), "--token / PRGATE_TOKEN: a bearer token is"),
        (("--token", "hünter2"), "--token / PRGATE_TOKEN: a bearer token is"),
    ):
        done = prgate("pr", "get", "pr-1", *args)
        assert "hunter2" not in done.stderr and "hünter2" not in done.stderr
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("prgate: error: invalid setting"), done.stderr
        assert named in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_delegated_service_refuses_a_bad_secret_setting_without_printing_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'page_token_secret = {SECRET_NUMBER}\nlisten = "127.0.0.1:0"\n')
    done = prgate("gateway", "--config", str(config))
    assert done.returncode == 2, done.stderr
    output = done.stdout + done.stderr
    assert "invalid setting page_token_secret" in output
    assert SECRET_NUMBER not in output and "Traceback" not in output


def test_an_unreachable_gateway_is_exit_3_with_the_reason() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        done = prgate(
            "pr", "get", "pr-1", "--target", f"127.0.0.1:{port}", env={"PRGATE_RETRIES": "2"}
        )
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("prgate: UNAVAILABLE: "), done.stderr
    assert "Traceback" not in done.stderr


class SilentServer:
    """A TCP listener that accepts connections and never answers (a hung gateway or broker)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                self.accepted.append(self._listener.accept()[0])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self.accepted:
            connection.close()
        self._listener.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.mark.parametrize(
    "args",
    [
        ("pr", "get", "pr-1", "--target", "{address}"),
        ("pr", "watch", "pr-1", "--target", "{address}"),
        ("pr", "approve", "pr-1", "--reviewer", "bob", "--target", "{address}"),
        ("events", "tail", "--bootstrap-servers", "{address}"),
        ("decode", "commands", "--bootstrap-servers", "{address}"),
    ],
)
def test_ctrl_c_during_a_call_that_hangs_ends_with_130(
    silent: SilentServer, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """The call would wait PRGATE_TIMEOUT (an hour here) or the Kafka metadata timeout;
    Ctrl-C ends it with 130 and no traceback (a blocked librdkafka metadata request used to
    hold it off for 15 s)."""
    address = f"127.0.0.1:{silent.port}"
    command = [a.format(address=address) for a in args]
    env = {
        **os.environ,
        "PRGATE_TIMEOUT": "3600",
        "PRGATE_CONSISTENCY_FILE": str(tmp_path / "tokens.json"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "prgate.cli", *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The command is in its call once the silent server holds its connection.
        deadline = time.monotonic() + 60
        while not silent.accepted and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert silent.accepted, "the command never connected"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr


def test_ctrl_c_while_the_cli_is_still_importing_ends_with_130(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C before prgate.cli.main is imported (grpc, confluent-kafka: a second or more on a
    busy machine) was a KeyboardInterrupt traceback."""
    from prgate.cli import entry

    class Interrupting(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, *_: object) -> None:
            if name == "prgate.cli.main":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "prgate.cli.main", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    assert entry.main() == 130


def test_a_reader_that_goes_away_ends_the_command_with_141_not_a_traceback() -> None:
    """Attack: ``prgate pr watch ID --json | head -c 100``. The reader closes the pipe; the
    next print raised BrokenPipeError with a traceback. Now exit 141 (as SIGPIPE ends
    ``cat``) and nothing on stderr."""
    from tests.unit.client.fake_gateway import FakeGateway

    fake = FakeGateway().start()
    try:
        versions = [
            query_service_pb2.WatchPullRequestResponse(
                pull_request=pull_request_pb2.PullRequest(
                    pull_request_id="pr-1", version=v, title="x" * 200
                ),
                consistency_token="t",
            )
            for v in range(1, 2000)
        ]
        fake.script("WatchPullRequest", versions)
        watch = ["pr", "watch", "pr-1", "--json", "--max", "1999", "--target", fake.target]
        process = subprocess.Popen(
            [sys.executable, "-m", "prgate.cli", *watch],
            cwd=ROOT,
            env={**os.environ, "PRGATE_CONSISTENCY_FILE": ""},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None and process.stderr is not None
        first = process.stdout.read(100)  # the reader takes a little, then goes away
        process.stdout.close()
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=60) == 141, stderr
    finally:
        fake.stop()
    assert first.startswith(b"{")
    assert stderr == "", stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # A negative --max stopped after the first version; a negative --timeout ended the
        # tail at once (exit 0); a negative offset or version went to Kafka or the gateway.
        (("pr", "watch", "pr-1", "--max", "-3"), "argument --max: must not be negative"),
        (("pr", "list", "--limit", "-1"), "argument --limit: must not be negative"),
        (("pr", "list", "--page-size", "many"), "argument --page-size: invalid int value"),
        (("pr", "approve", "pr-1", "--reviewer", "b", "--expected-version", "-1"), "negative"),
        (("events", "tail", "--timeout", "-1"), "argument --timeout: must not be negative"),
        (("events", "tail", "--timeout", "nan"), "argument --timeout: expected a finite"),
        (("decode", "t", "--start-offset", "-5"), "argument --start-offset: must not be"),
        (("decode", "t", "--partition", "-1"), "argument --partition: must not be negative"),
    ],
)
def test_negative_or_non_numeric_flags_are_usage_errors(
    args: tuple[str, ...], message: str
) -> None:
    done = prgate(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
