"""The gateway process: gRPC server, health, reflection, Kafka clients, graceful shutdown."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import _async as health_aio  # public as health.aio; mypy can't see that
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.command_service import CommandService
from gateway.malformed import MalformedRequestInterceptor
from gateway.producer import CommandProducer
from gateway.query_service import QueryService
from gateway.read_model import ReadModel
from gateway.reply_router import ReplyRouter
from gateway.security import Security, build_security
from gateway.settings import GatewaySettings
from prgate import logs
from prgate import metrics as prgate_metrics
from prgate import tracing as prgate_tracing
from prgate.kafka_settings import KafkaSettings
from prgate.metrics import GatewayMetrics
from prgate.settings import add_arguments, load, redacted
from prgate.v1 import (
    command_service_pb2,
    command_service_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
)

log = logging.getLogger("prgate.gateway")

COMMAND_SERVICE = command_service_pb2.DESCRIPTOR.services_by_name[
    "PullRequestCommandService"
].full_name
QUERY_SERVICE = query_service_pb2.DESCRIPTOR.services_by_name["PullRequestQueryService"].full_name
SERVED = ("", COMMAND_SERVICE, QUERY_SERVICE)


@dataclass
class Gateway:
    """A running gateway: its server and the Kafka components behind it."""

    server: grpc.aio.Server
    health: health_aio.HealthServicer
    producer: CommandProducer
    router: ReplyRouter
    read_model: ReadModel
    port: int
    settings: GatewaySettings
    security: Security | None = None
    tracing: prgate_tracing.Tracing | None = None
    _ready_task: asyncio.Task[None] | None = None

    async def _become_ready(self) -> None:
        while not await self.read_model.wait_caught_up(timeout=5.0):
            log.info("read_model_catching_up stats=%s", self.read_model.stats())
        for name in SERVED:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gateway_serving port=%d stats=%s", self.port, self.read_model.stats())

    async def stop(self) -> None:
        """Stop taking calls, let running ones finish within the grace period, close Kafka."""
        log.info("gateway_stopping grace_s=%s", self.settings.grace_period_s)
        await self.health.enter_graceful_shutdown()
        if self._ready_task is not None:
            self._ready_task.cancel()
        await self.server.stop(self.settings.grace_period_s)
        await self.router.close()
        await self.read_model.close()
        await self.producer.close()
        if self.tracing is not None:
            self.tracing.shutdown()
        log.info("gateway_stopped")


def gateway_metrics(
    router: ReplyRouter, read_model: ReadModel, producer: CommandProducer
) -> GatewayMetrics:
    """The gateway's metrics, with gauges read from its components at scrape time."""
    metrics = GatewayMetrics()
    gauges = metrics.callbacks
    gauges.gauge(
        "prgate_gateway_waiting_calls",
        "Calls and WatchCommand streams waiting for a result",
        router.waiting_count,
    )
    gauges.gauge(
        "prgate_gateway_read_model_caught_up",
        "1 once the read model reached the end offsets seen at start",
        lambda: float(read_model.caught_up()),
    )
    gauges.gauge(
        "prgate_gateway_replies_caught_up",
        "1 once the reply router reached the end offsets seen at start",
        lambda: float(router.caught_up()),
    )
    gauges.gauge(
        "prgate_gateway_kafka_producer_healthy",
        "0 while the broker is unreachable for the command producer",
        lambda: float(producer.healthy()),
    )
    gauges.labelled(
        "prgate_gateway_read_model",
        "Read model counts: entities, records, garbage, tombstones, stale, watchers, ...",
        "kind",
        read_model.stats,
    )
    gauges.labelled(
        "prgate_gateway_replies",
        "Reply router counts: cached results, garbage, ...",
        "kind",
        router.stats,
    )
    return metrics


async def start_gateway(settings: GatewaySettings, kafka: KafkaSettings) -> Gateway:
    """Start Kafka components and the gRPC server; health is NOT_SERVING until caught up."""
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Two gateways must not silently share one port.
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.http2.max_pings_without_data", 0),
        # gRPC core queues calls that arrived but that grpc.aio's accept loop (one call at a
        # time, on the busy event loop) has not taken yet, and resets them (the client sees
        # CANCELLED) beyond 1,000 queued (at random) and 3,000 (all): 10k watchers connecting
        # at once lost about a third of their streams. max_concurrent_rpcs is the bound.
        ("grpc.server.max_pending_requests", settings.max_concurrent_rpcs),
        ("grpc.server.max_pending_requests_hard_limit", settings.max_concurrent_rpcs),
    ]
    # Before any Kafka client exists: bad certificates or token file fail fast.
    security = build_security(settings)
    try:
        tracing = prgate_tracing.setup(settings.tracing, "prgate-gateway")
    except prgate_tracing.TracingError as exc:
        raise SystemExit(f"prgate gateway: {exc}") from exc
    server = grpc.aio.server(
        options=options,
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        # Outermost first: an undecodable body is refused before anything reads it.
        interceptors=[MalformedRequestInterceptor(), *security.interceptors],
    )
    producer = CommandProducer(kafka, delivery_timeout_ms=int(settings.accept_timeout_s * 1000))
    router = ReplyRouter(
        kafka,
        max_waiting=settings.max_waiting,
        cache_size=settings.result_cache_size,
        cache_ttl_s=settings.result_cache_ttl_s,
        lookback_s=settings.results_lookback_s,
    )
    read_model = ReadModel(kafka)
    metrics = gateway_metrics(router, read_model, producer)
    health_servicer = health_aio.HealthServicer()
    for name in SERVED:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    command_service_pb2_grpc.add_PullRequestCommandServiceServicer_to_server(
        CommandService(
            settings=settings,
            results_topic=kafka.topics.results,
            sender=producer,
            results=router,
            view=read_model,
            caller_of=security.caller_of,
            metrics=metrics,
            tracing=tracing,
        ),
        server,
    )
    query_service_pb2_grpc.add_PullRequestQueryServiceServicer_to_server(
        QueryService(read_model), server
    )
    reflection.enable_server_reflection(
        (
            COMMAND_SERVICE,
            QUERY_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    port = (
        server.add_secure_port(settings.listen, security.credentials)
        if security.credentials is not None
        else server.add_insecure_port(settings.listen)
    )
    if port == 0:
        raise SystemExit(f"cannot listen on {settings.listen}")
    await producer.start()
    await read_model.start()
    await router.start()
    await server.start()
    prgate_metrics.serve(settings.metrics_listen, metrics.registry)
    gateway = Gateway(
        server, health_servicer, producer, router, read_model, port, settings, security, tracing
    )
    gateway._ready_task = asyncio.create_task(gateway._become_ready())
    log.info("gateway_started listen=%s port=%d transport=%s", settings.listen, port, security.mode)
    return gateway


async def serve(settings: GatewaySettings, kafka: KafkaSettings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    gateway = await start_gateway(settings, kafka)
    if gateway.security is not None and gateway.security.tokens is not None:
        loop.add_signal_handler(signal.SIGHUP, gateway.security.reload_tokens)
    try:
        await stop.wait()
    finally:
        await gateway.stop()


def main(argv: list[str] | None = None) -> int:
    """``prgate gateway`` / ``python -m gateway``."""
    parser = argparse.ArgumentParser(prog="prgate gateway", description=__doc__)
    add_arguments(parser, KafkaSettings)
    add_arguments(parser, GatewaySettings)
    args = parser.parse_args(argv)
    kafka = load(KafkaSettings, args)
    settings = load(GatewaySettings, args)
    logs.configure(settings.log_level)
    log.info("gateway_config kafka=%s gateway=%s", redacted(kafka), redacted(settings))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, kafka))
    return 0
