"""Client properties (librdkafka's ``k=v``) as one string: ``PRGATE_KAFKA_PROPERTIES``, the
``--kafka-properties`` flags, and the string a parent hands a child process. Re-exported by
:mod:`prgate.settings`, which parses the settings that hold them.
"""

from __future__ import annotations

from collections.abc import Mapping

_COMMA = "\x00"  # stands for an escaped comma while a line is split


def parse_properties(raw: str) -> dict[str, str]:
    """Parse client properties: ``k=v`` items separated by commas or line breaks.

    A comma-separated piece without ``=`` continues the previous value, so values that are
    lists stay whole: ``debug=eos,broker,acks=all`` is ``{"debug": "eos,broker", "acks":
    "all"}``. ``\\,`` is a literal comma anywhere (for a value whose next piece holds ``=``).
    Blank pieces and lines starting with ``#`` are skipped. Raises ``ValueError`` on a first
    piece without ``=`` or an empty key; the message gives the line and piece, never their
    text (a value may be a password).
    """
    result: dict[str, str] = {}
    for line_number, raw_line in enumerate(raw.replace("\\,", _COMMA).splitlines(), 1):
        if raw_line.strip().startswith("#"):
            continue
        key: str | None = None
        for piece, raw_item in enumerate(raw_line.split(","), 1):
            item = raw_item.strip()
            if not item:
                continue
            name, sep, value = item.partition("=")
            if not sep and key is not None:
                result[key] = f"{result[key]},{item}".replace(_COMMA, ",")
                continue
            if not sep or not name.strip():
                what = "no key before =" if sep else "no ="
                raise ValueError(
                    f"expected key=value, got a piece with {what} (line {line_number}, piece"
                    f" {piece}; its text is not shown, it may be a secret; write \\, for a"
                    " comma inside a value)"
                )
            key = name.strip()
            result[key] = value.strip().replace(_COMMA, ",")
    return result


def format_properties(properties: Mapping[str, str]) -> str:
    """``properties`` as one string :func:`parse_properties` reads back exactly (commas in
    values escaped), e.g. for a child process's ``PRGATE_KAFKA_PROPERTIES``."""
    return ",".join(f"{k}={v.replace(',', chr(92) + ',')}" for k, v in properties.items())
