"""The two baselines of the same run.

Baseline A, bare Kafka request/reply: a requester produces a CommandEnvelope-sized request and
waits for the reply; a trivial replier answers each request on another topic. Both use the
*same* client code and settings as prgate: the requester is the gateway's own
:class:`~gateway.producer.CommandProducer` (idempotent, ``acks=all``) plus a
:class:`~prgate.kafka.tail.TopicTail` on the replies (read_committed, same fetch settings);
the replier is transactional, like the processor: consume a batch with the processor's batch
size and wait, produce one reply per request, ``send_offsets_to_transaction``, commit, with
the processor's consumer and producer configs. What it leaves out is exactly prgate's own
work: validation, the domain, events and snapshots, the read model.

Baseline B, bare gRPC: a grpc.aio server that answers the same command RPCs (same service and
method names, same request types, parsed) with a canned response of the size prgate returns,
so the same load generator drives it unchanged.

    python -m bench.baselines echo 127.0.0.1:PORT
    python -m bench.baselines replier          # PRGATE_* / KAFKA_BOOTSTRAP_SERVERS env
    BENCH_REPLIER_TRANSACTIONAL=0 python -m bench.baselines replier   # Baseline A0
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
from confluent_kafka import OFFSET_END, Consumer, Message, Producer, TopicPartition
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import payloads
from gateway.producer import CommandProducer
from prgate.kafka import codec, command_ids
from prgate.kafka.contract import HEADER_CORRELATION_ID, HEADER_REPLY_TO, TYPE_COMMAND_RESULT
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.tail import TopicTail
from prgate.observability import logs
from prgate.settings import load
from prgate.v1 import command_service_pb2 as svc
from prgate.v1.commands_pb2 import CommandEnvelope
from processor.settings import ProcessorSettings

log = logging.getLogger(__name__)

ECHO_SERVICE = "prgate.v1.PullRequestCommandService"
TXN_TIMEOUT_S = 30.0


# --- Baseline B: gRPC echo ---------------------------------------------------------------


def _echo_handler(rpc: str) -> grpc.RpcMethodHandler[Any, bytes]:
    canned = payloads.canned_response(rpc)
    request_type = getattr(svc, f"{rpc}Request")

    async def handle(request: Any, context: Any) -> bytes:
        return canned

    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=request_type.FromString, response_serializer=None
    )


async def serve_echo(listen: str) -> None:
    """A grpc.aio echo server with the gateway's server options, until SIGTERM."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 1024 * 1024),
            ("grpc.max_send_message_length", 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ]
    )
    handlers = {rpc: _echo_handler(rpc) for rpc in payloads.STEPS}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(ECHO_SERVICE, handlers),))
    health = health_aio.HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if server.add_insecure_port(listen) == 0:
        raise SystemExit(f"cannot listen on {listen}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(1.0)


# --- Baseline A: Kafka request/reply ----------------------------------------------------------


def run_replier(
    settings: ProcessorSettings, stop: threading.Event, *, transactional: bool = True
) -> None:
    """The replier with the processor's configs and batching, until ``stop``.

    ``transactional=False`` (Baseline A0) drops the transaction: replies are produced
    idempotently and offsets committed asynchronously, which shows what exactly-once costs.
    """
    topics = settings.topics
    instance = settings.resolved_instance_id
    replies = [r.SerializeToString() for r in payloads.sample_life().results]
    producer_config = settings.producer_config(instance)
    if not transactional:
        del producer_config["transactional.id"], producer_config["transaction.timeout.ms"]
    producer = Producer(producer_config)
    if transactional:
        producer.init_transactions(TXN_TIMEOUT_S)
    consumer = Consumer(
        settings.consumer_config(instance) | {"group.id": f"{settings.topic_prefix}replier"}
    )
    consumer.subscribe([topics.commands])
    served = 0
    try:
        while not stop.is_set():
            batch = consumer.consume(1, 0.1)
            if batch and settings.batch_max_records > 1:
                batch += consumer.consume(
                    settings.batch_max_records - 1, settings.batch_max_wait_ms / 1000
                )
            requests = [m for m in batch if m.error() is None]
            if not requests:
                continue
            if transactional:
                producer.begin_transaction()
            offsets: dict[int, int] = {}
            for msg in requests:
                _reply(producer, msg, replies, topics.results)
                offsets[msg.partition() or 0] = (msg.offset() or 0) + 1
            positions = [TopicPartition(topics.commands, p, o) for p, o in offsets.items()]
            if transactional:
                producer.send_offsets_to_transaction(
                    positions, consumer.consumer_group_metadata(), TXN_TIMEOUT_S
                )
                producer.commit_transaction(TXN_TIMEOUT_S)
            else:
                producer.poll(0)
                consumer.commit(offsets=positions, asynchronous=True)
            served += len(requests)
    finally:
        consumer.close()
        producer.flush(5.0)
        log.info("replier_stopped", extra={"served": served})


def _reply(producer: Producer, msg: Message, replies: Sequence[bytes], default: str) -> None:
    headers = codec.header_texts(msg.headers())
    command_id = headers.get(HEADER_CORRELATION_ID, "")
    # The reply of the same size as prgate's result of that command type.
    which = codec.decode_command(msg.key(), msg.value(), headers).WhichOneof("command")
    step = payloads.ENVELOPE_FIELDS.index(which) if which in payloads.ENVELOPE_FIELDS else 0
    producer.produce(
        headers.get(HEADER_REPLY_TO) or default,
        key=command_id,
        value=replies[step],
        headers=codec.record_headers(TYPE_COMMAND_RESULT, correlation_id=command_id),
    )


def _from_end(_consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
    return [TopicPartition(tp.topic, tp.partition, OFFSET_END) for tp in partitions]


class KafkaRequester:
    """The requester of Baseline A: the gateway's producer and reply tail, nothing else."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._reply_to = kafka.topics.results
        self._producer = CommandProducer(kafka)
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._tail: TopicTail[str | None] = TopicTail(
            kafka,
            kafka.topics.results,
            name=f"bench-requester-{uuid.uuid4().hex[:8]}",
            decode=lambda msg: codec.header(msg.headers(), HEADER_CORRELATION_ID),
            apply=self._apply,
            start_offsets=_from_end,
        )
        self._envelopes = payloads.sample_life().envelopes

    async def start(self) -> None:
        await self._producer.start()
        await asyncio.wait_for(self._tail.start(), 30.0)

    def _apply(self, batch: Sequence[str | None]) -> None:
        for correlation in batch:
            if correlation is None:
                continue
            future = self._waiting.pop(correlation, None)
            if future is not None and not future.done():
                future.set_result(None)

    async def request(self, step: int, timeout: float) -> tuple[float, float]:
        """One request/reply; returns (ms until the broker acked, ms until the reply)."""
        envelope = CommandEnvelope()
        envelope.CopyFrom(self._envelopes[step % len(self._envelopes)])
        envelope.pull_request_id = f"pr-{uuid.uuid4().hex}"
        envelope.command_id = command_ids.bind(command_ids.new_base(), envelope.pull_request_id)
        command = getattr(envelope, envelope.WhichOneof("command") or "")
        if "pull_request_id" in command.DESCRIPTOR.fields_by_name:
            # The command names the same pull request, as the gateway's commands do (the
            # replier decodes it as the processor would: key = the command's pull request id).
            command.pull_request_id = envelope.pull_request_id
        started = time.perf_counter()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[envelope.command_id] = future
        try:
            await self._producer.send(envelope, reply_to=self._reply_to, timeout=timeout)
            acked = time.perf_counter()
            await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(envelope.command_id, None)
        return (acked - started) * 1000, (time.perf_counter() - started) * 1000

    async def close(self) -> None:
        await self._tail.close()
        await self._producer.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logs.configure("INFO")
    if args[:1] == ["echo"] and len(args) == 2:
        asyncio.run(serve_echo(args[1]))
        return 0
    if args[:1] == ["replier"]:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        transactional = os.environ.get("BENCH_REPLIER_TRANSACTIONAL", "1") != "0"
        run_replier(load(ProcessorSettings), stop, transactional=transactional)
        return 0
    print("usage: python -m bench.baselines echo HOST:PORT | replier", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
