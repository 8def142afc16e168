"""PullRequestQueryService: Get, List and Watch over the gateway's read model.

Every response fits the gRPC message limit (``PRGATE_MAX_MESSAGE_BYTES``): a ListPullRequests
page ends early when the next pull request would not fit, with a ``next_page_token`` to go on.
Page tokens are signed and bound to their listing (:mod:`gateway.page_tokens`). Repositories
are compared case-insensitively (:func:`prgate.domain.canonical_repository`).

Read-your-writes across gateways: a request's ``consistency_token``
(:mod:`gateway.consistency_tokens`) makes the call wait, within its deadline, until the read
model has reached it; Get and Watch answers carry the token of the version they send.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import errors
from gateway.consistency_tokens import ConsistencyGate, ConsistencyTokens, Position
from gateway.page_tokens import MAX_TOKEN_LENGTH, BadPageToken, ListQuery, PageTokens
from gateway.ports import PullRequestView
from gateway.refusals import Refusal
from gateway.settings import RESPONSE_MARGIN_BYTES, GatewaySettings
from prgate.domain import canonical_repository
from prgate.domain.fields import REPOSITORY_PATTERN
from prgate.domain.limits import field_size
from prgate.v1 import pull_request_pb2, query_service_pb2, query_service_pb2_grpc

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 128
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
MAX_REPOSITORY_LENGTH = 256


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

    def __init__(self, token_of: Callable[[pull_request_pb2.PullRequest], str]) -> None:
        """``token_of`` gives the consistency token of a version sent."""
        self._token_of = token_of
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
        response = query_service_pb2.WatchPullRequestResponse(
            pull_request=public_view(entity), consistency_token=self._token_of(entity)
        )
        if key in self._watchers and (cached is None or entity.version >= cached[0].version):
            self._by_id[key] = (entity, response)
        return response

    def __len__(self) -> int:
        return len(self._by_id)


def too_large(pull_request_id: str, size: int, limit: int) -> errors.GatewayError:
    """FAILED_PRECONDITION for a pull request too large for one response. Only a snapshot
    written before the limits (or under larger ones than this gateway's) can be."""
    return errors.error(
        code_pb2.FAILED_PRECONDITION,
        f"pull request {pull_request_id} is {size} bytes, more than one response may carry"
        f" ({limit}, PRGATE_MAX_MESSAGE_BYTES)",
        errors.error_info("RESPONSE_TOO_LARGE", pull_request_id=pull_request_id),
    )


@dataclass(frozen=True)
class Page:
    """One ListPullRequests page: the pull requests (public views) and the next token."""

    pull_requests: list[pull_request_pb2.PullRequest]
    next_page_token: str
    skipped: int = 0  # pull requests too large for any response, left out


class QueryService(query_service_pb2_grpc.PullRequestQueryServiceServicer):
    """Reads only: never touches Kafka directly, only the read model.

    ``settings`` gives the message limit and the page token secret; ``deployment`` (the
    pull-requests topic name) keys the page tokens when no secret is set.
    """

    def __init__(
        self,
        view: PullRequestView,
        settings: GatewaySettings | None = None,
        *,
        deployment: str = "",
    ) -> None:
        settings = settings if settings is not None else GatewaySettings()
        self._view = view
        tokens = ConsistencyTokens.for_deployment(
            settings.page_token_secret, deployment, settings.page_token_accepted_secret
        )
        self._consistency = ConsistencyGate(
            tokens, view, default_wait_s=settings.consistency_wait_s
        )
        self._responses = WatchResponses(
            lambda entity: tokens.issue(Position(entity.pull_request_id, entity.version))
        )
        # Bytes of pull requests one response may carry.
        self._budget = settings.max_message_bytes - RESPONSE_MARGIN_BYTES
        self._tokens = PageTokens.for_deployment(
            settings.page_token_secret, deployment, settings.page_token_accepted_secret
        )

    async def _reach(self, request: Any, context: Any, pull_request_id: str | None) -> None:
        """Read the request's consistency token (bound to ``pull_request_id`` unless None)
        and wait until the read model has reached it; Refusal otherwise (see
        :class:`gateway.consistency_tokens.ConsistencyGate`)."""
        position = self._consistency.read(
            request.consistency_token, "consistency_token", pull_request_id
        )
        if position is not None:
            budget = self._consistency.budget(context.time_remaining())
            await self._consistency.reach(position, budget)

    async def GetPullRequest(self, request: Any, context: Any) -> Message:
        try:
            check_pull_request_id(request.pull_request_id)
            if not self._view.caught_up():
                raise errors.read_model_catching_up()
            await self._reach(request, context, request.pull_request_id)
            found = self._view.get(request.pull_request_id)
            if found is None:
                raise not_found(request.pull_request_id)
            public = public_view(found)
            self._check_fits(public)
        except Refusal as exc:
            await errors.abort(context, exc)
        token = self._consistency.issue(found.pull_request_id, found.version)
        return query_service_pb2.GetPullRequestResponse(
            pull_request=public, consistency_token=token
        )

    def _check_fits(self, public: pull_request_pb2.PullRequest) -> None:
        size = public.ByteSize()
        if field_size(size) > self._budget:
            raise too_large(public.pull_request_id, size, self._budget)

    async def ListPullRequests(self, request: Any, context: Any) -> Message:
        try:
            page_size = self._page_size(request.page_size)
            query = self._list_query(request)
            after = self._after(query, request.page_token)
            if not self._view.caught_up():
                raise errors.read_model_catching_up()
            await self._reach(request, context, None)
            page = self._page(query, after, page_size)
        except Refusal as exc:
            await errors.abort(context, exc)
        return query_service_pb2.ListPullRequestsResponse(
            pull_requests=page.pull_requests, next_page_token=page.next_page_token
        )

    def _page(self, query: ListQuery, after: str, page_size: int) -> Page:
        """Up to ``page_size`` pull requests after ``after`` that fit the response together.

        One more than the page is read, to know whether a next page exists. A pull request
        that would not fit any response on its own is left out with a warning (only data from
        before the limits can be that large); the token then continues after it.
        """
        limit = page_size + 1
        found = self._view.list(
            repository=query.repository, status=query.status, after=after, limit=limit
        )
        page: list[pull_request_pb2.PullRequest] = []
        used = skipped = 0
        last = ""  # the last id examined: the next page starts after it
        more = len(found) == limit
        for entity in found:
            if len(page) == page_size:
                more = True
                break
            public = public_view(entity)
            cost = field_size(public.ByteSize())
            if cost > self._budget:
                skipped += 1
                log.warning(
                    "list_skipped_too_large",
                    extra={
                        "pull_request_id": entity.pull_request_id,
                        "bytes": cost,
                        "limit": self._budget,
                    },
                )
                last = entity.pull_request_id
                continue
            if used + cost > self._budget:
                more = True  # the byte bound ends this page; the rest follows
                break
            page.append(public)
            used += cost
            last = entity.pull_request_id
        token = self._tokens.issue(query, last) if more and last else ""
        return Page(page, token, skipped)

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
    def _list_query(request: Any) -> ListQuery:
        """The filters of a listing, checked; the repository in its canonical form."""
        if int(request.status) not in pull_request_pb2.PullRequestStatus.values():
            raise errors.invalid_argument(
                "status", "UNKNOWN_STATUS", f"status {int(request.status)} is not a known status"
            )
        repository = request.repository
        if len(repository) > MAX_REPOSITORY_LENGTH:
            raise errors.invalid_argument(
                "repository",
                "REPOSITORY_TOO_LONG",
                f"repository must be at most {MAX_REPOSITORY_LENGTH} characters",
            )
        if repository and not REPOSITORY_PATTERN.fullmatch(repository):
            raise errors.invalid_argument(
                "repository", "REPOSITORY_INVALID", "repository must have the form owner/name"
            )
        return ListQuery(canonical_repository(repository), int(request.status))

    def _after(self, query: ListQuery, token: str) -> str:
        """The id a page token continues after ("" without a token)."""
        if not token:
            return ""
        if len(token) > MAX_TOKEN_LENGTH:
            raise errors.invalid_argument(
                "page_token", "INVALID_PAGE_TOKEN", "page_token was not issued by this service"
            )
        try:
            return self._tokens.read(query, token)
        except BadPageToken as exc:
            raise errors.invalid_argument("page_token", "INVALID_PAGE_TOKEN", str(exc)) from None

    async def WatchPullRequest(self, request: Any, context: Any) -> AsyncIterator[Message]:
        try:
            check_pull_request_id(request.pull_request_id)
            if not self._view.caught_up():
                raise errors.read_model_catching_up()
            await self._reach(request, context, request.pull_request_id)
            if self._view.get(request.pull_request_id) is None:
                raise not_found(request.pull_request_id)
        except Refusal as exc:
            await errors.abort(context, exc)
        pull_request_id = request.pull_request_id
        subscription = self._view.subscribe(pull_request_id)
        responses = self._responses
        responses.watch(pull_request_id)
        try:
            async for pull_request in subscription:
                response = responses.response(pull_request)
                try:
                    self._check_fits(response.pull_request)
                except errors.GatewayError as exc:
                    await errors.abort(context, exc)
                yield response
        finally:
            responses.unwatch(pull_request_id)
            subscription.close()
