"""The gateway's settings: one typed object from flags and ``PRGATE_*`` environment variables."""

from __future__ import annotations

from dataclasses import dataclass

from prgate.settings import setting


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the gateway process is configured with, besides KafkaSettings."""

    listen: str = setting("127.0.0.1:50051", "PRGATE_LISTEN", "gRPC listen address host:port")
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
    idempotency_cache_size: int = setting(
        100_000, "PRGATE_IDEMPOTENCY_CACHE_SIZE", "command ids remembered for idempotent retries"
    )
    max_message_bytes: int = setting(
        1024 * 1024, "PRGATE_MAX_MESSAGE_BYTES", "largest gRPC message accepted or sent"
    )
    max_concurrent_rpcs: int = setting(
        20_000, "PRGATE_MAX_CONCURRENT_RPCS", "calls served at once; beyond it RESOURCE_EXHAUSTED"
    )
    grace_period_s: float = setting(
        10.0, "PRGATE_GRACE_PERIOD_S", "on shutdown, how long running calls may still finish"
    )
    required_approvals: int = setting(
        1, "PRGATE_REQUIRED_APPROVALS", "approvals from non-authors a merge needs"
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
