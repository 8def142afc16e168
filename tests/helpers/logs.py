"""Reading the JSON log lines of a process (prgate/observability/logs.py)."""

from __future__ import annotations

import json
from typing import Any


def log_events(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` parsed as one JSON object; a line that is not one fails the test
    (every line a process writes off a terminal is JSON, librdkafka's included)."""
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"log line {number} is not JSON ({exc}): {line!r}") from None
        assert isinstance(entry, dict) and "event" in entry, f"log line {number}: {line!r}"
        events.append(entry)
    return events
