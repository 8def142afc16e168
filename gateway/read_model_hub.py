"""Fan-out of pull request versions to WatchPullRequest streams.

One :class:`WatchHub` holds, per pull request id, the set of subscriptions watching it, so
many watchers of one id share one source: the read model publishes each new version once and
the hub puts it into every subscriber's queue. Each queue is bounded; a watcher that falls
behind skips to the latest version instead of slowing anybody down. Everything runs on the
event loop; publishing never awaits.
"""

from __future__ import annotations

import asyncio
from collections import deque

from prgate.v1.pull_request_pb2 import PullRequest

DEFAULT_QUEUE_SIZE = 16


class Subscription:
    """An async iterator of PullRequest versions for one id; ``close()`` unsubscribes."""

    def __init__(self, hub: WatchHub, pull_request_id: str, queue_size: int) -> None:
        self.pull_request_id = pull_request_id
        self._hub = hub
        self._queue: deque[PullRequest] = deque()
        self._queue_size = queue_size
        # The future the iterator waits on while the queue is empty (a bare future, not an
        # asyncio.Event: one wakeup per version and watcher is the fan-out's hot path).
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.skipped = 0

    def _push(self, entity: PullRequest) -> None:
        if self._closed:
            return
        if len(self._queue) >= self._queue_size:
            # Too slow: what is queued is already outdated, jump to the newest version.
            self.skipped += len(self._queue)
            self._queue.clear()
        self._queue.append(entity)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> PullRequest:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._queue.popleft()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop watching: the iterator ends after nothing more (queued versions are dropped)."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._wake()
        self._hub._remove(self)

    async def aclose(self) -> None:
        self.close()


class WatchHub:
    """Subscriptions by pull request id."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._queue_size = queue_size
        self._by_id: dict[str, set[Subscription]] = {}
        self._count = 0

    def subscribe(self, pull_request_id: str, current: PullRequest | None) -> Subscription:
        """A new subscription; ``current`` (if any) is its first item."""
        subscription = Subscription(self, pull_request_id, self._queue_size)
        if current is not None:
            subscription._push(current)
        self._by_id.setdefault(pull_request_id, set()).add(subscription)
        self._count += 1
        return subscription

    def publish(self, entity: PullRequest) -> int:
        """Queue ``entity`` for every watcher of its id; returns how many got it."""
        subscribers = self._by_id.get(entity.pull_request_id)
        if not subscribers:
            return 0
        for subscription in subscribers:
            subscription._push(entity)
        return len(subscribers)

    def watchers(self, pull_request_id: str | None = None) -> int:
        """Open subscriptions, for one id or in total."""
        if pull_request_id is None:
            return self._count
        return len(self._by_id.get(pull_request_id, ()))

    def close_all(self) -> None:
        """End every subscription (shutdown)."""
        for subscribers in list(self._by_id.values()):
            for subscription in list(subscribers):
                subscription.close()

    def _remove(self, subscription: Subscription) -> None:
        subscribers = self._by_id.get(subscription.pull_request_id)
        if subscribers is None or subscription not in subscribers:
            return
        subscribers.discard(subscription)
        self._count -= 1
        if not subscribers:
            del self._by_id[subscription.pull_request_id]
