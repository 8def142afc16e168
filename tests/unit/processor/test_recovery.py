"""Whether a failed transaction committed after all, from the group's committed offsets."""

from __future__ import annotations

from processor.recovery import Verdict, batch_verdict


def test_committed_when_every_partition_of_the_batch_reached_its_end_offset() -> None:
    batch = {0: 12, 2: 40}
    assert batch_verdict(batch, {0: 12, 1: 5, 2: 40}) == (Verdict.COMMITTED, [])
    # A later commit (another batch) also means ours committed; a revoked partition is ignored.
    assert batch_verdict(batch, {0: 13, 1: 5}) == (Verdict.COMMITTED, [])


def test_aborted_when_no_partition_of_the_batch_moved() -> None:
    assert batch_verdict({0: 12, 2: 40}, {0: 10, 1: 5, 2: 33}) == (Verdict.ABORTED, [])
    assert batch_verdict({0: 12}, {0: -1001}) == (Verdict.ABORTED, [])  # nothing committed yet
    assert batch_verdict({0: 12}, {}) == (Verdict.ABORTED, [])  # no longer ours: drop


def test_mixed_names_the_partitions_to_restore_instead_of_guessing() -> None:
    assert batch_verdict({0: 12, 2: 40}, {0: 12, 2: 33}) == (Verdict.MIXED, [0, 2])
