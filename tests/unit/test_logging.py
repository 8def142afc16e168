"""One logging setup for every process, and every logger named after its module.

The names are checked on the AST of every module of the three services (gateway, processor,
archive), the shared package and the bench: a logger named by hand drifts when code moves (lines
of processor/recovery.py used to say ``logger=processor.loop``).
"""

from __future__ import annotations

import ast
import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from prgate.observability import logs

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "processor", "archive", "prgate", "bench")


def hand_named_loggers(source: str, filename: str = "<source>") -> list[str]:
    """Every ``getLogger(...)`` call whose argument is not ``__name__``, as "line: call".

    ``getLogger()`` without an argument (the root logger, which only the setup touches) is
    allowed.
    """
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name != "getLogger" or (not node.args and not node.keywords):
            continue
        args = [*node.args, *(k.value for k in node.keywords)]
        if not (len(args) == 1 and isinstance(args[0], ast.Name) and args[0].id == "__name__"):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def modules() -> list[Path]:
    return sorted(
        path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "v1" not in path.relative_to(ROOT).parts
    )


def test_the_walk_covers_every_package() -> None:
    seen = {path.relative_to(ROOT).parts[0] for path in modules()}
    assert seen == set(PACKAGES)


def test_every_logger_is_named_after_its_module() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in modules()
        if (found := hand_named_loggers(path.read_text(), str(path)))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    "source",
    [
        'log = logging.getLogger("processor.loop")',
        "log = getLogger('x')",
        "log = logging.getLogger(name=NAME)",
        'def f():\n    return logging.getLogger(f"{__name__}.child")',
    ],
)
def test_the_name_check_catches_a_hand_named_logger(source: str) -> None:
    assert hand_named_loggers(source) != []


def test_the_name_check_allows_module_and_root_loggers() -> None:
    source = "a = logging.getLogger(__name__)\nb = logging.getLogger()\nc = getLogger(__name__)"
    assert hand_named_loggers(source) == []


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, with pytest's handlers and level given back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_level_comes_from_the_argument_else_prgate_log_level(
    root_logger: logging.Logger,
) -> None:
    logs.configure(environ={"PRGATE_LOG_LEVEL": "debug"})
    assert root_logger.level == logging.DEBUG
    logs.configure("warning", environ={"PRGATE_LOG_LEVEL": "debug"})
    assert root_logger.level == logging.WARNING
    logs.configure(environ={})
    assert root_logger.level == logging.INFO


def test_lines_are_json_with_every_field_or_logfmt_on_the_current_stderr(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logs.configure("INFO", json_output=True)
    fields = {"n": 1, "topic": "prgate.commands", "partitions": [0, 2], "ok": True, "x": None}
    logging.getLogger("prgate.example").info("one", extra=fields)
    monkeypatch.setattr(sys, "stderr", second)  # e.g. a test's capture replaced it
    logging.getLogger("prgate.example").info("two", extra={"error": ValueError("bad")})
    entry = json.loads(first.getvalue())
    assert list(entry)[:4] == ["ts", "level", "logger", "event"]
    assert entry["ts"].endswith("Z") and "T" in entry["ts"]
    assert {k: entry[k] for k in ("level", "logger", "event")} == {
        "level": "info",
        "logger": "prgate.example",
        "event": "one",
    }
    assert {k: entry[k] for k in fields} == fields
    assert "msg" not in entry and "trace_id" not in entry
    two = json.loads(second.getvalue())
    assert (two["event"], two["error"]) == ("two", "ValueError: bad")

    logs.configure("INFO", json_output=False)
    logging.getLogger("prgate.example").info("three", extra={"path": "a b", "n": 2})
    line = second.getvalue().splitlines()[-1]
    assert line.startswith("ts=")
    assert line.endswith('level=info logger=prgate.example event=three path="a b" n=2'), line


def test_a_field_named_like_a_head_field_does_not_replace_it(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    logs.configure("INFO", json_output=True)
    logging.getLogger("prgate.example").info("real", extra={"level": "x", "event": "fake"})
    entry = json.loads(out.getvalue())
    assert (entry["event"], entry["level"], entry["event_"], entry["level_"]) == (
        "real",
        "info",
        "fake",
        "x",
    )


def test_an_exception_is_one_json_line_with_its_traceback(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    logs.configure("INFO", json_output=True)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("prgate.example").exception("failed", extra={"k": 1})
    (line,) = out.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["event"] == "failed" and entry["level"] == "error" and entry["k"] == 1
    assert "RuntimeError: boom" in entry["exc"] and "Traceback" in entry["exc"]


def test_librdkafka_repeats_are_suppressed_then_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    sink = logs.KafkaClientLog(
        logging.getLogger("prgate.example"), window_s=30, clock=lambda: now[0]
    )
    fail = "[thrd:127.0.0.1:1/bootstrap]: Connect to ipv4#127.0.0.1:%d failed: refused"
    with caplog.at_level(logging.DEBUG, logger="prgate.example"):
        for attempt in range(50):  # librdkafka retries every second or faster
            now[0] += 0.5
            sink.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", fail % attempt)
        sink.log(logging.WARNING, "%s [%s] %s", "REQTMOUT", "rdkafka#producer-1", "timed out")
        now[0] += 30.0
        sink.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", fail % 99)
    lines = [logs.event_fields(r) for r in caplog.records]
    assert [(e["event"], e["facility"], e.get("suppressed")) for e in lines] == [
        ("librdkafka", "FAIL", None),
        ("librdkafka", "REQTMOUT", None),
        ("librdkafka", "FAIL", 49),
    ]
    assert lines[0]["client"] == "rdkafka#producer-1" and lines[0]["level"] == "error"
    assert lines[0]["detail"] == fail % 0


def test_configuring_again_replaces_only_its_own_handler(root_logger: logging.Logger) -> None:
    other = logging.NullHandler()
    root_logger.addHandler(other)
    logs.configure("INFO")
    logs.configure("INFO")
    ours = [h for h in root_logger.handlers if isinstance(h, logs.StderrHandler)]
    assert len(ours) == 1
    assert other in root_logger.handlers


def test_a_python_warning_is_a_json_line_too(
    root_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    # pytest records warnings per test (its own showwarning): take them back for this one.
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(False)
        logs.configure("INFO", json_output=True)
        try:
            warnings.warn("abort_transaction failed during close", RuntimeWarning, stacklevel=1)
        finally:
            logging.captureWarnings(False)
    (line,) = out.getvalue().splitlines()
    entry = json.loads(line)
    assert (entry["logger"], entry["level"]) == ("py.warnings", "warning")
    assert "RuntimeWarning: abort_transaction failed during close" in entry["event"]
