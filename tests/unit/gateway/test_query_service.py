"""PullRequestQueryService through grpcio-testing, over a fake read model."""

from __future__ import annotations

import grpc

from gateway.query_service import WatchResponses
from prgate.v1 import outcome_pb2, pull_request_pb2, query_service_pb2
from tests.unit.gateway.conftest import Harness


def entity(
    pull_request_id: str, repository: str = "acme/widgets", **fields: object
) -> pull_request_pb2.PullRequest:
    pr = pull_request_pb2.PullRequest(
        pull_request_id=pull_request_id,
        repository=repository,
        title=f"title of {pull_request_id}",
        status=pull_request_pb2.PULL_REQUEST_STATUS_OPEN,
        version=1,
        **fields,  # type: ignore[arg-type]
    )
    pr.recent_commands.add(command_id="c1", state=outcome_pb2.COMMAND_STATE_SUCCEEDED, version=1)
    return pr


def test_get_returns_the_entity_without_processing_metadata(harness: Harness) -> None:
    harness.view.put(entity("pr-1"))
    outcome = harness.call(
        "GetPullRequest", query_service_pb2.GetPullRequestRequest(pull_request_id="pr-1")
    )
    assert outcome.code == grpc.StatusCode.OK
    assert outcome.response.pull_request.title == "title of pr-1"
    assert len(outcome.response.pull_request.recent_commands) == 0


def test_get_unknown_is_not_found_and_bad_id_is_invalid(harness: Harness) -> None:
    outcome = harness.call(
        "GetPullRequest", query_service_pb2.GetPullRequestRequest(pull_request_id="pr-x")
    )
    assert outcome.code == grpc.StatusCode.NOT_FOUND
    assert outcome.details["ErrorInfo"].reason == "PULL_REQUEST_NOT_FOUND"
    outcome = harness.call(
        "GetPullRequest", query_service_pb2.GetPullRequestRequest(pull_request_id="")
    )
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT
    assert outcome.details["BadRequest"].field_violations[0].field == "pull_request_id"


def test_list_filters_and_pages(harness: Harness) -> None:
    for i in range(5):
        harness.view.put(entity(f"pr-{i}", repository="acme/a" if i % 2 else "acme/b"))
    request = query_service_pb2.ListPullRequestsRequest(repository="acme/b", page_size=2)
    first = harness.call("ListPullRequests", request)
    assert first.code == grpc.StatusCode.OK
    assert [p.pull_request_id for p in first.response.pull_requests] == ["pr-0", "pr-2"]
    assert first.response.next_page_token
    request.page_token = first.response.next_page_token
    second = harness.call("ListPullRequests", request)
    assert [p.pull_request_id for p in second.response.pull_requests] == ["pr-4"]
    assert second.response.next_page_token == ""


def test_list_rejects_bad_arguments(harness: Harness) -> None:
    for request, field in (
        (query_service_pb2.ListPullRequestsRequest(page_size=-1), "page_size"),
        (query_service_pb2.ListPullRequestsRequest(page_size=5000), "page_size"),
        (query_service_pb2.ListPullRequestsRequest(status=42), "status"),
        (query_service_pb2.ListPullRequestsRequest(page_token="not-a-token"), "page_token"),
    ):
        outcome = harness.call("ListPullRequests", request)
        assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, field
        assert outcome.details["BadRequest"].field_violations[0].field == field


def test_watch_sends_current_snapshot_then_new_versions(harness: Harness) -> None:
    harness.view.put(entity("pr-w"))
    rpc = harness.open_stream(
        "WatchPullRequest", query_service_pb2.WatchPullRequestRequest(pull_request_id="pr-w")
    )
    assert rpc.take_response().pull_request.version == 1
    newer = entity("pr-w")
    newer.version = 2
    harness.loop.call(lambda: harness.view.put(newer))
    assert rpc.take_response().pull_request.version == 2
    rpc.cancel()


def test_watch_unknown_is_not_found(harness: Harness) -> None:
    rpc = harness.open_stream(
        "WatchPullRequest", query_service_pb2.WatchPullRequestRequest(pull_request_id="pr-none")
    )
    assert harness.ended(rpc).code == grpc.StatusCode.NOT_FOUND


def test_queries_are_unavailable_while_catching_up(harness: Harness) -> None:
    harness.view.ready = False
    outcome = harness.call(
        "GetPullRequest", query_service_pb2.GetPullRequestRequest(pull_request_id="pr-1")
    )
    assert outcome.code == grpc.StatusCode.UNAVAILABLE


def test_every_watcher_gets_each_version_without_processing_metadata(harness: Harness) -> None:
    harness.view.put(entity("pr-s"))
    request = query_service_pb2.WatchPullRequestRequest(pull_request_id="pr-s")
    rpcs = [harness.open_stream("WatchPullRequest", request) for _ in range(3)]
    first = [rpc.take_response() for rpc in rpcs]
    assert all(r == first[0] for r in first)
    assert len(first[0].pull_request.recent_commands) == 0
    newer = entity("pr-s")
    newer.version = 2
    harness.loop.call(lambda: harness.view.put(newer))
    second = [rpc.take_response() for rpc in rpcs]
    assert second[0].pull_request.version == 2
    assert all(r == second[0] for r in second)
    for rpc in rpcs:
        rpc.cancel()


def test_watch_responses_keep_only_the_newest_version_of_watched_ids() -> None:
    responses = WatchResponses(lambda entity: f"token-{entity.version}")
    one, two = entity("pr-r"), entity("pr-r")
    two.version = 2
    assert responses.response(one) is not responses.response(one)  # nobody watches: no cache
    responses.watch("pr-r")
    responses.watch("pr-r")
    assert responses.response(two) is responses.response(two)
    older = responses.response(one)  # a slow watcher's older version
    assert older.pull_request.version == 1
    assert responses.response(two) is responses.response(two)  # the newest stays cached
    responses.unwatch("pr-r")
    assert len(responses) == 1
    responses.unwatch("pr-r")
    assert len(responses) == 0
