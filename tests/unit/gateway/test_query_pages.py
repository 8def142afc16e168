"""ListPullRequests pages (issue 12): bounded in bytes as well as in count, signed tokens bound
to their listing, repositories compared case-insensitively; Get and Watch of a pull request too
large for any response answer with a status, not a traceback."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest

from gateway.settings import RESPONSE_MARGIN_BYTES, GatewaySettings
from prgate.v1 import pull_request_pb2, query_service_pb2
from tests.unit.gateway.conftest import Harness, make_harness

# Small limits, so that a small message limit still holds the largest pull request they allow.
SMALL_LIMITS = {
    "max_description_bytes": 1024,
    "max_commit_message_bytes": 1024,
    "max_checks": 20,
    "max_reviews": 10,
}
MAX_MESSAGE = 64 * 1024


def entity(pull_request_id: str, repository: str = "acme/widgets", size: int = 0):
    return pull_request_pb2.PullRequest(
        pull_request_id=pull_request_id,
        repository=repository,
        title=f"title of {pull_request_id}",
        description="d" * size,
        status=pull_request_pb2.PULL_REQUEST_STATUS_OPEN,
        version=1,
    )


@pytest.fixture
def small() -> Iterator[Harness]:
    h = make_harness(max_message_bytes=MAX_MESSAGE, **SMALL_LIMITS)
    yield h
    h.loop.close()


def list_all(h: Harness, **fields: object) -> list[query_service_pb2.ListPullRequestsResponse]:
    """Every page of a listing, following next_page_token."""
    request = query_service_pb2.ListPullRequestsRequest(**fields)  # type: ignore[arg-type]
    pages = []
    while True:
        outcome = h.call("ListPullRequests", request)
        assert outcome.code == grpc.StatusCode.OK, outcome.message
        pages.append(outcome.response)
        if not outcome.response.next_page_token:
            return pages
        request.page_token = outcome.response.next_page_token


def ids(pages: list[query_service_pb2.ListPullRequestsResponse]) -> list[str]:
    return [p.pull_request_id for page in pages for p in page.pull_requests]


def test_a_page_stops_early_at_the_message_limit_and_the_next_goes_on(small: Harness) -> None:
    # Old snapshots (from before the limits) may be larger than the limits allow today.
    for i in range(12):
        small.view.put(entity(f"pr-{i:02d}", size=20_000))
    pages = list_all(small, page_size=100)
    assert ids(pages) == [f"pr-{i:02d}" for i in range(12)]
    assert len(pages) == 4  # three 20 kB pull requests fit 60 kB
    for page in pages:
        assert page.ByteSize() <= MAX_MESSAGE - RESPONSE_MARGIN_BYTES + len(page.next_page_token)


def test_page_size_still_bounds_a_page_of_small_pull_requests(small: Harness) -> None:
    for i in range(10):
        small.view.put(entity(f"pr-{i:02d}"))
    pages = list_all(small, page_size=5)
    assert [len(page.pull_requests) for page in pages] == [5, 5]  # no empty trailing page


def test_a_pull_request_too_large_for_any_response_is_left_out_with_a_warning(
    small: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    small.view.put(entity("pr-a"))
    small.view.put(entity("pr-b", size=MAX_MESSAGE))
    small.view.put(entity("pr-c"))
    with caplog.at_level(logging.WARNING, logger="gateway.query_service"):
        assert ids(list_all(small, page_size=2)) == ["pr-a", "pr-c"]
    (skipped,) = [r for r in caplog.records if r.getMessage() == "list_skipped_too_large"]
    assert skipped.__dict__["pull_request_id"] == "pr-b"
    assert "Traceback" not in caplog.text


def test_get_and_watch_of_a_pull_request_too_large_answer_failed_precondition(
    small: Harness,
) -> None:
    small.view.put(entity("pr-big", size=MAX_MESSAGE))
    outcome = small.call(
        "GetPullRequest", query_service_pb2.GetPullRequestRequest(pull_request_id="pr-big")
    )
    assert outcome.code == grpc.StatusCode.FAILED_PRECONDITION
    assert outcome.details["ErrorInfo"].reason == "RESPONSE_TOO_LARGE"
    rpc = small.open_stream(
        "WatchPullRequest", query_service_pb2.WatchPullRequestRequest(pull_request_id="pr-big")
    )
    ended = small.ended(rpc)
    assert ended.code == grpc.StatusCode.FAILED_PRECONDITION
    assert ended.details["ErrorInfo"].reason == "RESPONSE_TOO_LARGE"


def test_the_message_limit_must_hold_the_largest_pull_request_the_limits_allow() -> None:
    with pytest.raises(ValueError, match="max_message_bytes"):
        GatewaySettings(max_message_bytes=MAX_MESSAGE)  # the default limits need ~240 kB
    GatewaySettings(max_message_bytes=MAX_MESSAGE, **SMALL_LIMITS)  # type: ignore[arg-type]


def bad_token(h: Harness, request: query_service_pb2.ListPullRequestsRequest) -> str:
    outcome = h.call("ListPullRequests", request)
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    (violation,) = outcome.details["BadRequest"].field_violations
    assert violation.field == "page_token"
    assert outcome.details["ErrorInfo"].reason == "INVALID_PAGE_TOKEN"
    assert request.page_token not in outcome.message or not request.page_token
    return str(violation.description)


def first_token(h: Harness, **fields: object) -> str:
    for i in range(3):
        h.view.put(entity(f"pr-{i}"))
        h.view.put(entity(f"pr-x{i}", repository="acme/gadgets"))
    request = query_service_pb2.ListPullRequestsRequest(page_size=1, **fields)  # type: ignore[arg-type]
    token: str = h.call("ListPullRequests", request).response.next_page_token
    assert token
    return token


def test_a_tampered_truncated_or_made_up_token_is_invalid_argument(harness: Harness) -> None:
    token = first_token(harness, repository="acme/widgets")
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    for made_up in (flipped, token[:-3], "cHItMQ", "pr-0", "\u202e", "x" * 2000):
        request = query_service_pb2.ListPullRequestsRequest(
            repository="acme/widgets", page_token=made_up
        )
        assert bad_token(harness, request) == "page_token was not issued by this service"


def test_a_token_of_another_listing_is_invalid_argument(harness: Harness) -> None:
    token = first_token(harness, repository="acme/widgets")
    for other in (
        {"repository": "acme/gadgets"},
        {"repository": ""},
        {"repository": "acme/widgets", "status": pull_request_pb2.PULL_REQUEST_STATUS_MERGED},
    ):
        request = query_service_pb2.ListPullRequestsRequest(page_token=token, **other)  # type: ignore[arg-type]
        assert bad_token(harness, request).startswith("page_token belongs to another listing")
    # The page size may change from page to page.
    request = query_service_pb2.ListPullRequestsRequest(
        repository="ACME/Widgets", page_size=10, page_token=token
    )
    outcome = harness.call("ListPullRequests", request)
    assert [p.pull_request_id for p in outcome.response.pull_requests] == ["pr-1", "pr-2"]


def test_a_token_works_on_every_gateway_of_the_deployment() -> None:
    gateway_a = make_harness(page_token_secret="shared")
    gateway_b = make_harness(page_token_secret="shared")
    gateway_c = make_harness(page_token_secret="another")
    try:
        token = first_token(gateway_a)
        for h in (gateway_b, gateway_c):
            for i in range(3):
                h.view.put(entity(f"pr-{i}"))
        request = query_service_pb2.ListPullRequestsRequest(page_size=1, page_token=token)
        assert gateway_b.call("ListPullRequests", request).code == grpc.StatusCode.OK
        assert bad_token(gateway_c, request) == "page_token was not issued by this service"
    finally:
        for h in (gateway_a, gateway_b, gateway_c):
            h.loop.close()


def test_repositories_are_listed_whatever_their_case(harness: Harness) -> None:
    harness.view.put(entity("pr-1", repository="ACME/Widgets"))  # an old snapshot
    harness.view.put(entity("pr-2", repository="acme/widgets"))
    harness.view.put(entity("pr-3", repository="acme/gadgets"))
    for spelling in ("acme/widgets", "ACME/WIDGETS", "Acme/Widgets"):
        assert ids(list_all(harness, repository=spelling)) == ["pr-1", "pr-2"]


@pytest.mark.parametrize("repository", ["acme", "a/b/c", "acme/wid gets", "acme/\u202ewidgets"])
def test_a_repository_filter_that_is_no_owner_slash_name_is_invalid(
    harness: Harness, repository: str
) -> None:
    outcome = harness.call(
        "ListPullRequests", query_service_pb2.ListPullRequestsRequest(repository=repository)
    )
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    (violation,) = outcome.details["BadRequest"].field_violations
    assert violation.field == "repository"
    assert outcome.details["ErrorInfo"].reason == "REPOSITORY_INVALID"
