"""The load generator: N worker processes, each with its own event loop and gRPC channel.

A :class:`LoadPool` spawns the workers once and hands each :class:`Step` to all of them with a
common wall-clock start; every worker does its share (rate / N or concurrency / N) and sends
back its raw latencies, which the pool merges. Python's GIL caps one process at roughly one
core of client work, so the workers are processes, not threads or tasks.

Two ways to offer load:

- closed loop: ``concurrency`` callers, each sending its next call when the previous returns;
- open loop: calls scheduled at a fixed rate regardless of responses. A call's latency is
  measured from its *scheduled* time, so a generator or server that falls behind shows up in
  the latency instead of silently lowering the offered rate (no coordinated omission).

Only calls started (open loop: scheduled) after the warm-up and before the end of the step are
counted. A closed-loop caller's window starts when its first counted call starts, not at the
end of the warm-up: a call that began in the warm-up and ends later (the first call after a
pause can take a second) is neither counted nor charged to the window, where it used to show
as idle time. So one caller at a mean latency of L reports 1/L calls per second, as
``tests/bench/test_loadgen.py`` checks with a fake call of known latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any

import grpc

from bench import payloads
from bench.steps import Outcome, Step, Targets
from prgate.v1 import command_service_pb2 as svc
from prgate.v1 import command_service_pb2_grpc as svc_grpc
from prgate.v1 import outcome_pb2, query_service_pb2, query_service_pb2_grpc

MAX_IN_FLIGHT = 5000  # per worker; beyond it an open-loop call counts as an "overload" error
TERMINAL = (
    outcome_pb2.COMMAND_STATE_SUCCEEDED,
    outcome_pb2.COMMAND_STATE_REJECTED,
    outcome_pb2.COMMAND_STATE_FAILED,
)
STREAMS_PER_CHANNEL = 100


# --- inside a worker process -----------------------------------------------------------------


class Worker:
    """The state one worker keeps across steps: channels, stubs, open pull requests."""

    def __init__(self, index: int, count: int, targets: Targets) -> None:
        self.index = index
        self.count = count
        self.targets = targets
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._ready: dict[str, deque[tuple[str, int]]] = {}
        self._n = 0
        self._requesters: dict[str, Any] = {}

    def _stub(self, target: str) -> svc_grpc.PullRequestCommandServiceStub:
        if target not in self._channels:
            self._channels[target] = grpc.aio.insecure_channel(target)
        return svc_grpc.PullRequestCommandServiceStub(self._channels[target])

    def share(self, total: float) -> float:
        """This worker's part of a rate or a concurrency."""
        if isinstance(total, int):
            return total // self.count + (1 if self.index < total % self.count else 0)
        return total / self.count

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        for requester in self._requesters.values():
            await requester.close()

    # -- one call of each kind; each returns extra latencies (ms) to record ------------------

    async def call_mix(self, step: Step, started: float, mode: int) -> dict[str, float]:
        target = self.targets.gateway if step.system == "prgate" else self.targets.echo
        stub = self._stub(target)
        ready = self._ready.setdefault(f"{target}:{mode}", deque())
        pull_request_id, index = ready.popleft() if ready else ("", 0)
        self._n += 1
        request = payloads.step_request(index, pull_request_id, self.index, self._n, mode)
        method = getattr(stub, payloads.STEPS[index])
        response = await method(request, timeout=step.timeout_s)
        receipt = response.receipt
        extra: dict[str, float] = {}
        if mode == payloads.ACCEPTED:
            extra["accepted"] = (time.perf_counter() - started) * 1000
            if receipt.state not in TERMINAL:
                watch = stub.WatchCommand(
                    svc.WatchCommandRequest(command_id=receipt.command_id), timeout=step.timeout_s
                )
                async for update in watch:
                    if update.receipt.state in TERMINAL:
                        receipt = update.receipt
                        break
                watch.cancel()
            if receipt.state != outcome_pb2.COMMAND_STATE_SUCCEEDED:
                raise RuntimeError(f"command ended {receipt.state}")
        if index < len(payloads.STEPS) - 1:
            ready.append((receipt.pull_request_id or pull_request_id, index + 1))
        return extra

    async def call_reject(self, step: Step, started: float) -> dict[str, float]:
        target = self.targets.gateway if step.system == "prgate" else self.targets.echo
        ids = step.reject_ids or ("pr-unknown",)
        self._n += 1
        request = payloads.unapproved_merge(ids[(self._n * self.count + self.index) % len(ids)])
        try:
            await self._stub(target).MergePullRequest(request, timeout=step.timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
        return {}

    async def call_rr(self, step: Step, started: float) -> dict[str, float]:
        requester = self._requesters.get(step.system)
        if requester is None:
            from bench.baselines import KafkaRequester

            transactional = step.system == "baseline_a"
            kafka = self.targets.baseline_kafka if transactional else self.targets.plain_kafka
            requester = self._requesters[step.system] = KafkaRequester(kafka)
            await requester.start()
        self._n += 1
        # From the same origin as prgate's "accepted" (call_mix): ``started``, the call's
        # scheduled time, so the generator's own send lag counts on both sides.
        lag_ms = (time.perf_counter() - started) * 1000
        acked_ms, _ = await requester.request(self._n, step.timeout_s)
        return {"accepted": lag_ms + acked_ms}

    def operation(self, step: Step) -> Callable[[float], Awaitable[dict[str, float]]]:
        if step.kind == "mix":
            return lambda started: self.call_mix(step, started, payloads.COMPLETED)
        if step.kind == "accepted":
            return lambda started: self.call_mix(step, started, payloads.ACCEPTED)
        if step.kind == "reject":
            return lambda started: self.call_reject(step, started)
        if step.kind == "rr":
            return lambda started: self.call_rr(step, started)
        raise ValueError(f"unknown step kind {step.kind!r}")

    # -- running a step ---------------------------------------------------------------------

    async def run(self, step: Step, conn: Connection) -> Outcome:
        if step.kind == "rr" and step.system not in self._requesters:
            await self.call_rr(replace(step, timeout_s=30.0), time.perf_counter())  # connect
        if step.kind == "watch":
            return await self.run_watch(step, conn)
        operation = self.operation(step)
        outcome = Outcome()
        await asyncio.sleep(max(0.0, step.start_at - time.time()))
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        counted_from, end = t0 + step.warmup_s, t0 + step.duration_s

        async def timed(started: float) -> None:
            # How late the generator itself sent the call (open loop: after its schedule).
            lag = (time.perf_counter() - started) * 1000
            try:
                extra = await operation(started)
            except grpc.aio.AioRpcError as exc:
                if counted_from <= started < end:
                    outcome.errors[exc.code().name] += 1
                return
            except Exception as exc:
                if counted_from <= started < end:
                    outcome.errors[type(exc).__name__] += 1
                return
            if counted_from <= started < end:
                outcome.latencies.append((time.perf_counter() - started) * 1000)
                for key, value in extra.items():
                    outcome.extra.setdefault(key, []).append(value)
                if step.mode == "open":
                    outcome.extra.setdefault("send_lag", []).append(lag)

        tasks: set[asyncio.Task[None]] = set()
        if step.mode == "open":
            rate = self.share(step.rate)
            interval = 1.0 / rate if rate > 0 else end
            scheduled = t0 + interval * self.index / self.count
            while scheduled < end:
                now = time.perf_counter()
                while scheduled <= now and scheduled < end:
                    if len(tasks) >= MAX_IN_FLIGHT:
                        if scheduled >= counted_from:
                            outcome.errors["overload"] += 1
                    else:
                        task = asyncio.create_task(timed(scheduled))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    scheduled += interval
                await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        else:

            async def caller() -> None:
                first = 0.0
                calls = 0
                while (now := time.perf_counter()) < end:
                    if now >= counted_from:
                        first = first or now
                        calls += 1
                    await timed(now)
                if first:  # this caller's rate over its own window (see the module's doc)
                    outcome.closed_rate += calls / (end - first)

            tasks = {
                asyncio.create_task(caller()) for _ in range(int(self.share(step.concurrency)))
            }
        if tasks:
            # Closed-loop callers run until ``end``; every call then gets its own timeout.
            bound = max(0.0, end - time.perf_counter()) + step.timeout_s + 2.0
            _, late = await asyncio.wait(tasks, timeout=bound)
            for task in late:
                task.cancel()
            outcome.errors["unfinished"] += len(late)
            if not outcome.errors["unfinished"]:
                del outcome.errors["unfinished"]
        outcome.cpu_s = time.process_time() - cpu0
        return outcome

    async def run_watch(self, step: Step, conn: Connection) -> Outcome:
        """Open this worker's share of streams, report "ready", record every arrival."""
        outcome = Outcome()
        share = int(self.share(step.watchers))
        channels = [
            grpc.aio.insecure_channel(
                self.targets.gateway, options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(max(1, -(-share // STREAMS_PER_CHANNEL)))
        ]
        all_in = asyncio.Event()
        if share == 0:
            all_in.set()
        request = query_service_pb2.WatchPullRequestRequest(pull_request_id=step.watch_id)

        async def watch(channel: grpc.aio.Channel) -> None:
            stub = query_service_pb2_grpc.PullRequestQueryServiceStub(channel)
            call = stub.WatchPullRequest(request, timeout=step.duration_s + 120.0)
            first = True
            async for response in call:
                arrived = time.time()
                if first:
                    first = False
                    outcome.subscribed += 1
                    if outcome.subscribed >= share:
                        all_in.set()
                    continue
                version = response.pull_request.version
                outcome.arrivals.setdefault(version, []).append(arrived)
                if version >= step.watch_last_version:
                    break
            call.cancel()

        tasks = [asyncio.create_task(watch(channels[i % len(channels)])) for i in range(share)]
        try:
            await asyncio.wait_for(all_in.wait(), 120.0)
        except TimeoutError:
            outcome.errors["not_subscribed"] += share - outcome.subscribed
        conn.send(("ready", self.index))
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=step.duration_s)
            for task in late:
                task.cancel()
            for task in tasks:
                if task.done() and not task.cancelled():
                    exc = task.exception()
                    if isinstance(exc, grpc.aio.AioRpcError):
                        outcome.errors[f"{exc.code().name}: {exc.details()}"[:120]] += 1
                    elif exc is not None:
                        outcome.errors[type(exc).__name__] += 1
            if late:
                outcome.errors["incomplete"] += len(late)
        for channel in channels:
            await channel.close(None)
        return outcome


async def _worker_loop(index: int, count: int, targets: Targets, conn: Connection) -> None:
    worker = Worker(index, count, targets)
    loop = asyncio.get_running_loop()
    try:
        while True:
            step = await loop.run_in_executor(None, conn.recv)
            if step is None:
                break
            try:
                outcome = await worker.run(step, conn)
            except Exception as exc:  # report, keep the worker usable
                outcome = Outcome(errors=Counter({f"worker:{type(exc).__name__}: {exc}": 1}))
            conn.send(("result", outcome))
    finally:
        await worker.close()


def worker_main(index: int, count: int, targets: Targets, conn: Connection) -> None:
    """Entry point of a worker process."""
    asyncio.run(_worker_loop(index, count, targets, conn))


class LoadPool:
    """The worker processes; ``run(step)`` returns the merged outcome of all of them."""

    def __init__(self, workers: int, targets: Targets) -> None:
        context = multiprocessing.get_context("spawn")  # no fork after gRPC/Kafka threads
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for index in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(
                target=worker_main, args=(index, workers, targets, child), daemon=True
            )
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [int(p.pid) for p in self._procs]

    def run(self, step: Step, on_ready: Callable[[], None] | None = None) -> Outcome:
        """Run ``step`` on every worker (starting together) and merge what they measured.

        For a watch step, ``on_ready`` is called once every worker reported its streams open.
        """
        step = replace(step, start_at=time.time() + 0.2)
        for conn in self._conns:
            conn.send(step)
        bound = step.duration_s + step.timeout_s + 180.0
        if step.kind == "watch":
            for conn in self._conns:
                self._expect(conn, "ready", bound)
            if on_ready is not None:
                on_ready()
        merged = Outcome()
        for conn in self._conns:
            merged.merge(self._expect(conn, "result", bound))
        return merged

    @staticmethod
    def _expect(conn: Connection, kind: str, timeout: float) -> Any:
        if not conn.poll(timeout):
            raise RuntimeError(f"a load generator worker sent no {kind} within {timeout:.0f}s")
        got, payload = conn.recv()
        if got != kind:
            raise RuntimeError(f"a load generator worker sent {got}, expected {kind}")
        return payload

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
