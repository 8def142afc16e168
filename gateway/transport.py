"""The gateway's connection policy: the gRPC core options of its server, from its settings.

Keepalive. gRPC servers by default allow a client's keepalive ping at most every 5 minutes
and close the connection (GOAWAY ``too_many_pings``) on the third ping that comes sooner
(``grpc.http2.max_ping_strikes`` 2). Go and Java clients commonly ping every 10 s (their
minimum), so their idle ``WatchPullRequest`` died after 30 s. The gateway accepts a client's
pings every ``keepalive_min_ping_interval_s`` (1 s), also on a connection without calls
(``grpc.keepalive_permit_without_calls``); only faster pings count as strikes, and the third
strike in a row still closes the connection: a ping flood is abuse. In the other direction the
gateway pings a connection that was silent for ``keepalive_time_s`` and closes it when the
answer does not come within ``keepalive_timeout_s``, so a peer that vanished (a pulled cable,
a NAT that forgot the flow) stops holding streams and watchers.

Resources. One HTTP/2 connection may have ``max_streams_per_connection`` calls open (HTTP/2
``SETTINGS_MAX_CONCURRENT_STREAMS``; clients queue the rest), so no single connection takes
all of ``max_concurrent_rpcs``. A connection older than ``max_connection_age_s`` (grpc adds
+-10% jitter) gets a GOAWAY: its client opens a new connection, which a load balancer may
place elsewhere, and its calls have ``max_connection_age_grace_s`` to finish before the old
connection is closed (a stream still open then ends UNAVAILABLE, and clients reopen it).
Calls without a valid token are refused before their request is read (gateway/auth.py).
"""

from __future__ import annotations

import socket

from gateway.settings import GatewaySettings

# Faster client pings tolerated in a row before GOAWAY (grpc's default, named here).
MAX_PING_STRIKES = 2


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def server_options(settings: GatewaySettings, *, reuse_port: bool = False) -> list[tuple[str, int]]:
    """The ``options`` of ``grpc.aio.server`` for ``settings``.

    ``reuse_port``: the workers of one ``--workers N`` gateway share the port (SO_REUSEPORT:
    the kernel spreads new connections over them); otherwise two gateways must not silently
    share one port.
    """
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        # Our pings to the client, also while no data flows (an idle watch).
        ("grpc.keepalive_time_ms", _ms(settings.keepalive_time_s)),
        ("grpc.keepalive_timeout_ms", _ms(settings.keepalive_timeout_s)),
        # gRPC core (1.85) closes the connection on the ping timeout, not the keepalive one:
        # without this an unanswered keepalive ping was waited for over a minute.
        ("grpc.http2.ping_timeout_ms", _ms(settings.keepalive_timeout_s)),
        ("grpc.http2.max_pings_without_data", 0),
        # The client's pings we accept.
        ("grpc.keepalive_permit_without_calls", 1),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            _ms(settings.keepalive_min_ping_interval_s),
        ),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
        # gRPC core queues calls that arrived but that grpc.aio's accept loop (one call at a
        # time, on the busy event loop) has not taken yet, and resets them (the client sees
        # CANCELLED) beyond 1,000 queued (at random) and 3,000 (all): 10k watchers connecting
        # at once lost about a third of their streams. max_concurrent_rpcs is the bound.
        ("grpc.server.max_pending_requests", settings.max_concurrent_rpcs),
        ("grpc.server.max_pending_requests_hard_limit", settings.max_concurrent_rpcs),
    ]
    if settings.max_connection_age_s > 0:
        options += [
            ("grpc.max_connection_age_ms", _ms(settings.max_connection_age_s)),
            ("grpc.max_connection_age_grace_ms", _ms(settings.max_connection_age_grace_s)),
        ]
    return options


class ListenError(Exception):
    """The gateway cannot listen on its address (taken, not local, not host:port)."""


def check_can_listen(address: str, what: str = "--listen") -> None:
    """Bind ``host:port`` once and let go, so a taken port is one clear error, not gRPC core's.

    Port 0 (any free port) always works. grpc binds again right after; this only moves the
    usual failures (address in use, permission, unknown host) to a plain message.
    """
    host, sep, port_text = address.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not 0 <= port <= 65535:
        raise ListenError(f"{what} {address!r} is not host:port")
    if port == 0:
        return
    bind_host = host.strip("[]") or None  # ":50051" listens on every address
    try:
        found = socket.getaddrinfo(
            bind_host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {address} ({what}): {exc.strerror}") from None
    family, kind, proto, _name, sockaddr = found[0]
    with socket.socket(family, kind, proto) as probe:
        # Like grpc: a port whose old connections linger in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            raise ListenError(
                f"cannot listen on {address} ({what}): {exc.strerror or exc}"
            ) from None
