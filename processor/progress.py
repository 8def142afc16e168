"""The processor's counters and its periodic ``event=progress`` log line."""

from __future__ import annotations

import logging
import time

from processor.handler import Outcome
from processor.state_store import PartitionStates

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10.0


class Progress:
    """Commands by outcome, committed batches and aborts; logged when they changed."""

    def __init__(self, states: PartitionStates) -> None:
        self._states = states
        self.counts: dict[str, int] = {o.value: 0 for o in Outcome}
        # record_aborts: aborts caused by a record Kafka refused (processor.record_failures).
        self.counts.update(batches=0, aborts=0, record_aborts=0)
        self._last = time.monotonic()
        self._logged = dict(self.counts)

    def maybe_log(self) -> None:
        """Log the counters every PROGRESS_EVERY_S, when they changed."""
        if time.monotonic() - self._last >= PROGRESS_EVERY_S and self.counts != self._logged:
            self.log("progress")

    def log(self, event: str) -> None:
        self._last = time.monotonic()
        self._logged = dict(self.counts)
        log.info(
            event,
            extra={
                **self.counts,
                "partitions": self._states.partitions(),
                "pull_requests": self._states.count(),
            },
        )
