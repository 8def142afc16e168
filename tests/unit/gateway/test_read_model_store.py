"""PullRequestStore: ordering, filters and the cursor (``after``) under ListPullRequests.

Pages, their byte bound and their signed tokens are the query service's
(test_query_service.py, test_page_tokens.py).
"""

from __future__ import annotations

import pytest

from gateway.read_model_store import PullRequestStore
from prgate.v1.pull_request_pb2 import (
    PULL_REQUEST_STATUS_MERGED,
    PULL_REQUEST_STATUS_OPEN,
    PullRequest,
    PullRequestStatus,
)


def pr(
    pid: str, repository: str = "octo/a", status: PullRequestStatus = PULL_REQUEST_STATUS_OPEN
) -> PullRequest:
    return PullRequest(pull_request_id=pid, repository=repository, status=status, version=1)


def filled() -> PullRequestStore:
    store = PullRequestStore()
    # Inserted out of order on purpose: listing is by id.
    for i in (7, 3, 9, 1, 5, 2, 8, 4, 6, 0):
        repo = "octo/a" if i % 2 == 0 else "octo/b"
        status = PULL_REQUEST_STATUS_MERGED if i % 3 == 0 else PULL_REQUEST_STATUS_OPEN
        store.put(pr(f"pr-{i}", repo, status))
    return store


def ids(page: list[PullRequest]) -> list[str]:
    return [p.pull_request_id for p in page]


def walk(store: PullRequestStore, limit: int, **filters: object) -> list[list[str]]:
    """Every page of ``limit``, each continuing after the last id of the one before."""
    pages: list[list[str]] = []
    after = ""
    while True:
        page = ids(store.list(after=after, limit=limit, **filters))  # type: ignore[arg-type]
        if not page:
            return pages
        pages.append(page)
        after = page[-1]


def test_pages_walk_every_entity_in_id_order_exactly_once() -> None:
    pages = walk(filled(), 3)
    assert [pid for page in pages for pid in page] == [f"pr-{i}" for i in range(10)]
    assert len(pages) == 4


def test_after_the_last_id_there_is_nothing() -> None:
    store = filled()
    page = ids(store.list(limit=5))
    page2 = ids(store.list(after=page[-1], limit=5))
    assert len(page) == len(page2) == 5
    assert store.list(after=page2[-1], limit=5) == []
    # "after" need not be a stored id: the listing goes on from where it would sort.
    assert ids(store.list(after="pr-45", limit=2)) == ["pr-5", "pr-6"]


def test_filters_by_repository_and_status_across_pages() -> None:
    store = filled()
    assert walk(store, 2, repository="octo/a") == [["pr-0", "pr-2"], ["pr-4", "pr-6"], ["pr-8"]]
    merged = store.list(status=PULL_REQUEST_STATUS_MERGED)
    assert ids(merged) == ["pr-0", "pr-3", "pr-6", "pr-9"]
    both = store.list(repository="octo/b", status=PULL_REQUEST_STATUS_MERGED)
    assert ids(both) == ["pr-3", "pr-9"]


def test_repositories_match_whatever_their_case() -> None:
    # Snapshots written before repositories were stored in lower case keep what they had.
    store = PullRequestStore()
    store.put(pr("pr-1", "ACME/Widgets"))
    store.put(pr("pr-2", "acme/widgets"))
    store.put(pr("pr-3", "acme/gadgets"))
    for spelling in ("acme/widgets", "ACME/WIDGETS", "Acme/Widgets"):
        assert ids(store.list(repository=spelling)) == ["pr-1", "pr-2"]


def test_the_cursor_survives_removal_of_the_last_listed_entity() -> None:
    store = filled()
    page = ids(store.list(limit=2))
    assert store.remove("pr-1")
    assert not store.remove("pr-1")
    assert ids(store.list(after=page[-1], limit=2)) == ["pr-2", "pr-3"]


def test_put_replaces_without_duplicating_the_id() -> None:
    store = PullRequestStore()
    store.put(pr("x"))
    store.put(PullRequest(pull_request_id="x", version=2))
    page = store.list()
    assert len(store) == 1
    assert [p.version for p in page] == [2]


def test_the_limit_bounds_a_listing_and_a_negative_one_is_refused() -> None:
    store = PullRequestStore()
    for i in range(1005):
        store.put(pr(f"pr-{i:05d}"))
    assert len(store.list()) == 100
    assert len(store.list(limit=1001)) == 1001
    assert store.list(limit=0) == []
    with pytest.raises(ValueError):
        store.list(limit=-1)


def test_unicode_ids_sort_and_continue_by_code_point() -> None:
    store = PullRequestStore()
    for pid in ("pr-z", "pr-ü/1", "pr-a"):
        store.put(pr(pid))
    assert ids(store.list()) == ["pr-a", "pr-z", "pr-ü/1"]
    assert ids(store.list(after="pr-z")) == ["pr-ü/1"]


@pytest.mark.parametrize("after", ["", "pr-", "pr-9", "pr-99", "\U0010ffff"])
def test_any_cursor_is_a_position(after: str) -> None:
    # Whatever the cursor (the query service only hands out ids it read), the listing is the
    # ids that sort after it.
    expected = [f"pr-{i}" for i in range(10) if f"pr-{i}" > after]
    assert ids(filled().list(after=after)) == expected


@pytest.mark.parametrize("batch", [1, 64, 65, 1000])
def test_ids_added_in_bulk_between_listings_stay_in_order(batch: int) -> None:
    # New ids are merged into the order only when a listing (or a removal) needs it: a few
    # one by one, many with one sort. Both ways must give the same pages.
    store = PullRequestStore()
    expected: set[str] = set()
    for round_ in range(3):
        for i in range(batch):
            pid = f"pr-{(i * 7919 + round_ * 104729) % 100_003:06d}"
            store.put(pr(pid))
            expected.add(pid)
        removed = sorted(expected)[len(expected) // 2]
        assert store.remove(removed)
        expected.discard(removed)
        listed = [pid for page in walk(store, 1000) for pid in page]
        assert listed == sorted(expected)
        assert len(store) == len(expected)
