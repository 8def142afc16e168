"""``python -m archive`` with a gate in front of every Delta commit, for tests that need a
batch to be out (on the writer thread) at a chosen moment (tests/integration/
test_archive_writer_faults.py).

Environment: ``ARCHIVE_TEST_GATE`` is a directory; ``ARCHIVE_TEST_GATE_WHEN`` is ``before``
(default: the commit waits at the gate) or ``after`` (the commit lands, then the batch waits
before it is handed back). Each commit that reaches the gate writes ``entered-<n>`` there,
holding the name of its thread, and waits until a file ``open`` exists (at most 120 s, then it
goes on). Each revocation callback writes ``revoking-<n>`` before it runs (the number of
partitions revoked), each assignment callback ``assigning-<n>`` (those assigned).
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from archive import service, sink
from archive.app import main

GATE = Path(os.environ["ARCHIVE_TEST_GATE"])
WHEN = os.environ.get("ARCHIVE_TEST_GATE_WHEN", "before")
_entered = itertools.count(1)
_revoking = itertools.count(1)
_assigning = itertools.count(1)


def _wait_at_gate() -> None:
    (GATE / f"entered-{next(_entered)}").write_text(threading.current_thread().name)
    deadline = time.monotonic() + 120
    while not (GATE / "open").exists() and time.monotonic() < deadline:
        threading.Event().wait(0.02)


_flush = sink.DeltaSink.flush


def _gated_flush(self: sink.DeltaSink, rows: Any, next_offsets: Any) -> sink.FlushResult:
    if WHEN == "before":
        _wait_at_gate()
        return _flush(self, rows, next_offsets)
    result = _flush(self, rows, next_offsets)
    _wait_at_gate()
    return result


_on_revoke = service.Archiver._on_revoke


def _marked_on_revoke(self: service.Archiver, consumer: Any, partitions: Any) -> None:
    (GATE / f"revoking-{next(_revoking)}").write_text(str(len(partitions)))
    _on_revoke(self, consumer, partitions)


_on_assign = service.Archiver._on_assign


def _marked_on_assign(self: service.Archiver, consumer: Any, partitions: Any) -> None:
    (GATE / f"assigning-{next(_assigning)}").write_text(str(len(partitions)))
    _on_assign(self, consumer, partitions)


sink.DeltaSink.flush = _gated_flush  # type: ignore[method-assign]
service.Archiver._on_revoke = _marked_on_revoke  # type: ignore[method-assign]
service.Archiver._on_assign = _marked_on_assign  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
