"""Sizes of the benchmark profiles: default, --quick, --long and --smoke (the test's)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Plan:
    """Sizes of one profile."""

    name: str
    step_s: float
    warmup_s: float
    concurrency: tuple[int, ...]
    rates: tuple[float, ...]
    reject_concurrency: tuple[int, ...]
    restore_n: int
    watchers: int
    watch_updates: int
    workers: int = 2
    gateway_workers: int = 2  # the "workers" scenario: the gateway with --workers this
    workers_concurrency: int = 16  # its closed-loop step (1 worker, then gateway_workers)
    warmup_per_system_s: float = 3.0
    broker_warmup_s: float = 30.0
    fixed_rate: float = 100.0
    seed_prs: int = 50
    archive_n: int = 200_000
    archive_live_s: float = 15.0
    held_waves: int = 2
    held_wave: int = 1000
    every_step: bool = False  # run every concurrency step, also past p99 > 50 ms (--concurrency)


PLANS = {
    "default": Plan(
        "default",
        step_s=8.0,
        warmup_s=2.0,
        concurrency=(1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256),
        rates=(250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0),
        reject_concurrency=(16, 64, 256),
        restore_n=100_000,
        watchers=1000,
        watch_updates=20,
    ),
    "quick": Plan(
        "quick",
        step_s=2.5,
        warmup_s=0.5,
        concurrency=(1, 2, 4, 8, 16, 24, 32, 48, 64),
        rates=(500.0, 1000.0, 2000.0),
        reject_concurrency=(64,),
        restore_n=20_000,
        watchers=200,
        watch_updates=8,
        warmup_per_system_s=2.0,
        broker_warmup_s=16.0,
        archive_n=60_000,
        archive_live_s=8.0,
    ),
    "smoke": Plan(
        "smoke",
        step_s=1.0,
        warmup_s=0.2,
        concurrency=(2,),
        rates=(50.0,),
        reject_concurrency=(2,),
        restore_n=300,
        watchers=4,
        watch_updates=2,
        workers=1,
        workers_concurrency=2,
        warmup_per_system_s=0.5,
        broker_warmup_s=1.0,
        fixed_rate=20.0,
        seed_prs=4,
        archive_n=2_000,
        archive_live_s=2.0,
        held_wave=20,
    ),
}
PLANS["long"] = replace(PLANS["default"], name="long", restore_n=1_000_000, watchers=10_000)
