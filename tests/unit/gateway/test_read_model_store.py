"""PullRequestStore: ordering, filters and opaque page tokens of ListPullRequests."""

from __future__ import annotations

import pytest

from gateway.read_model_store import (
    MAX_PAGE_SIZE,
    PullRequestStore,
    decode_page_token,
    encode_page_token,
)
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


def test_pages_walk_every_entity_in_id_order_exactly_once() -> None:
    store = filled()
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page, token = store.list(page_size=3, page_token=token)
        seen += ids(page)
        pages += 1
        if not token:
            break
    assert seen == [f"pr-{i}" for i in range(10)]
    assert pages == 4


def test_exact_multiple_of_page_size_has_no_empty_trailing_page() -> None:
    store = filled()
    page, token = store.list(page_size=5)
    page2, token2 = store.list(page_size=5, page_token=token)
    assert len(page) == len(page2) == 5
    assert token2 == ""


def test_filters_by_repository_and_status_across_pages() -> None:
    store = filled()
    page, token = store.list(repository="octo/a", page_size=2)
    assert ids(page) == ["pr-0", "pr-2"]
    page, token = store.list(repository="octo/a", page_size=2, page_token=token)
    assert ids(page) == ["pr-4", "pr-6"]
    page, token = store.list(repository="octo/a", page_size=2, page_token=token)
    assert ids(page) == ["pr-8"]
    assert token == ""
    merged, _ = store.list(status=PULL_REQUEST_STATUS_MERGED)
    assert ids(merged) == ["pr-0", "pr-3", "pr-6", "pr-9"]
    both, _ = store.list(repository="octo/b", status=PULL_REQUEST_STATUS_MERGED)
    assert ids(both) == ["pr-3", "pr-9"]


def test_token_survives_removal_of_the_last_listed_entity() -> None:
    store = filled()
    page, token = store.list(page_size=2)
    assert store.remove("pr-1")
    assert not store.remove("pr-1")
    page, _ = store.list(page_size=2, page_token=token)
    assert ids(page) == ["pr-2", "pr-3"]


def test_put_replaces_without_duplicating_the_id() -> None:
    store = PullRequestStore()
    store.put(pr("x"))
    store.put(PullRequest(pull_request_id="x", version=2))
    page, _ = store.list()
    assert len(store) == 1
    assert [p.version for p in page] == [2]


def test_page_size_zero_means_default_and_large_is_capped() -> None:
    store = PullRequestStore()
    for i in range(MAX_PAGE_SIZE + 5):
        store.put(pr(f"pr-{i:05d}"))
    default, _ = store.list(page_size=0)
    capped, token = store.list(page_size=10 * MAX_PAGE_SIZE)
    assert len(default) == 100
    assert len(capped) == MAX_PAGE_SIZE
    assert token
    with pytest.raises(ValueError):
        store.list(page_size=-1)


def test_token_is_opaque_and_round_trips_unicode_ids() -> None:
    token = encode_page_token("pr-ü/1")
    assert "pr-" not in token
    assert decode_page_token(token) == "pr-ü/1"


@pytest.mark.parametrize(
    "token", ["!!!", "pr-1", encode_page_token("x")[:-1] + "*", "cHItMQ", "\u00e9"]
)
def test_malformed_tokens_are_value_errors(token: str) -> None:
    with pytest.raises(ValueError):
        filled().list(page_token=token)


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
        listed: list[str] = []
        token = ""
        while True:
            page, token = store.list(page_size=MAX_PAGE_SIZE, page_token=token)
            listed += [p.pull_request_id for p in page]
            if not token:
                break
        assert listed == sorted(expected)
        assert len(store) == len(expected)
