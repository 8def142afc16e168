"""A processor that writes its state stores BEFORE committing its transaction, then SIGKILLs
itself: the store it leaves is ahead of the committed log. prgate's processor never does this
(it writes a store only after ``commit_transaction`` returned); this is the unclean stop a
state store must survive (Kafka Streams wipes its stores after one under exactly-once), made
on purpose, in a real process, so that the next processor's detection can be tested.

Run as ``python tests/integration/store_ahead_processor.py`` with the environment of
``python -m processor`` (:func:`integration.processor_runners.processor_env`) plus
``AHEAD_AT_VERSION``: the first transaction that stages a pull request at this version or
higher is written early and killed; the ones before commit normally. It prints
``store_written_before_commit`` with the offsets it wrote and kills itself with SIGKILL
before the commit.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from prgate.observability import logs
from prgate.settings import load
from processor.app import build_parser
from processor.loop import Processor
from processor.settings import ProcessorSettings
from processor.state_store import StagedChanges


class WriteBeforeCommit:
    """The ``fault`` hook: at ``before_commit`` of the chosen transaction, apply its staged
    states to the stores (with the snapshot offsets and the consumed commands offsets, as a
    commit would), then SIGKILL the process."""

    def __init__(self, at_version: int) -> None:
        self.at_version = at_version
        self.processor: Processor | None = None
        self.staged: StagedChanges | None = None

    def __call__(self, step: str) -> None:
        if step != "before_commit" or self.processor is None or self.staged is None:
            return
        staged = self.staged._changes  # the open transaction's new states, by partition
        versions = [s.version for changes in staged.values() for s in changes.values()]
        if not versions or max(versions) < self.at_version:
            return
        processor = self.processor
        producer = processor._txn.producer
        producer.flush(10)  # the snapshots' delivery reports give their offsets
        consumer = processor.member.consumer
        consumed = {
            tp.partition: tp.offset
            for tp in consumer.position(consumer.assignment())
            if tp.offset >= 0
        }
        snapshots = processor._txn.take_positions()
        self.staged.apply(snapshots, consumed)
        print(
            json.dumps(
                {
                    "event": "store_written_before_commit",
                    "snapshot_offsets": snapshots,
                    "commands_offsets": consumed,
                }
            ),
            flush=True,
        )
        os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    settings = load(ProcessorSettings, build_parser().parse_args([]))
    logs.configure(settings.log_level)
    hook = WriteBeforeCommit(int(os.environ["AHEAD_AT_VERSION"]))
    processor = Processor(settings, fault=hook)
    begin = processor.member.states.begin

    def begin_and_keep() -> StagedChanges:
        hook.staged = begin()
        return hook.staged

    processor.member.states.begin = begin_and_keep  # type: ignore[method-assign]
    hook.processor = processor
    sys.exit(processor.run())


if __name__ == "__main__":
    main()
