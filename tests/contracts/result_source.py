"""The ResultSource contract (gateway/ports.py): one suite for the reply router and its fake.

Subclass :class:`ResultSourceContract` and implement :meth:`feed`: it yields a started result
source and a way to make results arrive the way the adapter gets them (the results topic for
gateway.reply_router.ReplyRouter, ``publish`` for the unit tests' FakeResults).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import pytest

from gateway.ports import ResultSource, TooManyWaiting
from prgate.v1.events_pb2 import EventEnvelope
from prgate.v1.outcome_pb2 import COMMAND_STATE_REJECTED, COMMAND_STATE_SUCCEEDED
from prgate.v1.results_pb2 import CommandResult

WAIT_S = 10.0  # bound on any wait for something that does happen


class ResultFeed(Protocol):
    """A result source under test and its input side."""

    source: ResultSource

    async def arrive(self, *results: CommandResult) -> None:
        """Deliver results in this order, as the processor writes them; returns once the
        source has taken them all in (listeners called, waiters handed theirs)."""
        ...


def result(
    command_id: str, state: int = COMMAND_STATE_SUCCEEDED, **fields: object
) -> CommandResult:
    return CommandResult(
        command_id=command_id,
        pull_request_id="pr-1",
        command_type="ApprovePullRequest",
        state=state,  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


class ResultSourceContract(ABC):
    """What every ResultSource does."""

    @abstractmethod
    def feed(self, *, max_waiting: int = 100) -> AbstractAsyncContextManager[ResultFeed]:
        """A started source with room for ``max_waiting`` waiting slots, and its input side."""

    def run(self, body: Callable[[ResultFeed], Awaitable[None]], *, max_waiting: int = 100) -> None:
        async def main() -> None:
            async with self.feed(max_waiting=max_waiting) as feed:
                await body(feed)

        asyncio.run(main())

    def test_a_result_reaches_every_waiter_of_its_command_and_no_other(self) -> None:
        async def body(feed: ResultFeed) -> None:
            source = feed.source
            async with (
                source.waiting("c1") as unary,
                source.waiting("c1") as watch,
                source.waiting("c2") as other,
            ):
                pending = [asyncio.ensure_future(w.result(WAIT_S)) for w in (unary, watch)]
                await feed.arrive(result("c1"))
                got = await asyncio.gather(*pending)
                assert [g.command_id if g else None for g in got] == ["c1", "c1"]
                assert await other.result(0.1) is None
                assert await unary.result(0) == got[0]  # asked again: still known

        self.run(body)

    def test_a_result_that_arrived_before_anybody_waited_is_known_at_once(self) -> None:
        async def body(feed: ResultFeed) -> None:
            await feed.arrive(result("early", COMMAND_STATE_REJECTED))
            known = feed.source.lookup("early")
            assert known is not None
            assert known.state == COMMAND_STATE_REJECTED
            async with feed.source.waiting("early") as waiter:
                assert await waiter.result(0) == known
            assert feed.source.lookup("never-sent") is None

        self.run(body)

    def test_no_result_in_time_is_none_and_a_late_one_is_still_found(self) -> None:
        async def body(feed: ResultFeed) -> None:
            async with feed.source.waiting("slow") as waiter:
                assert await waiter.result(0.1) is None
            await feed.arrive(result("slow"))
            late = feed.source.lookup("slow")
            assert late is not None
            assert late.command_id == "slow"

        self.run(body)

    def test_slots_past_the_bound_are_too_many_waiting_and_leaving_frees_them(self) -> None:
        async def body(feed: ResultFeed) -> None:
            async with feed.source.waiting("a"), feed.source.waiting("a"):
                with pytest.raises(TooManyWaiting):
                    async with feed.source.waiting("b"):
                        pytest.fail("entered a slot past the bound")
            async with feed.source.waiting("b") as waiter:
                await feed.arrive(result("b"))
                got = await waiter.result(WAIT_S)
                assert got is not None
                assert got.command_id == "b"

        self.run(body, max_waiting=2)

    def test_a_duplicate_answer_never_replaces_the_first_result(self) -> None:
        async def body(feed: ResultFeed) -> None:
            original = result("c", version=3, events=[EventEnvelope(event_id="e3", version=3)])
            await feed.arrive(original)
            async with feed.source.waiting("c") as waiter:
                await feed.arrive(result("c", version=3, duplicate=True))
                got = await waiter.result(WAIT_S)
            assert got == original
            assert feed.source.lookup("c") == original

        self.run(body)

    def test_listeners_see_every_result_in_order_and_a_failing_one_hurts_nobody(self) -> None:
        async def body(feed: ResultFeed) -> None:
            seen: list[tuple[str, bool]] = []

            def broken(_result: CommandResult) -> None:
                raise RuntimeError("listener bug")

            feed.source.add_listener(broken)
            feed.source.add_listener(lambda r: seen.append((r.command_id, r.duplicate)))
            await feed.arrive(result("x"), result("y"), result("x", duplicate=True))
            # In arrival order: one command's results in the order written (the results topic
            # orders by command id, not across commands).
            assert sorted(seen) == [("x", False), ("x", True), ("y", False)]
            assert [s for s in seen if s[0] == "x"] == [("x", False), ("x", True)]
            async with feed.source.waiting("y") as waiter:
                assert await waiter.result(0) == feed.source.lookup("y")

        self.run(body)
