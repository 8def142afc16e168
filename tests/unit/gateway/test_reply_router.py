"""ReplyRouter without a broker: slots, the arrival races, the cache, duplicates, listeners."""

from __future__ import annotations

import asyncio

import pytest

from gateway.reply_router import ReplyRouter, TooManyWaiting, Waiter, _Garbage
from prgate.kafka.settings import KafkaSettings
from prgate.v1.outcome_pb2 import COMMAND_STATE_REJECTED, COMMAND_STATE_SUCCEEDED
from prgate.v1.results_pb2 import CommandResult


def router(**kwargs: int | float) -> ReplyRouter:
    # Never started: results are fed through the same _apply the consumer thread uses.
    return ReplyRouter(KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="u."), **kwargs)  # type: ignore[arg-type]


def result(command_id: str, state: int = COMMAND_STATE_SUCCEEDED, **kw: object) -> CommandResult:
    return CommandResult(command_id=command_id, pull_request_id="pr-1", state=state, **kw)  # type: ignore[arg-type]


def test_result_after_reservation_reaches_every_waiter_of_the_id() -> None:
    async def main() -> None:
        r = router()
        async with r.waiting("c1") as unary, r.waiting("c1") as watch, r.waiting("c2") as other:
            assert isinstance(unary, Waiter)
            assert r.waiting_count() == 3
            pending = [asyncio.ensure_future(w.result(2.0)) for w in (unary, watch)]
            await asyncio.sleep(0)
            r._apply([result("c1")])
            got = await asyncio.gather(*pending)
            assert [g.command_id for g in got if g is not None] == ["c1", "c1"]
            assert await other.result(0.01) is None
            # result() can be asked again; it stays known.
            assert (await unary.result(0)) == got[0]
        assert r.waiting_count() == 0
        assert r._waiters == {}

    asyncio.run(main())


def test_result_that_arrived_before_anybody_waited_is_returned_at_once() -> None:
    async def main() -> None:
        r = router()
        r._apply([result("early", COMMAND_STATE_REJECTED)])
        assert r.lookup("early") is not None
        async with r.waiting("early") as waiter:
            got = await waiter.result(0.0)  # "at once": no time to wait at all
        assert got is not None
        assert got.state == COMMAND_STATE_REJECTED

    asyncio.run(main())


def test_timeout_returns_none_and_the_late_result_is_still_cached() -> None:
    async def main() -> None:
        r = router()
        async with r.waiting("slow") as waiter:
            assert await waiter.result(0.05) is None
        r._apply([result("slow")])  # the caller left; WatchCommand may still ask
        assert r.lookup("slow") is not None
        assert r.stats()["results"] == 1

    asyncio.run(main())


def test_too_many_waiting_past_the_bound_and_slots_are_released() -> None:
    async def main() -> None:
        r = router(max_waiting=2)
        async with r.waiting("a"), r.waiting("a"):
            with pytest.raises(TooManyWaiting):
                async with r.waiting("b"):
                    pytest.fail("entered a slot past the bound")
            assert r.waiting_count() == 2
        async with r.waiting("b"):
            assert r.waiting_count() == 1

    asyncio.run(main())


def test_duplicate_answer_does_not_replace_the_original_result() -> None:
    async def main() -> None:
        r = router()
        original = result("c", version=3)
        original.events.add(version=3)
        r._apply([original])
        async with r.waiting("c") as waiter:
            r._apply([result("c", version=3, duplicate=True)])
            got = await waiter.result(1.0)
        assert got is not None
        assert not got.duplicate
        assert len(got.events) == 1
        cached = r.lookup("c")
        assert cached is not None
        assert not cached.duplicate

    asyncio.run(main())


def test_listeners_see_every_result_and_a_failing_listener_is_contained() -> None:
    async def main() -> None:
        r = router()
        seen: list[str] = []

        def broken(_result: CommandResult) -> None:
            raise RuntimeError("listener bug")

        r.add_listener(broken)
        r.add_listener(lambda res: seen.append(res.command_id))
        r._apply([result("x"), _Garbage(7, "Wire format was corrupt"), result("y")])
        assert seen == ["x", "y"]
        assert r.stats()["garbage"] == 1
        assert r.stats()["results"] == 2

    asyncio.run(main())


def test_cache_is_bounded() -> None:
    async def main() -> None:
        r = router(cache_size=2)
        r._apply([result("a"), result("b"), result("c")])
        assert r.lookup("a") is None
        assert r.lookup("c") is not None
        assert r.stats()["evicted"] == 1

    asyncio.run(main())
