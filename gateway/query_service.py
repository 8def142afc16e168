"""PullRequestQueryService: Get, List and Watch over the gateway's read model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import errors
from gateway.ports import PullRequestView
from prgate.v1 import pull_request_pb2, query_service_pb2, query_service_pb2_grpc

MAX_ID_LENGTH = 128
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_REPOSITORY_LENGTH = 256
MAX_TOKEN_LENGTH = 1024


def public_view(pull_request: pull_request_pb2.PullRequest) -> pull_request_pb2.PullRequest:
    """The entity as clients see it: without the processor's bookkeeping of handled commands."""
    view = pull_request_pb2.PullRequest()
    view.CopyFrom(pull_request)
    view.ClearField("recent_commands")
    return view


def check_pull_request_id(pull_request_id: str) -> None:
    if not pull_request_id or len(pull_request_id) > MAX_ID_LENGTH:
        raise errors.invalid_argument(
            "pull_request_id",
            "INVALID_PULL_REQUEST_ID",
            f"pull_request_id must be 1 to {MAX_ID_LENGTH} characters",
        )


def not_found(pull_request_id: str) -> errors.GatewayError:
    return errors.error(
        code_pb2.NOT_FOUND,
        f"pull request {pull_request_id} does not exist",
        errors.error_info("PULL_REQUEST_NOT_FOUND", pull_request_id=pull_request_id),
    )


class WatchResponses:
    """The WatchPullRequestResponse of each watched pull request's newest version, built once.

    The hub hands every watcher of an id the same PullRequest object for a version (the read
    model never changes an entity in place; a new version is a new object), so the first
    watcher to send a version builds its response (the ``public_view`` copy included) and all
    the others send that same message. Only the newest version of each id is kept: a slow
    watcher still sending an older one builds its own response without evicting the newest.
    """

    def __init__(self) -> None:
        self._by_id: dict[
            str, tuple[pull_request_pb2.PullRequest, query_service_pb2.WatchPullRequestResponse]
        ] = {}
        self._watchers: dict[str, int] = {}

    def watch(self, pull_request_id: str) -> None:
        self._watchers[pull_request_id] = self._watchers.get(pull_request_id, 0) + 1

    def unwatch(self, pull_request_id: str) -> None:
        left = self._watchers.get(pull_request_id, 0) - 1
        if left > 0:
            self._watchers[pull_request_id] = left
        else:
            self._watchers.pop(pull_request_id, None)
            self._by_id.pop(pull_request_id, None)

    def response(
        self, entity: pull_request_pb2.PullRequest
    ) -> query_service_pb2.WatchPullRequestResponse:
        key = entity.pull_request_id
        cached = self._by_id.get(key)
        if cached is not None and cached[0] is entity:
            return cached[1]
        response = query_service_pb2.WatchPullRequestResponse(pull_request=public_view(entity))
        if key in self._watchers and (cached is None or entity.version >= cached[0].version):
            self._by_id[key] = (entity, response)
        return response

    def __len__(self) -> int:
        return len(self._by_id)


class QueryService(query_service_pb2_grpc.PullRequestQueryServiceServicer):
    """Reads only: never touches Kafka directly, only the read model."""

    def __init__(self, view: PullRequestView) -> None:
        self._view = view
        self._responses = WatchResponses()

    async def GetPullRequest(self, request: Any, context: Any) -> Message:
        try:
            check_pull_request_id(request.pull_request_id)
            if not self._view.caught_up():
                raise errors.read_model_catching_up()
            found = self._view.get(request.pull_request_id)
            if found is None:
                raise not_found(request.pull_request_id)
        except errors.GatewayError as exc:
            await errors.abort(context, exc)
        return query_service_pb2.GetPullRequestResponse(pull_request=public_view(found))

    async def ListPullRequests(self, request: Any, context: Any) -> Message:
        try:
            page_size = self._page_size(request.page_size)
            self._check_list_filters(request)
            if not self._view.caught_up():
                raise errors.read_model_catching_up()
            try:
                items, token = self._view.list(
                    repository=request.repository,
                    status=int(request.status),
                    page_size=page_size,
                    page_token=request.page_token,
                )
            except ValueError as exc:
                raise errors.invalid_argument(
                    "page_token", "INVALID_PAGE_TOKEN", f"page_token is not valid: {exc}"
                ) from exc
        except errors.GatewayError as exc:
            await errors.abort(context, exc)
        return query_service_pb2.ListPullRequestsResponse(
            pull_requests=[public_view(p) for p in items], next_page_token=token
        )

    @staticmethod
    def _page_size(requested: int) -> int:
        if requested < 0 or requested > MAX_PAGE_SIZE:
            raise errors.invalid_argument(
                "page_size",
                "INVALID_PAGE_SIZE",
                f"page_size must be between 0 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})",
            )
        return requested or DEFAULT_PAGE_SIZE

    @staticmethod
    def _check_list_filters(request: Any) -> None:
        if int(request.status) not in pull_request_pb2.PullRequestStatus.values():
            raise errors.invalid_argument(
                "status", "UNKNOWN_STATUS", f"status {int(request.status)} is not a known status"
            )
        if len(request.repository) > MAX_REPOSITORY_LENGTH:
            raise errors.invalid_argument(
                "repository",
                "REPOSITORY_TOO_LONG",
                f"repository must be at most {MAX_REPOSITORY_LENGTH} characters",
            )
        if len(request.page_token) > MAX_TOKEN_LENGTH:
            raise errors.invalid_argument(
                "page_token", "INVALID_PAGE_TOKEN", "page_token is not valid"
            )

    async def WatchPullRequest(self, request: Any, context: Any) -> AsyncIterator[Message]:
        try:
            check_pull_request_id(request.pull_request_id)
            if not self._view.caught_up():
                raise errors.read_model_catching_up()
            if self._view.get(request.pull_request_id) is None:
                raise not_found(request.pull_request_id)
        except errors.GatewayError as exc:
            await errors.abort(context, exc)
        pull_request_id = request.pull_request_id
        subscription = self._view.subscribe(pull_request_id)
        responses = self._responses
        responses.watch(pull_request_id)
        try:
            async for pull_request in subscription:
                yield responses.response(pull_request)
        finally:
            responses.unwatch(pull_request_id)
            subscription.close()
