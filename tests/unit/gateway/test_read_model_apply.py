"""ReadModel without a broker: snapshot rules, tombstones, garbage, read-your-writes folding."""

from __future__ import annotations

import asyncio

from gateway.read_model import ReadModel, _Record
from prgate.kafka.settings import KafkaSettings
from prgate.v1.outcome_pb2 import COMMAND_STATE_REJECTED, COMMAND_STATE_SUCCEEDED
from prgate.v1.pull_request_pb2 import PullRequest
from prgate.v1.results_pb2 import CommandResult
from tests.contracts.pull_request_view import PR, opened, retitled, succeeded


def snapshot(version: int, title: str = "T") -> _Record:
    return _Record(PR, version, PullRequest(pull_request_id=PR, version=version, title=title))


def model() -> ReadModel:
    # Never started: no consumer thread, no broker needed.
    return ReadModel(KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="unit."))


def test_snapshots_apply_only_when_newer_and_tombstones_remove() -> None:
    async def main() -> None:
        rm = model()
        rm._apply_records([snapshot(2, "two"), snapshot(1, "one"), snapshot(3, "three")])
        entity = rm.get(PR)
        assert entity is not None
        assert (entity.version, entity.title) == (3, "three")
        rm._apply_records([snapshot(3, "again")])  # same version, not folded: stale
        assert rm.get(PR).title == "three"  # type: ignore[union-attr]
        rm._apply_records([_Record(PR, 9), _Record("nobody", 10)])
        assert rm.get(PR) is None
        rm._apply_records([_Record("k", 11, garbage="Wire format was corrupt")])
        stats = rm.stats()
        assert stats["entities"] == 0
        assert stats["records"] == 7
        assert stats["stale"] == 2
        assert stats["tombstones"] == 2
        assert stats["garbage"] == 1
        assert stats["updates"] == 2

    asyncio.run(main())


def test_apply_result_folds_continuing_events_and_notifies() -> None:
    async def main() -> None:
        rm = model()
        watcher = rm.subscribe(PR)
        rm.apply_result(succeeded(opened()))
        created = rm.get(PR)
        assert created is not None
        assert (created.version, created.title, created.repository) == (1, "First", "octo/a")
        assert await rm.wait_for_version(PR, 1, timeout=0.0) is True  # held: no wait
        waiting = asyncio.ensure_future(rm.wait_for_version(PR, 3, timeout=2.0))
        rm.apply_result(succeeded(retitled(2, "Second"), retitled(3, "Third")))
        assert await waiting is True
        assert await rm.wait_for_version(PR, 4, timeout=0.01) is False
        # Only the last call waited (the task above started after the result was folded).
        assert (rm.stats()["version_waits"], rm.stats()["version_waits_timed_out"]) == (1, 1)
        assert rm.get(PR).title == "Third"  # type: ignore[union-attr]
        versions = [(await anext(watcher)).version for _ in range(2)]
        assert versions == [1, 3]
        assert rm.stats()["folded"] == 2

    asyncio.run(main())


def test_apply_result_ignores_what_does_not_continue_the_version() -> None:
    async def main() -> None:
        rm = model()
        rm._apply_records([snapshot(2, "snap")])
        rm.apply_result(succeeded(retitled(2, "already applied")))
        rm.apply_result(succeeded(retitled(4, "gap")))
        rm.apply_result(succeeded(retitled(3, "a"), retitled(5, "not consecutive")))
        rejected = succeeded(retitled(3, "rejected"))
        rejected.state = COMMAND_STATE_REJECTED
        rm.apply_result(rejected)
        rm.apply_result(
            CommandResult(
                command_id="c", pull_request_id=PR, state=COMMAND_STATE_SUCCEEDED, version=2
            )
        )
        entity = rm.get(PR)
        assert entity is not None
        assert (entity.version, entity.title) == (2, "snap")
        assert rm.stats()["folded"] == 0
        assert await rm.wait_for_version(PR, 3, timeout=0.05) is False
        assert rm._version_waiters == {}

    asyncio.run(main())


def test_snapshot_of_the_same_version_replaces_a_folded_entity_silently() -> None:
    async def main() -> None:
        rm = model()
        rm._apply_records([snapshot(1, "First")])
        rm.apply_result(succeeded(retitled(2, "Folded")))
        watcher = rm.subscribe(PR)
        assert (await anext(watcher)).title == "Folded"
        rm._apply_records([snapshot(2, "From processor")])
        assert rm.get(PR).title == "From processor"  # type: ignore[union-attr]
        assert watcher._queue == type(watcher._queue)()  # same version: no new notification
        rm._apply_records([snapshot(2, "Again")])  # no longer folded: stale now
        assert rm.get(PR).title == "From processor"  # type: ignore[union-attr]
        rm._apply_records([snapshot(3, "Next")])
        assert (await anext(watcher)).title == "Next"

    asyncio.run(main())


def test_list_and_subscribe_go_through_the_model() -> None:
    async def main() -> None:
        rm = model()
        rm._apply_records([snapshot(1)])
        page = rm.list(limit=10)
        assert [p.pull_request_id for p in page] == [PR]
        assert rm.list(after=PR) == []
        sub = rm.subscribe(PR)
        assert rm.stats()["watchers"] == 1
        assert (await anext(sub)).version == 1
        await rm.close()  # never started: only ends subscriptions
        assert rm.stats()["watchers"] == 0
        assert await rm.wait_caught_up(0.01) is False

    asyncio.run(main())


def test_many_waiters_that_time_out_are_cancelled_or_are_served_leave_none_behind() -> None:
    """Attack: thousands of calls wait on versions that never come (far-future tokens, up to
    2^64-1), some are cancelled by their clients, some time out, some are served; every
    one of them ends and none stays registered (a registered waiter would be a leak)."""

    async def main() -> None:
        rm = model()
        rm.apply_result(succeeded(opened()))
        far = [2**64 - 1, 2**63, 1_000_000]
        never = [
            asyncio.ensure_future(rm.wait_for_version(PR, far[i % 3], timeout=30.0))
            for i in range(1500)
        ]
        timing_out = [
            asyncio.ensure_future(rm.wait_for_version(f"other-{i % 7}", 5, timeout=0.05))
            for i in range(500)
        ]
        served = [
            asyncio.ensure_future(rm.wait_for_version(PR, 2, timeout=30.0)) for _ in range(500)
        ]
        await asyncio.sleep(0)  # every task registered its waiter
        assert rm.stats()["version_waiters"] == 2500
        for task in never:
            task.cancel()
        rm.apply_result(succeeded(retitled(2, "Second")))
        assert await asyncio.gather(*served) == [True] * 500
        assert await asyncio.gather(*timing_out) == [False] * 500
        results = await asyncio.gather(*never, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert rm.stats()["version_waiters"] == 0
        assert rm._version_waiters == {}
        assert rm.stats()["version_waits_timed_out"] == 500

    asyncio.run(main())
