"""WatchHub: one source per pull request id, bounded per-watcher queues, skip to latest."""

from __future__ import annotations

import asyncio

import pytest

from gateway.read_model_hub import Subscription, WatchHub
from prgate.v1.pull_request_pb2 import PullRequest


def v(version: int, pid: str = "pr-1") -> PullRequest:
    return PullRequest(pull_request_id=pid, version=version)


async def take(sub: Subscription, n: int) -> list[int]:
    return [(await asyncio.wait_for(anext(sub), 1.0)).version for _ in range(n)]


def test_current_snapshot_first_then_each_new_version_to_every_watcher() -> None:
    async def main() -> None:
        hub = WatchHub()
        subs = [hub.subscribe("pr-1", v(1)) for _ in range(3)]
        other = hub.subscribe("pr-2", None)
        assert hub.watchers("pr-1") == 3
        assert hub.watchers() == 4
        assert hub.publish(v(2)) == 3
        assert hub.publish(v(3)) == 3
        for sub in subs:
            assert await take(sub, 3) == [1, 2, 3]
        assert other._queue == type(other._queue)()  # nothing for another id

    asyncio.run(main())


def test_a_waiting_watcher_is_woken_by_publish() -> None:
    async def main() -> None:
        hub = WatchHub()
        sub = hub.subscribe("pr-1", None)
        pending = asyncio.ensure_future(anext(sub))
        await asyncio.sleep(0)
        assert not pending.done()
        hub.publish(v(4))
        assert (await asyncio.wait_for(pending, 1.0)).version == 4

    asyncio.run(main())


def test_slow_watcher_skips_to_latest_without_affecting_others() -> None:
    async def main() -> None:
        hub = WatchHub(queue_size=3)
        slow = hub.subscribe("pr-1", None)
        fast = hub.subscribe("pr-1", None)
        fast_seen: list[int] = []
        for version in range(1, 11):
            hub.publish(v(version))
            fast_seen += await take(fast, 1)
        assert fast_seen == list(range(1, 11))
        # Queue of 3: after 1,2,3 the 4th push clears it (skips 1-3), and so on.
        got = await take(slow, len(slow._queue))
        assert got[-1] == 10
        assert got == sorted(got)
        assert slow.skipped == 10 - len(got)

    asyncio.run(main())


def test_close_ends_iteration_and_unsubscribes() -> None:
    async def main() -> None:
        hub = WatchHub()
        sub = hub.subscribe("pr-1", v(1))
        waiting = hub.subscribe("pr-1", None)
        pending = asyncio.ensure_future(anext(waiting))
        await asyncio.sleep(0)
        sub.close()
        sub.close()  # idempotent
        assert hub.watchers("pr-1") == 1
        with pytest.raises(StopAsyncIteration):
            await anext(sub)
        hub.close_all()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, 1.0)
        assert hub.watchers() == 0
        assert hub.publish(v(2)) == 0

    asyncio.run(main())


def test_async_for_consumes_until_closed() -> None:
    async def main() -> None:
        hub = WatchHub()
        sub = hub.subscribe("pr-1", v(1))
        seen: list[int] = []

        async def watch() -> None:
            async for entity in sub:
                seen.append(entity.version)
                if entity.version == 3:
                    await sub.aclose()

        task = asyncio.ensure_future(watch())
        await asyncio.sleep(0)
        hub.publish(v(2))
        hub.publish(v(3))
        await asyncio.wait_for(task, 1.0)
        assert seen == [1, 2, 3]
        assert sub.closed

    asyncio.run(main())
