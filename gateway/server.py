"""The gateway process: gRPC server, health, reflection, Kafka clients, start and stop.

Start: settings, security, tracing and both listen addresses are checked before anything else
happens; then the port opens at once, whether Kafka answers or not. Health is NOT_SERVING
(commands and queries get UNAVAILABLE) until the read model and the reply router have read
their topics up to the end offsets seen when they got through to Kafka; the Kafka clients keep
trying meanwhile. Once SERVING, ``prgate.v1.PullRequestCommandService`` follows the command
producer: NOT_SERVING while the broker is unreachable for it.

Stop (SIGTERM): health turns NOT_SERVING first and the gateway keeps serving for ``drain_s``,
so load balancers move new calls elsewhere (SIGINT, or a second signal, skips that wait); then
every open stream ends
UNAVAILABLE with a RetryInfo (clients reopen it on another gateway), the server stops taking
calls, running unary calls get ``grace_period_s`` to finish, and the Kafka clients close.

Exit codes (:data:`EXIT_CODES`): every failure to start is one log line with its reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import replace

import grpc
from confluent_kafka import KafkaException
from grpc_health.v1 import _async as health_aio  # public as health.aio; mypy can't see that
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway import auth, connect_bridge, connect_http
from gateway.command_service import CommandService
from gateway.exits import EXIT_CONFIG, EXIT_FAILED, EXIT_LISTEN, EXIT_OK, StartupError, failed
from gateway.lifecycle import COMMAND_SERVICE, QUERY_SERVICE, SERVED, Gateway
from gateway.malformed import MalformedRequestInterceptor
from gateway.observed_calls import Interceptor as ObserverInterceptor
from gateway.producer import CommandProducer
from gateway.query_service import QueryService
from gateway.read_model import ReadModel, ReadModelState
from gateway.reflection import HEALTH, add_reflection
from gateway.refusal_log import KafkaRefusalLog
from gateway.reply_router import ReplyRouter
from gateway.rpc_metrics import GrpcServerMetrics
from gateway.rpc_spans import RpcSpans
from gateway.security import Security, build_security
from gateway.server_metrics import gateway_metrics
from gateway.settings import GatewaySettings
from gateway.streams import OpenStreams
from gateway.supervision import supervise
from gateway.transport import ListenError, check_can_listen, server_options
from prgate.kafka.settings import KafkaSettings
from prgate.observability import logs
from prgate.observability import metrics as prgate_metrics
from prgate.observability import tracing as prgate_tracing
from prgate.observability.metrics import GatewayMetrics
from prgate.settings import add_arguments, load, redacted
from prgate.state import StoreResources
from prgate.v1 import command_service_pb2_grpc, query_service_pb2_grpc
from prgate.workers import nth_address

log = logging.getLogger(__name__)


def new_server(
    settings: GatewaySettings,
    security: Security,
    streams: OpenStreams,
    observers: Sequence[ObserverInterceptor] = (),
    *,
    reuse_port: bool = False,
) -> grpc.aio.Server:
    """The gRPC server with the gateway's connection policy and interceptors, no services.

    ``observers``: the per-RPC metrics and spans (:func:`observers`), outermost."""
    return grpc.aio.server(
        options=server_options(settings, reuse_port=reuse_port),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        # Outermost first: every call is counted and traced (refused ones too); an
        # undecodable body is refused before anything reads it; the open streams are
        # innermost, inside authentication (their tag is the caller's token).
        interceptors=[*observers, MalformedRequestInterceptor(), *security.interceptors, streams],
    )


def observers(
    metrics: GatewayMetrics, tracing: prgate_tracing.Tracing | None
) -> list[ObserverInterceptor]:
    """The interceptors that watch every call of both ports: per-RPC metrics, and a span per
    call when tracing is on."""
    found: list[ObserverInterceptor] = [GrpcServerMetrics(metrics.registry)]
    if tracing is not None:
        found.append(RpcSpans(tracing))
    return found


def _checked_setup(settings: GatewaySettings, streams: OpenStreams) -> Security:
    """Everything that can refuse the configuration, before any socket or Kafka client."""
    try:
        return build_security(settings, streams)
    except SystemExit as exc:  # SecurityConfigError: a bad certificate, key or token file
        raise StartupError(str(exc.code), EXIT_CONFIG) from None


def _listen(
    server: grpc.aio.Server, settings: GatewaySettings, security: Security, reuse_port: bool
) -> int:
    try:
        if not reuse_port:  # a worker's siblings hold the port: the supervisor checked it
            check_can_listen(settings.listen)
        if security.credentials is not None:
            return server.add_secure_port(settings.listen, security.credentials)
        return server.add_insecure_port(settings.listen)
    except (ListenError, RuntimeError) as exc:
        raise StartupError(str(exc), EXIT_LISTEN) from None


async def start_gateway(
    settings: GatewaySettings, kafka: KafkaSettings, *, reuse_port: bool = False
) -> Gateway:
    """Open the port and start the Kafka clients; health is NOT_SERVING until caught up.

    ``reuse_port``: this is one worker of several sharing the port (``--workers``).

    Raises :class:`gateway.exits.StartupError` (with its exit code) when the configuration or
    an address cannot work. Does not wait for Kafka.
    """
    # Tagged with the caller's token, so a revoked token can end its streams.
    streams = OpenStreams(tag_of=auth.current_token_digest)
    security = _checked_setup(settings, streams)
    try:
        tracing = prgate_tracing.setup(settings.tracing, "prgate-gateway")
    except prgate_tracing.TracingError as exc:
        raise StartupError(str(exc), EXIT_CONFIG) from None
    metrics = GatewayMetrics()
    watching = observers(metrics, tracing)
    server = new_server(settings, security, streams, watching, reuse_port=reuse_port)
    producer = CommandProducer(kafka, delivery_timeout_ms=int(settings.accept_timeout_s * 1000))
    router = ReplyRouter(
        kafka,
        max_waiting=settings.max_waiting,
        cache_size=settings.result_cache_size,
        cache_ttl_s=settings.result_cache_ttl_s,
        lookback_s=settings.results_lookback_s,
    )
    state_path = settings.state_path
    resources = None if state_path is None else StoreResources(settings.state_memory())
    read_model = ReadModel(
        kafka,
        state=None
        if state_path is None or resources is None
        else ReadModelState(state_path, resources, settings.state_cache_entries),
    )
    refusal_log = KafkaRefusalLog(kafka)
    gateway_metrics(router, read_model, producer, refusal_log, metrics=metrics)
    if resources is not None:
        store_resources, entries = resources, settings.state_cache_entries
        metrics.callbacks.labelled(
            "prgate_gateway_state",
            "RocksDB state store: memory bounds and use (bytes), entry cache capacity",
            "kind",
            lambda: store_resources.stats(entries),
        )
    health_servicer = health_aio.HealthServicer()
    for name in SERVED:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    commands = CommandService(
        settings=settings,
        results_topic=kafka.topics.results,
        sender=producer,
        results=router,
        view=read_model,
        refusal_log=refusal_log,
        caller_of=security.caller_of,
        metrics=metrics,
        tracing=tracing,
        deployment=kafka.topics.pull_requests,
    )
    queries = QueryService(read_model, settings, deployment=kafka.topics.pull_requests)
    servicers: list[tuple[connect_bridge.Registration, object]] = [
        (command_service_pb2_grpc.add_PullRequestCommandServiceServicer_to_server, commands),
        (query_service_pb2_grpc.add_PullRequestQueryServiceServicer_to_server, queries),
    ]
    for register, servicer in servicers:
        register(servicer, server)
    add_reflection(server, (COMMAND_SERVICE, QUERY_SERVICE, HEALTH))
    port = _listen(server, settings, security, reuse_port)
    try:  # the same servicers behind the same interceptors, over HTTP (off by default)
        http = await connect_http.start(
            settings,
            servicers,
            [*watching, *security.interceptors, streams],
            reuse_port=reuse_port,
            certificates=security.certificates,
        )
    except ListenError as exc:
        raise StartupError(str(exc), EXIT_LISTEN) from None
    try:
        metrics_server = prgate_metrics.serve(settings.metrics_listen, metrics.registry)
    except prgate_metrics.MetricsListenError as exc:
        raise StartupError(str(exc), EXIT_LISTEN) from None
    try:
        # The first Kafka client: librdkafka checks PRGATE_KAFKA_PROPERTIES when it is built.
        await producer.start()
    except KafkaException as exc:
        raise StartupError(f"Kafka client settings refused: {exc}", EXIT_CONFIG) from None
    refusal_log.start()
    await read_model.start()
    await router.start(wait=False)
    await server.start()
    gateway = Gateway(
        server,
        health_servicer,
        producer,
        router,
        read_model,
        port,
        settings,
        streams,
        security,
        tracing,
        metrics_server,
        refusal_log,
        http,
    )
    gateway._tasks.append(asyncio.create_task(gateway._become_ready()))
    gateway._tasks.append(
        asyncio.create_task(security.watch_tokens(settings.auth_reload_interval_s))
    )
    log.info(
        "gateway_started",
        extra={
            "listen": settings.listen,
            "port": port,
            "transport": security.mode,
            "pid": os.getpid(),
        },
    )
    return gateway


async def serve(
    settings: GatewaySettings, kafka: KafkaSettings, *, reuse_port: bool = False
) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully.

    SIGTERM (what orchestrators send) drains for ``drain_s``; SIGINT (Ctrl-C), or a second
    signal during the drain window, skips the drain: nobody balances load to a terminal.
    """
    stop, hurry = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set() or signum == signal.SIGINT:
            hurry.set()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    gateway = await start_gateway(settings, kafka, reuse_port=reuse_port)
    if gateway.security is not None and gateway.security.tokens is not None:
        loop.add_signal_handler(signal.SIGHUP, gateway.security.reload_tokens)
    try:
        await stop.wait()
    finally:
        await gateway.stop(hurry)


def main(argv: list[str] | None = None) -> int:
    """``prgate gateway`` / ``python -m gateway``; returns the exit code (see
    :data:`gateway.exits.EXIT_CODES`)."""
    parser = argparse.ArgumentParser(prog="prgate gateway", description=__doc__)
    add_arguments(parser, KafkaSettings)
    add_arguments(parser, GatewaySettings)
    args = parser.parse_args(argv)  # a bad flag: argparse's usage line, exit 2
    logs.configure("INFO")
    try:
        kafka = load(KafkaSettings, args)
        settings = load(GatewaySettings, args)
        logs.configure(settings.log_level)
    except (SystemExit, ValueError) as exc:
        return failed(EXIT_CONFIG, exc.code if isinstance(exc, SystemExit) else exc)
    log.info("gateway_config", extra={"kafka": redacted(kafka), "gateway": redacted(settings)})
    if settings.workers != 1:
        return supervise(settings, kafka, _worker_main)
    return _run(settings, kafka, reuse_port=False)


def _run(settings: GatewaySettings, kafka: KafkaSettings, *, reuse_port: bool) -> int:
    try:
        with contextlib.suppress(KeyboardInterrupt):  # SIGINT before the handler is set
            asyncio.run(serve(settings, kafka, reuse_port=reuse_port))
    except StartupError as exc:
        return failed(exc.exit_code, exc)
    except Exception as exc:
        log.debug("gateway_exit_traceback", exc_info=True)
        return failed(EXIT_FAILED, f"{type(exc).__name__}: {exc}")
    return EXIT_OK


def _worker_main(settings: GatewaySettings, kafka: KafkaSettings, index: int) -> int:
    """One worker of ``--workers N``: a complete gateway on the shared port (its own process)."""
    logs.configure(settings.log_level)
    settings = replace(
        settings, workers=1, metrics_listen=nth_address(settings.metrics_listen, index)
    )
    log.info(
        "gateway_worker", extra={"index": index, "pid": os.getpid(), "listen": settings.listen}
    )
    return _run(settings, kafka, reuse_port=True)
