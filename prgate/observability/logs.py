"""The one logging setup of every prgate process: gateway, processor, archive, the CLI, the bench.

One event per line on stderr. A line is an event name plus fields, written the stdlib way::

    log.info("command_outcome", extra={"rpc": "MergePullRequest", "outcome": "accepted"})

Off a terminal each line is one JSON object (python-json-logger): ``ts`` (UTC, RFC 3339 with
milliseconds), ``level``, ``logger`` (the module: every module logs to
``logging.getLogger(__name__)``), ``event``, then every field as its own JSON value, then
``trace_id``/``span_id`` (hex, as in W3C traceparent) when tracing is on and a span is current,
and ``exc`` with the traceback when there is one. On a terminal the same line is logfmt
(``ts=… level=info logger=… event=… key=value``).

librdkafka's own log lines come through :class:`KafkaClientLog` (confluent-kafka's ``logger``
setting, put on every client config by
:meth:`prgate.kafka.settings.KafkaSettings.client_config`): event ``librdkafka`` with
``facility``, ``client`` and ``detail`` (librdkafka's text) fields, and repeats of one line
suppressed for :data:`KAFKA_REPEAT_WINDOW_S` and then counted in ``suppressed``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

LEVEL_VARIABLE = "PRGATE_LOG_LEVEL"
DEFAULT_LEVEL = "INFO"

# LogRecord attributes that are not fields of the event (python-json-logger's list).
_NOT_FIELDS = frozenset(RESERVED_ATTRS) | {"message", "asctime"}
# The fields every line starts with, in this order; an ``extra`` key of the same name is
# written with a trailing underscore instead of overwriting them.
HEAD = ("ts", "level", "logger", "event")

# Set by prgate.observability.tracing.setup when tracing is on: returns (trace_id, span_id)
# of the current span, or None.
_current_ids: Callable[[], tuple[str, str] | None] | None = None


def enable_trace_ids(current_ids: Callable[[], tuple[str, str] | None] | None) -> None:
    """Add ``trace_id``/``span_id`` of the current span to every line (None: stop)."""
    global _current_ids  # noqa: PLW0603 - one setting per process, made at start
    _current_ids = current_ids


def _timestamp(record: logging.LogRecord) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z"
    )


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The line of ``record`` as an ordered mapping: :data:`HEAD`, its fields, trace ids."""
    entry: dict[str, Any] = {
        "ts": _timestamp(record),
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
    }
    for key, value in record.__dict__.items():
        if key not in _NOT_FIELDS and not key.startswith("_"):
            entry[f"{key}_" if key in HEAD else key] = value
    if "trace_id" not in entry and _current_ids is not None:
        ids = _current_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
    return entry


class JsonFormatter(_LibraryJsonFormatter):
    """One JSON object per line (see the module docstring for its fields).

    Values JSON has no type for (exceptions, enums, dataclasses, paths) are written by
    python-json-logger's encoder, as strings or objects.
    """

    def __init__(self) -> None:
        super().__init__(json_ensure_ascii=False)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data.update(event_fields(record))
        if message_dict.get("exc_info"):
            log_data["exc"] = message_dict["exc_info"]
        if message_dict.get("stack_info"):
            log_data["stack"] = message_dict["stack_info"]


_BARE = re.compile(r"^[^\s\"=]+$")


def _logfmt_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, int | float):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
    return text if _BARE.match(text) else json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    """``key=value`` per field, for people reading a terminal; same fields as the JSON."""

    def format(self, record: logging.LogRecord) -> str:
        line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in event_fields(record).items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a record is emitted.

    Looked up per record rather than bound once, so a stream swapped later (pytest's capture,
    a redirected stderr) is never written to after it was closed.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure(
    level: str | None = None,
    *,
    json_output: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Set up the root logger of this process: one :class:`StderrHandler`, JSON when stderr is
    not a terminal (``json_output`` overrides), logfmt lines otherwise.

    ``level`` is a level name such as ``"INFO"`` (case-insensitive); None reads
    ``PRGATE_LOG_LEVEL`` from ``environ`` (default ``os.environ``), else ``INFO``. Calling it
    again replaces the handler it installed before; handlers installed by others are kept.
    Python warnings (e.g. confluent-kafka's from ``close()``) become log lines too (logger
    ``py.warnings``), so nothing is written around the format. Raises ValueError for an
    unknown level name.
    """
    env = os.environ if environ is None else environ
    chosen = (level or env.get(LEVEL_VARIABLE) or DEFAULT_LEVEL).upper()
    use_json = not sys.stderr.isatty() if json_output is None else json_output
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if use_json else LogfmtFormatter())
    root = logging.getLogger()
    root.setLevel(chosen)
    for old in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    logging.captureWarnings(True)


# -- librdkafka --------------------------------------------------------------------------------

KAFKA_REPEAT_WINDOW_S = 30.0
_kafka_log = logging.getLogger(__name__)
_DIGITS = re.compile(r"\d+")


def masked(text: str) -> str:
    """``text`` with every number replaced by ``#``: lines that differ only in a port, an
    offset or a duration are one kind for :class:`Repeats`."""
    return _DIGITS.sub("#", text)


class Repeats:
    """Bounds a line that repeats while a condition lasts (Kafka unreachable, say).

    :meth:`admit` says whether to write a line of one kind now: the first of a kind is
    written, the same kind again within ``window_s`` seconds is only counted, and the first one
    after the window is written with how many were left out. Thread-safe.
    """

    def __init__(
        self,
        window_s: float = KAFKA_REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[object, ...], tuple[float, int]] = {}

    def admit(self, *kind: object) -> int | None:
        """None: leave this line out; else write it, with the returned count of the lines of
        its kind left out since the last one written (0: none)."""
        now = self._clock()
        with self._lock:
            first, suppressed = self._seen.get(kind, (-self._window_s - 1.0, 0))
            if now - first < self._window_s:
                self._seen[kind] = (first, suppressed + 1)
                return None
            self._seen[kind] = (now, 0)
            if len(self._seen) > 1000:  # kinds that stopped repeating long ago
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self._window_s}
        return suppressed


def log_repeating(
    logger: logging.Logger,
    repeats: Repeats,
    level: int,
    event: str,
    fields: Mapping[str, Any],
    *kind: object,
) -> None:
    """Log ``event`` with ``fields`` unless ``repeats`` leaves this ``kind`` out; a line
    written after some were left out carries ``suppressed`` (their number)."""
    if not logger.isEnabledFor(level):
        return
    suppressed = repeats.admit(*kind)
    if suppressed is None:
        return
    logger.log(level, event, extra={**fields, "suppressed": suppressed} if suppressed else fields)


class KafkaClientLog:
    """confluent-kafka's ``logger``: librdkafka's lines as ``librdkafka`` events, repeats bounded.

    confluent-kafka calls :meth:`log` from the client's ``poll()`` (or ``flush()``,
    ``consume()``) with a Python level, ``"%s [%s] %s"`` and (facility, client name, message).
    The first line of a kind (level, facility, client, message with its numbers masked) is
    logged; the same kind again within ``window_s`` seconds is only counted, and the first one
    after the window carries ``suppressed``: how many were left out. Thread-safe: one instance
    serves every client of the process.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        window_s: float = KAFKA_REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger or _kafka_log
        self._repeats = Repeats(window_s, clock)

    def log(self, level: int, msg: str, *args: Any, **_kwargs: Any) -> None:
        """The call confluent-kafka makes (``logging.Logger.log``'s shape)."""
        if not self._logger.isEnabledFor(level):
            return
        if len(args) == 3:
            facility, client, message = (str(a) for a in args)
        else:
            facility, client, message = "", "", msg % args if args else msg
        fields = {"facility": facility, "client": client, "detail": message}
        log_repeating(
            self._logger, self._repeats, level, "librdkafka", fields,
            level, facility, client, masked(message),
        )  # fmt: skip


KAFKA_CLIENT_LOG = KafkaClientLog()
