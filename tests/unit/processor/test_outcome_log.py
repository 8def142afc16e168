"""The processor writes one log line per command outcome, with its ids, once committed."""

from __future__ import annotations

import logging
import time

import pytest

from prgate.observability import logs
from processor.handler import Handled, Outcome
from processor.observability import ProcessorObservability


def test_one_line_per_committed_command_with_its_ids(caplog: pytest.LogCaptureFixture) -> None:
    observe = ProcessorObservability()
    handled = [
        Handled(
            Outcome.SUCCEEDED, [], "MergePullRequest", 2, command_id="c1", pull_request_id="p1"
        ),
        Handled(Outcome.DEAD_LETTER, [], "", command_id="c2"),
    ]
    with caplog.at_level(logging.INFO, logger="processor.observability"):
        observe.committed(handled, time.monotonic())
        observe.aborted(handled, "boom")  # an aborted batch has no outcome yet
    lines = [logs.event_fields(r) for r in caplog.records if r.name == "processor.observability"]
    fields = ("event", "command", "outcome", "command_id", "pull_request_id", "events")
    assert [{k: line[k] for k in fields} for line in lines] == [
        dict(
            zip(
                fields,
                ["command_outcome", "MergePullRequest", "succeeded", "c1", "p1", 2],
                strict=True,
            )
        ),
        dict(zip(fields, ["command_outcome", "", "dead_letter", "c2", "", 0], strict=True)),
    ]
