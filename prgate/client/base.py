"""What the blocking and the asyncio client share: their construction and every method.

Each public method only describes its call, as a :class:`~prgate.client.requests.Unary` or a
:class:`~prgate.client.requests.Watch`, and hands it to a driver that the client implements
with its own I/O (blocking, or awaited): ``_unary`` (retries, :class:`~prgate.client.retry.
Attempts`), ``_stream`` (reopening, :class:`~prgate.client.streams.Resume`), ``_first`` (the
first item a watch yields that a picker accepts) and ``_pages`` (page after page). What
to retry, how long to wait and which items are new is decided in those shared objects; a
driver only waits, calls and iterates.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import grpc

from prgate.client import requests, streams
from prgate.client.commands import CommandMethods
from prgate.client.connection import DEFAULT_TARGET, DEFAULT_TIMEOUT, ChannelOptions, Connection
from prgate.client.errors import PrgateError, error_from_rpc
from prgate.client.requests import PULL_REQUEST, Status, Unary, Watch
from prgate.client.retry import Attempts, RetryEvent, RetryPolicy
from prgate.client.session import Session
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc as svc_grpc
from prgate.v1 import query_service_pb2, query_service_pb2_grpc

# What the methods return: the blocking client's values, or the asyncio client's awaitables
# and async iterators of them.
ReceiptT = TypeVar("ReceiptT")  # a CommandReceipt
PullRequestT = TypeVar("PullRequestT")  # a PullRequest
PageT = TypeVar("PageT")  # a ListPullRequestsResponse
ReceiptsT = TypeVar("ReceiptsT")  # an iterator of CommandReceipt
PullRequestsT = TypeVar("PullRequestsT")  # an iterator of PullRequest
ChannelT = TypeVar("ChannelT")  # grpc.Channel or grpc.aio.Channel

# Both services' stubs and descriptors: every RPC by its name (unique across the two).
SERVICES = (
    (svc_grpc.PullRequestCommandServiceStub, svc.DESCRIPTOR, "PullRequestCommandService"),
    (
        query_service_pb2_grpc.PullRequestQueryServiceStub,
        query_service_pb2.DESCRIPTOR,
        "PullRequestQueryService",
    ),
)


def rpcs_of(channel: Any) -> dict[str, Any]:
    """Each RPC of both services on ``channel`` (its multi-callable), by the RPC's name."""
    found: dict[str, Any] = {}
    for stub_type, file, service in SERVICES:
        stub = stub_type(channel)
        for method in file.services_by_name[service].methods:
            found[method.name] = getattr(stub, method.name)
    return found


class ClientBase(
    CommandMethods[ReceiptT],
    Generic[ReceiptT, PullRequestT, PageT, ReceiptsT, PullRequestsT, ChannelT],
):
    """What :class:`~prgate.client.Client` and :class:`~prgate.client.AsyncClient` share; the
    arguments are documented on :class:`~prgate.client.Client`. ``ChannelT`` is the channel
    type (``grpc.Channel`` or ``grpc.aio.Channel``); the other type parameters are what the
    methods return (see the TypeVars above).
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        options: ChannelOptions = (),
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        on_retry: Callable[[RetryEvent], None] | None = None,
        channel: ChannelT | None = None,
        session: Session | None = None,
    ) -> None:
        self.connection = Connection(target, credentials, token, tuple(options))
        self._owns_channel = channel is None
        self._channel = self._open_channel(self.connection) if channel is None else channel
        self._metadata = self.connection.metadata()
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._on_retry = on_retry
        self._rpcs = rpcs_of(self._channel)
        # Read-your-writes across gateways: the newest consistency token per pull request.
        self.session = session if session is not None else Session()

    @abc.abstractmethod
    def _open_channel(self, connection: Connection) -> ChannelT:
        """A new channel to ``connection.target`` (the client closes it on ``shutdown``)."""

    # -- drivers: each client's I/O ------------------------------------------------------------

    @abc.abstractmethod
    def _stream(self, watch: Watch) -> Any:
        """An iterator (AsyncClient: async iterator) of the watch's fresh items, unpacked."""

    @abc.abstractmethod
    def _first(self, watch: Watch, pick: Callable[[Any], Any]) -> Any:
        """The first ``pick(item)`` that is not None over :meth:`_stream` (AsyncClient: an
        awaitable of it); raises :func:`streams.watch_ended` if the stream ends first."""

    @abc.abstractmethod
    def _pages(self, page: Callable[[str], Any]) -> Any:
        """An iterator (AsyncClient: async iterator) of the pull requests of ``page(token)``,
        from token "" on, each next token from the page before, until a page has none."""

    # -- what the drivers share -----------------------------------------------------------------

    def _attempts(self, method: str, idempotency_key: str = "") -> Attempts:
        return Attempts(method, self._retry, self._on_retry, idempotency_key)

    def _attempt(self, call: Unary) -> Any:
        """One attempt of ``call`` with the session's consistency token: the response
        (AsyncClient: an awaitable of it), which the driver hands to :meth:`_answered`."""
        timeout = self._timeout if call.timeout is None else call.timeout
        self.session.stamp(call.request)
        return self._rpcs[call.rpc](call.request, timeout=timeout, metadata=self._metadata)

    def _token_refused(self, request: Any, exc: grpc.RpcError) -> bool:
        """True when ``exc`` refused the session's consistency token on ``request`` (now taken
        off it, so the driver makes the call again at once, without it)."""
        return self.session.refused(request, error_from_rpc(exc))

    def _next_delay(
        self, failed: Callable[[grpc.RpcError], float], request: Any, exc: grpc.RpcError
    ) -> float:
        """``failed(exc)`` (the delay before the next attempt); when it raises (no attempt
        follows) a consistency token the gateway's read model never reached
        (READ_MODEL_BEHIND) is forgotten, so later calls do not wait for it again."""
        try:
            return failed(exc)
        except PrgateError as error:
            self.session.unreached(request, error)
            raise

    def _answered(self, call: Unary, response: Any) -> Any:
        """What ``call`` returns of ``response``, after the session took its token."""
        self.session.take(response)
        return call.unpack(response)

    def _resume(self, watch: Watch) -> streams.Resume:
        return streams.Resume(watch, self._attempts(watch.rpc), on_item=self.session.take)

    def _open(self, resume: streams.Resume) -> Any:
        """The watch's stream, opened again with the time that is left."""
        watch = resume.watch
        self.session.stamp(watch.request)
        return self._rpcs[watch.rpc](
            watch.request, timeout=resume.time_left(), metadata=self._metadata
        )

    # -- queries ---------------------------------------------------------------------------------

    def watch_command(self, command_id: str, *, timeout: float | None = None) -> ReceiptsT:
        """The command's states: ACCEPTED, then one terminal state (with the result). Each
        state once, also across reconnects; ``timeout``: seconds for the whole watch."""
        return cast(ReceiptsT, self._stream(streams.command_states(command_id, timeout)))

    def wait_command(
        self, command_id: str, *, timeout: float | None = None, raise_on_rejection: bool = True
    ) -> ReceiptT:
        """Follow a command to its terminal receipt.

        The gateway ends a watch that waited its own bound with DEADLINE_EXCEEDED; within
        ``timeout`` seconds (None: no limit) this watches again. A REJECTED or FAILED command
        raises the exception a waiting command call would have raised, unless
        ``raise_on_rejection`` is False.
        """
        watch = streams.command_states(command_id, timeout, rewatch=True)
        pick = functools.partial(streams.finished, raise_on_rejection=raise_on_rejection)
        return cast(ReceiptT, self._first(watch, pick))

    def get(self, pull_request_id: str, *, timeout: float | None = None) -> PullRequestT:
        """The pull request's current snapshot; NotFound if there is none."""
        request = query_service_pb2.GetPullRequestRequest(pull_request_id=pull_request_id)
        call = Unary("GetPullRequest", request, PULL_REQUEST, timeout)
        return cast(PullRequestT, self._unary(call))

    def watch_pull_request(
        self, pull_request_id: str, *, timeout: float | None = None
    ) -> PullRequestsT:
        """The current snapshot, then every new version (each version once, also across
        reconnects). Runs until ``timeout`` seconds (None: forever) or the caller stops."""
        return cast(PullRequestsT, self._stream(streams.versions(pull_request_id, timeout)))

    def list_page(
        self,
        repository: str = "",
        status: Status | str | None = None,
        page_size: int = 100,
        page_token: str = "",
        *,
        timeout: float | None = None,
    ) -> PageT:
        """One page; its ``next_page_token`` is empty on the last page."""
        request = requests.list_request(repository, status, page_size, page_token)
        return cast(PageT, self._unary(Unary("ListPullRequests", request, _response, timeout)))

    # Last: the name ``list`` hides the builtin for the rest of the class body.
    def list(
        self,
        repository: str = "",
        status: Status | str | None = None,
        page_size: int = 100,
        *,
        timeout: float | None = None,
    ) -> PullRequestsT:
        """Every matching pull request, fetching page after page as the caller iterates."""

        def page(token: str) -> PageT:
            return self.list_page(repository, status, page_size, token, timeout=timeout)

        return cast(PullRequestsT, self._pages(page))


def _response(response: Any) -> Any:
    return response
