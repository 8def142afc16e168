"""The gateway's API over HTTP with JSON (or binary protobuf): the Connect protocol.

Callers that cannot speak gRPC (scripts, browsers, webhooks) reach the same two services on
``http_listen`` (``--http-listen`` / ``PRGATE_HTTP_LISTEN``, off by default) with the Connect
protocol (https://connectrpc.com/docs/protocol): ``POST /prgate.v1.<Service>/<Method>`` with
``Content-Type: application/json`` (or ``application/proto``) for unary calls, and
``application/connect+json`` (``+proto``) enveloped messages for the server-streaming watches.
The connectrpc library does the protocol (codecs, envelopes, ``connect-timeout-ms``, error
bodies); hypercorn is the ASGI server, in the gateway's process and event loop.

Nothing is served twice: this module is a transport adapter. Each Connect call runs the very
gRPC method handler the gRPC server runs, behind the same interceptors (bearer-token
authentication and authorization, the open streams that shutdown and token revocation end),
with :class:`gateway.connect_bridge.ConnectServicerContext` standing in for grpc.aio's
servicer context: the ``authorization`` and other request headers are the call's metadata,
``connect-timeout-ms`` is its deadline, and an abort (a status with ``google.rpc`` details in
``grpc-status-details-bin``) becomes a Connect error with the same code and each detail as a
Connect error detail (``type``, base64 ``value`` and, for the ``google.rpc`` error details, the
message as JSON in ``debug``). This module is the listener; the call bridge is
gateway/connect_bridge.py, the error mapping gateway/connect_errors.py.

The per-RPC metrics and spans (gateway/observed_calls.py) are among those interceptors, so a
Connect call is counted and traced as a gRPC call is; the calls the Connect library answers
by itself (an undecodable body, a bad header, another content type) are counted by the router
with the code of its answer. TLS files reload with the gRPC port's (:class:`_Config`).

Limits (gateway/http_guard.py): a request message larger than ``max_message_bytes`` (the gRPC
server's receive limit) is refused ``resource_exhausted`` after its body was read and dropped
(bounded); a body that does not arrive within ``http_timeout_s`` is refused
``deadline_exceeded`` (HTTP 408); a client that takes no response data for ``http_timeout_s``
has its call ended; headers are bounded by hypercorn (16 KiB, else HTTP 431; the keep-alive
timeout to arrive). Stop: :func:`ConnectServer.stop` after the drain window, with
the gRPC server: open watches end first (``OpenStreams.end_all``, the same UNAVAILABLE with a
RetryInfo as over gRPC), then the listener closes and running calls get ``grace_period_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

from gateway.connect_bridge import BRIDGED, GrpcBridge, Interceptor, Registration
from gateway.connect_errors import CODECS, connect_answer_code
from gateway.http_guard import RequestGuard, answer
from gateway.rpc_metrics import GrpcServerMetrics
from gateway.security import ServerCertificates
from gateway.settings import GatewaySettings
from gateway.transport import ListenError, check_can_listen
from prgate.v1 import command_service_connect, query_service_connect

log = logging.getLogger(__name__)


# -- the server ------------------------------------------------------------------------------


@dataclass
class ConnectServer:
    """The running Connect listener: hypercorn serving the two services' ASGI apps."""

    port: int
    _shutdown: asyncio.Event
    _task: asyncio.Task[None]

    async def stop(self, grace_s: float) -> None:
        """Close the listener; running calls get ``grace_s`` (hypercorn's graceful timeout)."""
        self._shutdown.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_s + 5.0)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        log.info("connect_http_stopped port=%d", self.port)


class _Router:
    """One ASGI app for both services, routed by the path's service name; at most
    ``max_calls`` calls at once (``max_concurrent_rpcs``, counted apart from the gRPC
    port's), beyond it ``resource_exhausted`` (HTTP 429) as gRPC answers RESOURCE_EXHAUSTED."""

    def __init__(
        self,
        apps: Sequence[Any],
        max_calls: int,
        *,
        bridge: GrpcBridge | None = None,
        rpc_metrics: GrpcServerMetrics | None = None,
    ) -> None:
        self._apps = {app.path: app for app in apps}
        self._max_calls = max_calls
        self._calls = 0
        self._bridge, self._rpc_metrics = bridge, rpc_metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # nothing to start: the gateway owns the services
            while True:
                event = (await receive())["type"]
                if event == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        service = "/" + scope["path"].lstrip("/").partition("/")[0]
        app = self._apps.get(service)
        if app is None:
            await answer(send, 404, "unimplemented", f"no service at {scope['path']}")
            return
        if self._bridge is not None and self._bridge.grpc_type(scope["path"]) is None:
            await answer(send, 404, "unimplemented", f"no method at {scope['path']}")
            return
        if self._calls >= self._max_calls:
            await answer(send, 429, "resource_exhausted", "the gateway serves its maximum of calls")
            return
        self._calls += 1
        try:
            if self._rpc_metrics is None or self._bridge is None:
                await app(scope, receive, send)
            else:
                await self._counted(app, scope, receive, send)
        finally:
            self._calls -= 1

    async def _counted(self, app: Any, scope: Any, receive: Any, send: Any) -> None:
        """``app`` for a call; when the library answered it by itself (an undecodable body, a
        bad header, another content type: the gRPC handlers never saw it), it is counted in
        the per-RPC metrics here, with the code of its Connect error. Only the services'
        own method paths are counted (label values are not the caller's to choose)."""
        assert self._bridge is not None and self._rpc_metrics is not None
        path: str = scope["path"]
        grpc_type = self._bridge.grpc_type(path)
        marker = [False]
        token = BRIDGED.set(marker)
        status, body = [0], bytearray()
        begun = time.perf_counter()

        async def watched(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body" and len(body) < 4096:
                body.extend(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive, watched)
        finally:
            BRIDGED.reset(token)
            if not marker[0] and grpc_type is not None:
                service, _, method = path.lstrip("/").rpartition("/")
                self._rpc_metrics.refused(
                    (grpc_type, service, method),
                    connect_answer_code(status[0], bytes(body)),
                    time.perf_counter() - begun,
                )


class _Config(Config):
    """hypercorn's settings whose TLS context follows the gateway's certificate files.

    hypercorn builds one ``ssl.SSLContext`` at start; its SNI callback (OpenSSL calls it in
    every handshake, with or without a server name) asks :meth:`ServerCertificates.refresh`
    whether the files changed and are valid (the check the gRPC port makes) and, after a
    reload by either port, hands the handshake a context made from the new files.
    """

    def __init__(self, certificates: ServerCertificates | None) -> None:
        super().__init__()
        self._certificates = certificates
        self._generation = -1
        self._current: ssl.SSLContext | None = None

    def create_ssl_context(self) -> ssl.SSLContext | None:
        context: ssl.SSLContext | None = super().create_ssl_context()
        if context is None or self._certificates is None:
            return context
        self._current = context
        self._generation = self._certificates.reloads
        context.sni_callback = self._on_handshake
        return context

    def _on_handshake(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        certificates = self._certificates
        assert certificates is not None
        certificates.refresh()  # reloads when the files changed and are valid; logs refusals
        if certificates.reloads != self._generation:
            generation = certificates.reloads
            try:
                fresh: ssl.SSLContext | None = super().create_ssl_context()
            except (ssl.SSLError, OSError) as exc:  # replaced again since fetch() read them
                log.warning("tls_reload_refused", extra={"reason": str(exc), "port": "http"})
                fresh = None
            if fresh is not None:
                fresh.sni_callback = self._on_handshake
                self._current, self._generation = fresh, generation
        if self._current is not None and connection.context is not self._current:
            connection.context = self._current


def check_shared_listen(address: str) -> None:
    """For ``--workers N``: the address every worker's Connect listener shares (SO_REUSEPORT,
    as their gRPC port), checked once by the supervisor; port 0 would give each worker another
    port, so it is refused. Raises :class:`gateway.transport.ListenError`."""
    if not address:
        return
    check_can_listen(address, "--http-listen")
    if address.rpartition(":")[2] == "0":
        raise ListenError("--http-listen with --workers needs a fixed port (the workers share it)")


def _bind_socket(address: str, reuse_port: bool) -> socket.socket:
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, int(port)))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def start(
    settings: GatewaySettings,
    servicers: Sequence[tuple[Registration, Any]],
    interceptors: Sequence[Interceptor],
    *,
    reuse_port: bool = False,
    certificates: ServerCertificates | None = None,
) -> ConnectServer | None:
    """Serve ``servicers`` over Connect on ``settings.http_listen``; None when it is empty.

    ``servicers``: ``(add_<Service>Servicer_to_server, servicer)`` pairs, the command and the
    query service; ``interceptors``: the gRPC server's, outermost first; ``reuse_port``: one
    worker of ``--workers N``, sharing the port with its siblings (SO_REUSEPORT). Raises
    :class:`gateway.transport.ListenError` when the address cannot be bound. With TLS on
    (``certificates``, the gRPC port's :class:`gateway.security.ServerCertificates`), the
    listener serves HTTPS with the same files, reloaded as the gRPC port reloads them: each
    new connection's handshake uses the newest valid files (open connections keep theirs).
    """
    if not settings.http_listen:
        return None
    if not reuse_port:  # the supervisor checked the shared address
        check_can_listen(settings.http_listen, "--http-listen")
    bridge = GrpcBridge(servicers, interceptors)
    limit = settings.max_message_bytes
    router = _Router(
        [
            command_service_connect.PullRequestCommandServiceASGIApplication(
                bridge,  # GrpcBridge has the methods (by __getattr__)
                read_max_bytes=limit,
                codecs=CODECS,
            ),
            query_service_connect.PullRequestQueryServiceASGIApplication(
                bridge,
                read_max_bytes=limit,
                codecs=CODECS,
            ),
        ],
        settings.max_concurrent_rpcs,
        bridge=bridge,
        rpc_metrics=next((i for i in interceptors if isinstance(i, GrpcServerMetrics)), None),
    )
    try:
        sock = _bind_socket(settings.http_listen, reuse_port)
    except OSError as exc:
        raise ListenError(
            f"cannot listen on {settings.http_listen} (--http-listen): {exc}"
        ) from None
    port = int(sock.getsockname()[1])
    config = _Config(certificates)
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) the socket
    app: Any = RequestGuard(router, message_limit=limit, timeout_s=settings.http_timeout_s)
    config.graceful_timeout = settings.grace_period_s
    config.accesslog = None
    config.errorlog = log  # hypercorn's own lines (listening, errors), under this module
    config.keep_alive_timeout = settings.http_timeout_s  # also the time to send the headers
    if certificates is not None:
        config.certfile = certificates.cert
        config.keyfile = certificates.key
        if certificates.client_ca:
            config.ca_certs = certificates.client_ca
            config.verify_mode = ssl.CERT_REQUIRED
    shutdown = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=shutdown.wait))
    log.info(
        "connect_http_started listen=%s port=%d max_message_bytes=%d",
        settings.http_listen,
        port,
        limit,
    )
    return ConnectServer(port, shutdown, task)


async def stop(server: ConnectServer | None, grace_s: float) -> None:
    """:meth:`ConnectServer.stop` when the listener runs; nothing otherwise."""
    if server is not None:
        await server.stop(grace_s)
