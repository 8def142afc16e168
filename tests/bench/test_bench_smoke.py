"""The benchmark machinery end to end with minimal sizes: structure only, never speed.

``prgate bench --smoke`` starts its own broker, processor, gateway and baselines, runs every
scenario for about a second with one load generator process, and writes its JSON. This test
checks that the document has the expected shape; it asserts nothing about timings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench import run

pytestmark = pytest.mark.kafka

LATENCY_KEYS = {"count", "p50", "p95", "p99", "max", "mean"}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_smoke_run_writes_the_expected_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    json_file = tmp_path / "results.json"

    code = run.main(["--smoke", "--out", str(out), "--json", str(json_file)])

    assert code == 0
    results = json.loads(json_file.read_text())
    assert results == json.loads((out / "results.json").read_text())
    assert (out / "results.md").read_text().startswith("# prgate bench (smoke")
    assert {"meta", "machine", "loadgen", "settings", "steps", "targets"} <= set(results)
    assert results["machine"]["cores"] >= 1
    assert results["settings"]["processor"]["batch_max_records"] >= 1

    for system in ("prgate", "baseline_a", "baseline_a0", "baseline_b"):
        step = results["fixed_rate"][system]
        assert set(step["latency_ms"]) == LATENCY_KEYS
        assert step["ok"] > 0, step
        assert step["errors"] == 0, step
    assert set(results["accepted"]["accepted_ms"]) == LATENCY_KEYS
    assert results["accepted"]["ok"] > 0

    series = {(s["system"], s["mode"]) for s in results["steps"]}
    for system in ("prgate", "baseline_a", "baseline_b"):
        assert {(system, "closed"), (system, "open")} <= series
    for step in results["steps"]:
        assert {"gateway", "processor", "broker", "loadgen"} <= set(step["cpu_cores"])
        assert set(step["cpu_ms_per_call"]) == set(step["cpu_cores"])
        assert _is_number(step["throughput"])

    assert results["rejection"]["prgate"][0]["ok"] > 0
    assert results["rejection"]["prgate"][0]["errors"] == 0

    # The gateway restarted with 1, then --workers 2: the same steps ran on both, no errors.
    workers = results["workers"]
    assert workers["gateway_workers"] == 2
    extra = [s for s in results["steps"] if s["name"] in workers["steps"]]
    assert [s["name"].rsplit("=", 1)[1] for s in extra] == ["1", "1", "2", "2"]
    assert {s["kind"] for s in extra} == {"mix", "reject"}
    assert all(s["errors"] == 0 for s in extra), extra
    # One-second steps: on a loaded machine a COMPLETED call may outlast one; refusals never do.
    assert all(s["ok"] > 0 for s in extra if s["kind"] == "reject"), extra
    assert set(workers["watchers"]) == {"1", "2"}

    # ghz (installed by `make tools`; missing, the rows say not_run and this fails loudly).
    for system in ("prgate", "baseline_b"):
        for row in results["ghz"][system].values():
            assert "not_run" not in row, row
            assert row["count"] > 0, row
    assert "FailedPrecondition" in results["ghz"]["prgate"]["reject_c64"]["status_codes"]

    restore = results["restore"]
    for who in ("processor", "gateway_read_model", "bare_consumer"):
        assert restore[who]["restored"] == restore["n"], restore
    stores = restore["state_stores"]
    for who in ("processor", "gateway"):
        assert stores[who]["cold"]["restored"] == restore["n"], stores
        assert stores[who]["cold"]["records_replayed"] >= restore["n"], stores
        # Warm: everything is in the store, nothing is read again.
        assert stores[who]["warm"]["restored"] == restore["n"], stores
        assert stores[who]["warm"]["records_replayed"] == 0, stores

    # Real gateway and processor processes on the same topic: in memory, store cold and warm.
    serving = results["serving"]
    assert serving["n"] == restore["n"]
    for who in ("gateway", "processor"):
        for phase in ("empty", "in_memory", "cold", "warm"):
            figures = serving[who][phase]
            assert _is_number(figures["seconds"]) and figures["seconds"] > 0, serving
            assert _is_number(figures["rss_mib"]) and figures["rss_mib"] > 0, serving
    processor = serving["processor"]
    assert processor["empty"]["records"] == 0, processor
    assert processor["in_memory"]["records"] == restore["n"], processor
    assert processor["cold"]["records"] == restore["n"], processor
    assert processor["warm"]["records"] == 0, processor  # the store had everything
    assert "gateway process, warm restart to SERVING (n=300)" in {
        t["target"] for t in results["targets"]
    }

    watchers = results["watchers"]
    assert watchers["subscribed"] == watchers["watchers"]
    assert watchers["versions_reaching_all"] == watchers["updates"]
    assert not math.isnan(watchers["all_watchers_ms"]["p99"])
    assert watchers["single"]["watchers"] == 1

    held = results["held"]
    assert len(held["waves"]) == 2 and _is_number(held["start_mib"])
    for wave in held["waves"]:
        assert sum(wave["codes"].values()) == held["wave_size"], wave
        assert _is_number(wave["peak_mib"]) and _is_number(wave["after_mib"])

    archive = results["archive"]
    assert archive["archive"]["records"] == archive["n"] == archive["bare_consumer"]["records"]
    assert archive["visible_ms"]["count"] > 0 and _is_number(archive["visible_ms"]["p99"])
    assert _is_number(archive["ratio"])

    targets = {t["target"] for t in results["targets"]}
    assert "archived records/s vs a bare consumer's read rate" in targets
    assert "round trip p50 at ~100/s vs Baseline A" in targets
    assert "broker CPU per command at ~100/s vs Baseline A" in targets
    assert all(t["met"] in (True, False, None) for t in results["targets"])
