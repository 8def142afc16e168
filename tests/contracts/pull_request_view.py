"""The PullRequestView contract (gateway/ports.py): one suite for the read model and its fake.

Subclass :class:`PullRequestViewContract` and implement :meth:`feed`: it yields a caught-up view
and a way to make snapshots and tombstones arrive the way the adapter gets them (the compacted
pull-requests topic for gateway.read_model.ReadModel, ``put``/``delete`` for the unit tests'
FakeView). Every test here then runs against that adapter; a class named ``Test...`` collects.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import pytest

from gateway.ports import PullRequestView, Subscription
from prgate.domain import fold
from prgate.v1.events_pb2 import EventEnvelope, PullRequestOpened, PullRequestTitleChanged
from prgate.v1.outcome_pb2 import COMMAND_STATE_REJECTED, COMMAND_STATE_SUCCEEDED
from prgate.v1.pull_request_pb2 import PULL_REQUEST_STATUS_CLOSED as CLOSED
from prgate.v1.pull_request_pb2 import PULL_REQUEST_STATUS_OPEN, PullRequest
from prgate.v1.results_pb2 import CommandResult

PR = "pr-contract"
WAIT_S = 10.0  # bound on any wait for something that does happen


class ViewFeed(Protocol):
    """A view under test and its input side."""

    view: PullRequestView

    async def snapshots(self, *entities: PullRequest) -> None:
        """Deliver snapshots in this order; returns once the view has taken them all in."""
        ...

    async def tombstone(self, pull_request_id: str) -> None:
        """Deliver a tombstone; returns once the view has taken it in."""
        ...


def opened(version: int = 1, pull_request_id: str = PR) -> EventEnvelope:
    return EventEnvelope(
        event_id=f"{pull_request_id}-e{version}",
        pull_request_id=pull_request_id,
        version=version,
        command_id=f"c-open-{pull_request_id}",
        pull_request_opened=PullRequestOpened(
            repository="octo/a", title="First", author="alice", target_branch="main"
        ),
    )


def retitled(version: int, title: str) -> EventEnvelope:
    return EventEnvelope(
        event_id=f"{PR}-e{version}",
        pull_request_id=PR,
        version=version,
        command_id=f"c{version}",
        pull_request_title_changed=PullRequestTitleChanged(new_title=title, changed_by="bob"),
    )


def succeeded(*events: EventEnvelope) -> CommandResult:
    return CommandResult(
        command_id=events[0].command_id,
        pull_request_id=PR,
        state=COMMAND_STATE_SUCCEEDED,
        version=events[-1].version,
        events=list(events),
    )


def snapshot(
    version: int,
    title: str = "T",
    *,
    pull_request_id: str = PR,
    repository: str = "octo/a",
    status: int = PULL_REQUEST_STATUS_OPEN,
) -> PullRequest:
    return PullRequest(
        pull_request_id=pull_request_id,
        version=version,
        title=title,
        repository=repository,
        status=status,  # type: ignore[arg-type]
    )


async def next_version(subscription: Subscription) -> tuple[int, str]:
    entity = await asyncio.wait_for(anext(aiter(subscription)), WAIT_S)
    return entity.version, entity.title


class PullRequestViewContract(ABC):
    """What every PullRequestView does."""

    @abstractmethod
    def feed(self) -> AbstractAsyncContextManager[ViewFeed]:
        """A started, caught-up view over nothing yet, and its input side."""

    def run(self, body: Callable[[ViewFeed], Awaitable[None]]) -> None:
        async def main() -> None:
            async with self.feed() as feed:
                await body(feed)

        asyncio.run(main())

    def test_it_is_caught_up_and_knows_nothing_yet(self) -> None:
        async def body(feed: ViewFeed) -> None:
            assert feed.view.caught_up()
            assert feed.view.get(PR) is None
            assert feed.view.list() == []

        self.run(body)

    def test_get_answers_the_newest_snapshot_and_never_an_older_one(self) -> None:
        async def body(feed: ViewFeed) -> None:
            await feed.snapshots(snapshot(1, "one"), snapshot(3, "three"), snapshot(2, "late"))
            current = feed.view.get(PR)
            assert current is not None
            assert (current.version, current.title) == (3, "three")
            await feed.snapshots(snapshot(3, "same version again"))
            assert feed.view.get(PR) == current

        self.run(body)

    def test_a_tombstone_removes_the_pull_request(self) -> None:
        async def body(feed: ViewFeed) -> None:
            await feed.snapshots(snapshot(1), snapshot(1, pull_request_id="pr-other"))
            await feed.tombstone(PR)
            assert feed.view.get(PR) is None
            page = feed.view.list()
            assert [p.pull_request_id for p in page] == ["pr-other"]

        self.run(body)

    def test_list_pages_in_id_order_after_a_cursor_with_filters(self) -> None:
        async def body(feed: ViewFeed) -> None:
            await feed.snapshots(
                *(
                    snapshot(
                        1,
                        pull_request_id=f"pr-{i:02d}",
                        repository="octo/a" if i % 2 == 0 else "octo/b",
                        status=CLOSED if i % 3 == 0 else PULL_REQUEST_STATUS_OPEN,
                    )
                    for i in (4, 0, 6, 2, 5, 1, 3)
                )
            )
            listed: list[str] = []
            pages, after = 0, ""
            while page := feed.view.list(after=after, limit=3):
                listed += [p.pull_request_id for p in page]
                pages += 1
                after = page[-1].pull_request_id
            assert listed == [f"pr-{i:02d}" for i in range(7)]
            assert pages == 3
            # A cursor between ids is a position; a negative limit is refused.
            assert [p.pull_request_id for p in feed.view.list(after="pr-021")] == [
                f"pr-{i:02d}" for i in range(3, 7)
            ]
            with pytest.raises(ValueError):
                feed.view.list(limit=-1)
            assert feed.view.list(limit=0) == []
            assert len(feed.view.list()) == 7
            repo_b = feed.view.list(repository="octo/b")
            assert [p.pull_request_id for p in repo_b] == ["pr-01", "pr-03", "pr-05"]
            # Repositories are one whatever their case (GitHub's rule).
            assert [p.pull_request_id for p in feed.view.list(repository="OCTO/B")] == [
                "pr-01",
                "pr-03",
                "pr-05",
            ]
            closed = feed.view.list(repository="octo/a", status=CLOSED)
            assert [p.pull_request_id for p in closed] == ["pr-00", "pr-06"]

        self.run(body)

    def test_a_subscription_gets_the_current_entity_then_each_newer_version_until_closed(
        self,
    ) -> None:
        async def body(feed: ViewFeed) -> None:
            await feed.snapshots(snapshot(1, "one"))
            watching = feed.view.subscribe(PR)
            also = feed.view.subscribe(PR)
            await feed.snapshots(snapshot(2, "two"), snapshot(1, "stale"), snapshot(3, "three"))
            for subscription in (watching, also):
                seen = [await next_version(subscription) for _ in range(3)]
                assert seen == [(1, "one"), (2, "two"), (3, "three")]
            watching.close()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(anext(aiter(watching)), WAIT_S)
            await feed.snapshots(snapshot(4, "four"))
            assert await next_version(also) == (4, "four")
            also.close()

        self.run(body)

    def test_a_subscription_before_the_pull_request_exists_starts_with_its_first_version(
        self,
    ) -> None:
        async def body(feed: ViewFeed) -> None:
            early = feed.view.subscribe(PR)
            await feed.snapshots(snapshot(1, "one"))
            assert await next_version(early) == (1, "one")
            early.close()

        self.run(body)

    def test_a_result_that_continues_the_version_is_folded_at_once(self) -> None:
        async def body(feed: ViewFeed) -> None:
            first = fold([opened()])
            assert first is not None
            await feed.snapshots(first)
            watching = feed.view.subscribe(PR)
            assert await next_version(watching) == (1, "First")
            feed.view.apply_result(succeeded(retitled(2, "Second"), retitled(3, "Third")))
            folded = feed.view.get(PR)
            assert folded is not None
            assert (folded.version, folded.title, folded.repository) == (3, "Third", "octo/a")
            assert await feed.view.wait_for_version(PR, 3, timeout=0)
            assert await next_version(watching) == (3, "Third")
            watching.close()

        self.run(body)

    def test_a_result_opening_an_unknown_pull_request_creates_it(self) -> None:
        async def body(feed: ViewFeed) -> None:
            feed.view.apply_result(succeeded(opened()))
            created = feed.view.get(PR)
            assert created is not None
            assert (created.version, created.title) == (1, "First")

        self.run(body)

    def test_results_that_do_not_continue_the_version_are_ignored(self) -> None:
        async def body(feed: ViewFeed) -> None:
            await feed.snapshots(snapshot(2, "snap"))
            rejected = succeeded(retitled(3, "rejected"))
            rejected.state = COMMAND_STATE_REJECTED
            for result in (
                succeeded(retitled(2, "already applied")),
                succeeded(retitled(4, "gap")),
                succeeded(retitled(3, "a"), retitled(5, "not consecutive")),
                rejected,
                CommandResult(
                    command_id="c", pull_request_id=PR, state=COMMAND_STATE_SUCCEEDED, version=3
                ),
            ):
                feed.view.apply_result(result)
            current = feed.view.get(PR)
            assert current is not None
            assert (current.version, current.title) == (2, "snap")

        self.run(body)

    def test_the_snapshot_of_a_folded_version_replaces_it_without_telling_watchers_again(
        self,
    ) -> None:
        async def body(feed: ViewFeed) -> None:
            await feed.snapshots(snapshot(1, "First"))
            feed.view.apply_result(succeeded(retitled(2, "Folded")))
            watching = feed.view.subscribe(PR)
            assert await next_version(watching) == (2, "Folded")
            from_processor = snapshot(2, "From processor")
            from_processor.description = "the processor's copy"
            await feed.snapshots(from_processor)
            assert feed.view.get(PR) == from_processor
            # The same version once more is stale now: the folded copy is gone.
            await feed.snapshots(snapshot(2, "Again"), snapshot(3, "Next"))
            assert await next_version(watching) == (3, "Next")
            watching.close()

        self.run(body)

    def test_wait_for_version_waits_for_it_and_gives_up_after_the_timeout(self) -> None:
        async def body(feed: ViewFeed) -> None:
            waiting = asyncio.ensure_future(feed.view.wait_for_version(PR, 2, timeout=WAIT_S))
            await asyncio.sleep(0)  # it is waiting now
            await feed.snapshots(snapshot(1))
            assert not waiting.done()
            await feed.snapshots(snapshot(2))
            assert await asyncio.wait_for(waiting, WAIT_S) is True
            assert await feed.view.wait_for_version(PR, 2, timeout=0) is True
            assert await feed.view.wait_for_version(PR, 5, timeout=0.1) is False
            assert await feed.view.wait_for_version("pr-nobody", 1, timeout=0.1) is False

        self.run(body)
