"""Gateways on one cluster: the CPU each gateway spends on results and snapshots of commands it
did not accept, with 1, 2 and 4 gateways (issue 16). Run as ``python -m bench.fanout``; not a
step of ``prgate bench``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench import payloads
from bench.system import Child, cpu_seconds, free_port, wait_serving
from prgate.kafka.local import LocalKafka
from prgate.kafka.settings import KafkaSettings
from prgate.kafka.topics import ensure_topics
from prgate.v1 import command_service_pb2_grpc as svc_grpc

log = logging.getLogger(__name__)


def gateway_fanout(
    bootstrap_servers: str,
    work_dir: Path,
    gateways: tuple[int, ...] = (1, 2, 4),
    commands: int = 2000,
    idle_s: float = 10.0,
) -> dict[str, Any]:
    """The CPU each gateway spends on results and snapshots of commands it did not accept.

    For each count in ``gateways``: a processor and that many gateways (``python -m``, on
    their own topic prefix of the cluster at ``bootstrap_servers``) are started; the CPU of
    every gateway is taken over ``idle_s`` of idleness (the baseline), then over ``commands``
    OpenPullRequest calls (COMPLETED) sent to the first gateway only. The others accept
    nothing, so what they spend beyond their idle rate is the price of reading every result
    and snapshot of the cluster (each gateway reads all of ``prgate.command-results`` and
    ``prgate.pull-requests``). Returns, per count, CPU milliseconds per 1,000 commands of the
    accepting gateway and of each other one.
    """
    out: dict[str, Any] = {}
    for count in gateways:
        prefix = f"fanout{count}."
        kafka = KafkaSettings(bootstrap_servers=bootstrap_servers, topic_prefix=prefix)
        ensure_topics(kafka)
        env = dict(os.environ) | {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
            "PRGATE_TOPIC_PREFIX": prefix,
            "PRGATE_LOG_LEVEL": "WARNING",
        }
        children: list[Child] = []
        try:
            processor = Child(
                "processor",
                [sys.executable, "-m", "processor"],
                env | {"PRGATE_PROCESSOR_INSTANCE_ID": f"fanout-{count}"},
                work_dir / f"fanout{count}-processor.log",
            )
            processor.start()
            children.append(processor)
            targets = []
            for i in range(count):
                target = f"127.0.0.1:{free_port()}"
                gateway = Child(
                    f"gateway{i}",
                    [sys.executable, "-m", "gateway"],
                    env | {"PRGATE_LISTEN": target},
                    work_dir / f"fanout{count}-gateway{i}.log",
                )
                gateway.start()
                children.append(gateway)
                targets.append(target)
            for target, gateway in zip(targets, children[1:], strict=True):
                wait_serving(target, gateway)
            pids = [child.pid for child in children[1:]]
            before = [cpu_seconds(pid) for pid in pids]
            time.sleep(idle_s)  # the baseline: nothing happens
            idle = [(cpu_seconds(pid) - b) / idle_s for pid, b in zip(pids, before, strict=True)]
            with grpc.insecure_channel(targets[0]) as channel:
                stub = svc_grpc.PullRequestCommandServiceStub(channel)
                stub.OpenPullRequest(payloads.open_request(0, 0), timeout=30)  # warm up
                before = [cpu_seconds(pid) for pid in pids]
                started = time.perf_counter()
                for n in range(1, commands + 1):
                    stub.OpenPullRequest(payloads.open_request(0, n), timeout=30)
                seconds = time.perf_counter() - started
            spent = [
                (cpu_seconds(pid) - b - rate * seconds) * 1000 / (commands / 1000)
                for pid, b, rate in zip(pids, before, idle, strict=True)
            ]
            out[str(count)] = {
                "commands": commands,
                "seconds": round(seconds, 2),
                "accepting_gateway_cpu_ms_per_1000": round(spent[0], 1),
                "other_gateways_cpu_ms_per_1000": [round(s, 1) for s in spent[1:]],
                "idle_cpu_percent": [round(r * 100, 2) for r in idle],
            }
            log.info("gateway_fanout", extra={"gateways": count, "result": out[str(count)]})
        finally:
            for child in reversed(children):
                child.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.fanout [COMMANDS]``: :func:`gateway_fanout` on a private broker
    (started and stopped here), as JSON on stdout. ``prgate bench`` does not run it."""
    parser = argparse.ArgumentParser(prog="python -m bench.fanout")
    parser.add_argument("commands", type=int, nargs="?", default=2000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="prgate-bench-fanout-") as tmp:
        broker = LocalKafka(free_port(), controller_port=free_port(), state_dir=Path(tmp) / "kafka")
        broker.start(timeout=180.0)
        try:
            result = gateway_fanout(broker.bootstrap_servers, Path(tmp), commands=args.commands)
        finally:
            broker.stop()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
