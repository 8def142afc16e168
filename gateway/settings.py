"""The gateway's settings: one typed object from flags and ``PRGATE_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from prgate.domain import max_public_bytes
from prgate.policy_settings import PolicySettings
from prgate.settings import setting
from prgate.state.settings import StateSettings

# A response carries at most max_message_bytes - RESPONSE_MARGIN_BYTES of pull requests: the
# margin holds the page token (at most 1 KiB) and the rest of the message.
RESPONSE_MARGIN_BYTES = 4096


@dataclass(frozen=True)
class GatewaySettings(PolicySettings, StateSettings):
    """Everything the gateway process is configured with, besides KafkaSettings.

    The domain rules and limits (``required_approvals``, ``max_*``) come from
    :class:`prgate.policy_settings.PolicySettings`, the same settings the processor takes.
    """

    listen: str = setting("127.0.0.1:50051", "PRGATE_LISTEN", "gRPC listen address host:port")
    workers: int = setting(
        1,
        "PRGATE_GATEWAY_WORKERS",
        "gateway processes sharing the listen port (SO_REUSEPORT), each a complete gateway"
        " on its own core; a metrics address's port is that of worker 0, worker i adds i",
    )
    default_wait_s: float = setting(
        10.0,
        "PRGATE_DEFAULT_WAIT_S",
        "how long a COMPLETED call waits for its result when the call has no deadline",
    )
    accept_timeout_s: float = setting(
        5.0,
        "PRGATE_ACCEPT_TIMEOUT_S",
        "longest wait for the broker to acknowledge a command before UNAVAILABLE",
    )
    max_waiting: int = setting(
        10_000,
        "PRGATE_MAX_WAITING",
        "bound of calls and watchers waiting for results; beyond it RESOURCE_EXHAUSTED",
    )
    result_cache_size: int = setting(
        100_000, "PRGATE_RESULT_CACHE_SIZE", "results kept for late WatchCommand calls"
    )
    result_cache_ttl_s: float = setting(
        600.0, "PRGATE_RESULT_CACHE_TTL_S", "how long a result is kept for WatchCommand"
    )
    results_lookback_s: float = setting(
        300.0,
        "PRGATE_RESULTS_LOOKBACK_S",
        "at start, read results this far back so WatchCommand answers recent commands",
    )
    unknown_command_wait_s: float = setting(
        30.0,
        "PRGATE_UNKNOWN_COMMAND_WAIT_S",
        "how long WatchCommand waits for a command id it has never seen before NOT_FOUND",
    )
    pending_wait_s: float = setting(
        5.0,
        "PRGATE_PENDING_WAIT_S",
        "read-your-writes: longest wait for this gateway's earlier commands on the same pull"
        " request before checking a new one",
    )
    consistency_wait_s: float = setting(
        10.0,
        "PRGATE_CONSISTENCY_WAIT_S",
        "how long a call without a deadline that carries a consistency token waits for the read"
        " model to reach it before UNAVAILABLE (a call with a deadline waits until just before"
        " it)",
    )
    idempotency_cache_size: int = setting(
        100_000, "PRGATE_IDEMPOTENCY_CACHE_SIZE", "command ids remembered for idempotent retries"
    )
    max_message_bytes: int = setting(
        1024 * 1024,
        "PRGATE_MAX_MESSAGE_BYTES",
        "largest gRPC message accepted or sent; a ListPullRequests page stops early to fit it"
        " (it must hold the largest pull request the limits allow)",
    )
    page_token_secret: str = setting(
        "",
        "PRGATE_PAGE_TOKEN_SECRET",
        "key of the HMACs that sign ListPullRequests page tokens and consistency tokens; give"
        " every gateway of a"
        " deployment the same one (empty: derived from the topic names, so tokens work on"
        " every gateway but can be forged by anyone who knows them)",
        secret=True,
    )
    page_token_accepted_secret: str = setting(
        "",
        "PRGATE_PAGE_TOKEN_ACCEPTED_SECRET",
        "a second secret whose page and consistency tokens are accepted but never issued, to"
        " rotate PRGATE_PAGE_TOKEN_SECRET without refusing tokens in flight: roll out the new"
        " secret here, then swap the two, then empty this",
        secret=True,
    )
    max_concurrent_rpcs: int = setting(
        20_000, "PRGATE_MAX_CONCURRENT_RPCS", "calls served at once; beyond it RESOURCE_EXHAUSTED"
    )
    grace_period_s: float = setting(
        10.0, "PRGATE_GRACE_PERIOD_S", "on shutdown, how long running calls may still finish"
    )
    drain_s: float = setting(
        5.0,
        "PRGATE_DRAIN_S",
        "on SIGTERM, how long health reports NOT_SERVING while calls are still served, before"
        " open streams end UNAVAILABLE (with RetryInfo) and the server stops; at least the load"
        " balancer's health-check interval times its failure threshold",
    )
    # Connections (gateway/transport.py, README "Security"): keepalive, streams, age.
    keepalive_time_s: float = setting(
        30.0,
        "PRGATE_KEEPALIVE_TIME_S",
        "the gateway pings a client whose connection was silent this long, to find dead peers",
    )
    keepalive_timeout_s: float = setting(
        10.0,
        "PRGATE_KEEPALIVE_TIMEOUT_S",
        "a connection whose ping is not answered within this long is closed",
    )
    keepalive_min_ping_interval_s: float = setting(
        1.0,
        "PRGATE_KEEPALIVE_MIN_PING_INTERVAL_S",
        "clients may ping this often, with or without calls; a connection that pings more"
        " often three times in a row is closed (GOAWAY too_many_pings)",
    )
    max_streams_per_connection: int = setting(
        1000,
        "PRGATE_MAX_STREAMS_PER_CONNECTION",
        "concurrent calls one HTTP/2 connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS);"
        " clients queue the calls beyond it",
    )
    max_connection_age_s: float = setting(
        1800.0,
        "PRGATE_MAX_CONNECTION_AGE_S",
        "a connection this old is asked to go away (GOAWAY, +-10% jitter) so clients reconnect"
        " and load balancers rebalance (0: never)",
    )
    max_connection_age_grace_s: float = setting(
        300.0,
        "PRGATE_MAX_CONNECTION_AGE_GRACE_S",
        "after the GOAWAY of max_connection_age_s, how long its calls may still run before the"
        " connection is closed",
    )
    http_listen: str = setting(
        "",
        "PRGATE_HTTP_LISTEN",
        "host:port to serve the same API over HTTP with the Connect protocol (JSON or binary"
        " protobuf; gateway/connect_http.py) in the same process (empty: off)",
    )
    http_timeout_s: float = setting(
        30.0,
        "PRGATE_HTTP_TIMEOUT_S",
        "on the HTTP port, how long the gateway waits for a request's headers and whole body"
        " (else 408 deadline_exceeded) and for a client to take each response message (else the"
        " connection is closed)",
    )
    metrics_listen: str = setting(
        "", "PRGATE_METRICS_LISTEN", "host:port to serve Prometheus /metrics on (empty: off)"
    )
    tracing: str = setting(
        "off",
        "PRGATE_TRACING",
        "OpenTelemetry tracing: off, console (spans on stdout) or otlp (OTEL_EXPORTER_OTLP_*"
        " settings); needs the 'tracing' extra",
    )
    log_level: str = setting("INFO", "PRGATE_LOG_LEVEL", "log level")
    # Security (gateway/security.py, README "Security"): everything off by default.
    tls_cert_file: str = setting(
        "", "PRGATE_TLS_CERT_FILE", "PEM server certificate (chain); with the key, turns on TLS"
    )
    tls_key_file: str = setting("", "PRGATE_TLS_KEY_FILE", "PEM private key of the certificate")
    tls_client_ca_file: str = setting(
        "",
        "PRGATE_TLS_CLIENT_CA_FILE",
        "PEM CA bundle; set, every client must present a certificate it signed (mutual TLS)",
    )
    auth_token_file: str = setting(
        "",
        "PRGATE_AUTH_TOKEN_FILE",
        "JSON file of bearer tokens, principals and roles; set, every call except health and"
        " reflection needs 'authorization: Bearer <token>'",
    )
    auth_reload_interval_s: float = setting(
        1.0,
        "PRGATE_AUTH_RELOAD_INTERVAL_S",
        "how often calls check the token file for changes (0: only on SIGHUP)",
    )

    def __post_init__(self) -> None:
        StateSettings.__post_init__(self)
        policy = self.policy()  # validates the rules and limits
        # Every pull request the limits allow must fit one response, or it could be neither
        # listed nor read: refuse the combination at start instead.
        needed = max_public_bytes(policy) + RESPONSE_MARGIN_BYTES
        if self.max_message_bytes < needed:
            raise ValueError(
                f"max_message_bytes ({self.max_message_bytes}) must be at least {needed}: the"
                " largest pull request the max_* limits allow, plus a margin"
            )
