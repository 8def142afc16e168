"""A process that cold-loads the gateway's read model store and stops itself in the middle,
for a test to SIGKILL it there (tests/integration/test_gateway_store_cold_load_kill.py).

    python -m tests.integration.cold_load_child BOOTSTRAP PREFIX PARTITIONS STATE_DIR AFTER

It starts a ReadModel with a state directory (1 MiB of memtables, so RocksDB writes files
while it loads), and once ``AFTER`` records were applied it blocks its event loop, waits (at
most 60 s) until RocksDB has written at least one level-0 file when ``AFTER`` > 0, and prints
``PAUSED <records> <l0 files> <cold_loading>``; then it waits to be killed. It prints
``CAUGHT_UP`` instead if the load ended before ``AFTER`` records.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.read_model import ReadModel, ReadModelState, _Record
from prgate.kafka.settings import KafkaSettings
from prgate.state import StoreMemory, StoreResources


def main(argv: Sequence[str]) -> None:
    bootstrap, prefix, partitions, state_dir, after = argv
    settings = KafkaSettings(
        bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=int(partitions)
    )
    state = ReadModelState(
        Path(state_dir), StoreResources(StoreMemory(4 << 20, 1 << 20)), cache_entries=16
    )
    applied = 0
    original = ReadModel._apply_records

    def apply(self: ReadModel, records: Sequence[_Record]) -> None:
        nonlocal applied
        original(self, records)
        applied += len(records)
        if applied < int(after):
            return
        stored = model._stored
        assert stored is not None
        db = stored.store._rdict
        deadline = time.monotonic() + 60
        files = 0
        while int(after) > 0 and time.monotonic() < deadline:
            files = db.property_int_value("rocksdb.num-files-at-level0") or 0
            if files:
                break
            threading.Event().wait(0.05)
        print(f"PAUSED {applied} {files} {int(stored.cold_loading)}", flush=True)
        threading.Event().wait()  # the event loop stays blocked here until SIGKILL

    # The tail takes the bound method when the model is made: replaced on the class first.
    ReadModel._apply_records = apply  # type: ignore[method-assign]
    model = ReadModel(settings, state=state)

    async def run() -> None:
        await model.start()
        if await model.wait_caught_up(120):
            print("CAUGHT_UP", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main(sys.argv[1:])
