"""The processor writes one log line per command outcome, with its ids, once committed."""

from __future__ import annotations

import logging
import time

import pytest

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
    with caplog.at_level(logging.INFO, logger="processor.outcomes"):
        observe.committed(handled, time.monotonic())
        observe.aborted(handled, "boom")  # an aborted batch has no outcome yet
    lines = [r.getMessage() for r in caplog.records if r.name == "processor.outcomes"]
    assert lines == [
        "event=command_outcome command=MergePullRequest outcome=succeeded command_id=c1"
        " pull_request_id=p1 events=2",
        "event=command_outcome command=- outcome=dead_letter command_id=c2"
        " pull_request_id=- events=0",
    ]
