"""A running gateway: its health, and the drain-and-stop sequence.

Health is NOT_SERVING until the read model and the reply router have caught up, then SERVING;
``prgate.v1.PullRequestCommandService`` then follows the command producer. :meth:`Gateway.stop`
turns health NOT_SERVING, drains, ends the open streams (:func:`shutting_down`), stops the
gRPC and Connect listeners and closes the Kafka clients. :func:`gateway.server.start_gateway`
builds the :class:`Gateway`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import code_pb2
from grpc_health.v1 import _async as health_aio  # public as health.aio; mypy can't see that
from grpc_health.v1 import health_pb2

from gateway import connect_http, refusals
from gateway.producer import CommandProducer
from gateway.read_model import ReadModel
from gateway.refusal_log import KafkaRefusalLog
from gateway.reply_router import ReplyRouter
from gateway.security import Security
from gateway.settings import GatewaySettings
from gateway.streams import OpenStreams
from prgate.observability import metrics as prgate_metrics
from prgate.observability import tracing as prgate_tracing
from prgate.v1 import command_service_pb2, query_service_pb2

log = logging.getLogger(__name__)

COMMAND_SERVICE = command_service_pb2.DESCRIPTOR.services_by_name[
    "PullRequestCommandService"
].full_name
QUERY_SERVICE = query_service_pb2.DESCRIPTOR.services_by_name["PullRequestQueryService"].full_name
SERVED = ("", COMMAND_SERVICE, QUERY_SERVICE)

PRODUCER_CHECK_S = 1.0  # how often the command service's health follows the producer
CATCHING_UP_LOG_S = 5.0


def shutting_down() -> refusals.Refusal:
    """How open streams end once the drain window is over: reconnect elsewhere."""
    return refusals.error(
        code_pb2.UNAVAILABLE,
        "the gateway is shutting down; open the stream again (another gateway serves it)",
        refusals.error_info("GATEWAY_SHUTTING_DOWN"),
        refusals.retry_after(0.5),
    )


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
    streams: OpenStreams
    security: Security | None = None
    tracing: prgate_tracing.Tracing | None = None
    metrics_server: Any = None
    refusal_log: KafkaRefusalLog | None = None
    http: connect_http.ConnectServer | None = None  # the Connect (HTTP/JSON) listener
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def _caught_up(self) -> bool:
        return self.read_model.caught_up() and self.router.caught_up()

    async def _become_ready(self) -> None:
        """SERVING once caught up; then the command service follows the producer's health."""
        waited = 0.0
        while not self._caught_up():
            await asyncio.sleep(0.1)
            waited += 0.1
            if waited >= CATCHING_UP_LOG_S:
                waited = 0.0
                log.info(
                    "gateway_waiting_for_kafka",
                    extra={
                        "read_model_caught_up": self.read_model.caught_up(),
                        "replies_caught_up": self.router.caught_up(),
                        "stats": self.read_model.stats(),
                    },
                )
        for name in SERVED:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gateway_serving", extra={"port": self.port, "stats": self.read_model.stats()})
        commands_serving = True
        while True:
            await asyncio.sleep(PRODUCER_CHECK_S)
            healthy = self.producer.healthy()
            if healthy != commands_serving:
                commands_serving = healthy
                status = health_pb2.HealthCheckResponse
                await self.health.set(
                    COMMAND_SERVICE, status.SERVING if healthy else status.NOT_SERVING
                )
                log.warning("gateway_commands_health", extra={"serving": healthy})

    async def stop(self, hurry: asyncio.Event | None = None) -> None:
        """NOT_SERVING, drain, end the open streams, stop the server, close Kafka.

        ``hurry`` set (now or during the drain window) skips the rest of the drain.
        """
        settings = self.settings
        log.info(
            "gateway_stopping",
            extra={
                "drain_s": settings.drain_s,
                "grace_s": settings.grace_period_s,
                "streams": self.streams.count(),
            },
        )
        await self.health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        if settings.drain_s > 0:
            hurried = asyncio.Event() if hurry is None else hurry
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hurried.wait(), settings.drain_s)
        self.streams.end_all(shutting_down())
        await asyncio.gather(
            self.server.stop(settings.grace_period_s),
            connect_http.stop(self.http, settings.grace_period_s),
        )
        await self.router.close()
        await self.read_model.close()
        await self.producer.close()
        if self.refusal_log is not None:
            await asyncio.to_thread(self.refusal_log.close)
        prgate_metrics.close(self.metrics_server)
        if self.tracing is not None:
            self.tracing.shutdown()
        log.info("gateway_stopped")
