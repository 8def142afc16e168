"""Which characters a text field may hold, and UTF-8 byte sizes. Pure.

Three kinds of text (``docs/domain-api.md``, "Text"):

- **names** (people, branches, check names): one line, no control characters (Unicode
  category Cc), no format characters (Cf: the bidirectional controls such as U+202E,
  zero-width and other invisible characters), no line or paragraph separators (U+2028,
  U+2029). Names are compared for equality, so nothing invisible may make two look alike.
- **one-line texts** (titles): as names, except that the zero-width non-joiner and joiner
  (U+200C, U+200D) are allowed: emoji sequences and several scripts (Persian, the Indic
  scripts) need them, and they reorder nothing.
- **multi-line texts** (description, commit message, revert reason): tab, line feed, carriage
  return and the line/paragraph separators are allowed; other control characters and format
  characters are not, the two joiners excepted.

Lone surrogates (Cs) are never allowed. The "Trojan Source" attack (CVE-2021-42574) reorders
what people see with the bidirectional controls; tag characters (U+E0000 block) hide text from
people while machines still read it.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from functools import cache

JOINERS = frozenset({0x200C, 0x200D})
LINE_BREAKS_KEPT = frozenset({0x09, 0x0A, 0x0D})  # in multi-line texts
CONTROLS = frozenset(range(0x00, 0x20)) | frozenset(range(0x7F, 0xA0))  # Cc
SURROGATES = range(0xD800, 0xE000)  # Cs
SEPARATORS = frozenset({0x2028, 0x2029})  # Zl, Zp


class TextKind(Enum):
    """The character rules of one field."""

    NAME = "name"
    ONE_LINE = "one-line"
    MULTI_LINE = "multi-line"


class Problem(Enum):
    """Why a character is refused; the value is the reason suffix it gives."""

    CONTROL = "CONTROL_CHARACTERS"  # Cc, Cs, or a line break in a one-line field
    FORMAT = "FORMAT_CHARACTERS"  # Cf: bidirectional controls, invisible characters


@dataclass(frozen=True)
class BadCharacter:
    """The first refused character of a text: where (code point index) and what."""

    index: int
    character: str
    problem: Problem

    def describe(self) -> str:
        """``U+202E RIGHT-TO-LEFT OVERRIDE at character 4`` (counted from 1)."""
        code = ord(self.character)
        name = unicodedata.name(self.character, "")
        label = f"U+{code:04X} {name}" if name else f"U+{code:04X}"
        return f"{label} at character {self.index + 1}"


@cache
def format_characters() -> frozenset[int]:
    """Every code point of category Cf in this Python's Unicode database (computed once,
    ~0.15 s, when the first non-ASCII text arrives; ASCII holds none)."""
    return frozenset(
        code for code in range(0x80, sys.maxunicode + 1) if unicodedata.category(chr(code)) == "Cf"
    )


def _char_class(codes: Iterable[int]) -> str:
    """A regex character class of ``codes``, as ranges."""
    parts: list[str] = []
    start = previous = -2
    for code in sorted(codes):
        if code != previous + 1:
            if start >= 0:
                parts.append(_range(start, previous))
            start = code
        previous = code
    if start >= 0:
        parts.append(_range(start, previous))
    return "[" + "".join(parts) + "]"


def _range(low: int, high: int) -> str:
    if low == high:
        return re.escape(chr(low))
    return f"{re.escape(chr(low))}-{re.escape(chr(high))}"


@cache
def _pattern(kind: TextKind, ascii_only: bool) -> re.Pattern[str]:
    """One pattern per kind: group ``control`` or group ``format`` matches a refused character."""
    control = set(CONTROLS)
    if kind is TextKind.MULTI_LINE:
        control -= LINE_BREAKS_KEPT
    if ascii_only:
        return re.compile(f"(?P<control>{_char_class(c for c in control if c < 0x80)})")
    control |= set(SURROGATES)
    if kind is not TextKind.MULTI_LINE:
        control |= SEPARATORS
    formats = set(format_characters())
    if kind is not TextKind.NAME:
        formats -= JOINERS
    return re.compile(f"(?P<control>{_char_class(control)})|(?P<format>{_char_class(formats)})")


def bad_character(value: str, kind: TextKind) -> BadCharacter | None:
    """The first character ``value`` may not hold as a text of ``kind``, or None."""
    found = _pattern(kind, value.isascii()).search(value)
    if found is None:
        return None
    problem = Problem.CONTROL if found.lastgroup == "control" else Problem.FORMAT
    return BadCharacter(found.start(), found[0], problem)


def utf8_size(value: str) -> int:
    """The UTF-8 size of ``value`` in bytes (a lone surrogate counts its 3 bytes)."""
    if value.isascii():
        return len(value)
    return len(value.encode("utf-8", "surrogatepass"))


def clip_utf8(value: str, limit: int) -> str:
    """``value`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    if utf8_size(value) <= limit:
        return value
    return value.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")
