"""bench.ab's verdict: medians of per-round ratios to the first variant, with their range."""

from __future__ import annotations

from bench.ab import _summary


def row(round_no: int, variant: str, cpu: float, rate: float) -> dict[str, object]:
    return {"round": round_no, "variant": variant, "cpu_ms_per_call": cpu, "throughput": rate}


def test_ratios_are_taken_per_round_then_their_median() -> None:
    rows = [
        # Round 0 is loaded (everything slow), round 1 quiet, round 2 in between: the per-round
        # ratio of "new" stays 0.8 although its own CPU per call moves 2x between rounds.
        row(0, "base", 1.0, 100.0),
        row(0, "new", 0.8, 125.0),
        row(0, "echo", 0.25, 400.0),
        row(1, "base", 0.5, 200.0),
        row(1, "new", 0.4, 250.0),
        row(1, "echo", 0.1, 900.0),
        row(2, "base", 0.6, 150.0),
        row(2, "new", 0.6, 150.0),
        row(2, "echo", 0.15, 700.0),
    ]
    summary = _summary(rows, ["base", "new"])
    assert summary["new"]["cpu_ms_per_call_ratio_to_base"] == {"median": 0.8, "range": [0.8, 1.0]}
    assert summary["new"]["throughput_ratio_to_base"] == {"median": 1.25, "range": [1.0, 1.25]}
    assert summary["new"]["cpu_ms_per_call_median"] == 0.6
    assert summary["base"]["cpu_ms_per_call_ratio_to_base"]["median"] == 1.0
    assert summary["echo"]["cpu_ms_per_call_ratio_to_base"]["range"] == [0.2, 0.25]
