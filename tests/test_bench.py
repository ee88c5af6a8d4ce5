"""scripts/bench.py: the machinery in its tiny ``--smoke`` mode, and its pure helpers.

The smoke run starts its own simulators and its own local Ray in a subprocess (a separate cluster from
the test session's), runs every phase with tiny counts and checks that the BENCH line carries every key
with a sane value. Figures are not asserted: the machine is shared and noisy (scripts/bench.py without
``--smoke`` measures them).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from actors.core.settings import TRANSPORTS
from scripts.bench.channels import ROLES
from scripts.bench.count import TickCounter, latency_edges_ms, latency_histogram, percentiles_ms
from scripts.bench.plots import png_size
from scripts.bench.report import REQUIRED_KEYS, targets
from tests.conftest import S, run_smoke

SMOKE_TIMEOUT_S = 240.0


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class TickCounterTests:
    def test_counts_in_order_ticks(self) -> None:
        c = TickCounter()
        for seq in (1, 2, 3):
            c.add("A", seq, float(seq))
        c.add_batch([SimpleNamespace(code="B", seq=7), SimpleNamespace(code="B", seq=8)], 4.0)
        r = c.result()
        assert (r["count"], r["gaps"], r["out_of_order"], r["codes"]) == (5, 0, 0, 2)
        assert r["tps"] == pytest.approx(4 / 3)  # the first tick opens the clock

    def test_gaps_and_out_of_order_are_counted_not_delivered(self) -> None:
        c = TickCounter()
        c.add_batch([SimpleNamespace(code="A", seq=s) for s in (1, 2, 5, 4, 6)], 1.0)
        r = c.result()
        assert (r["count"], r["gaps"], r["out_of_order"]) == (4, 2, 1)

    def test_percentiles(self) -> None:
        p = percentiles_ms(list(range(1_000_000, 101_000_000, 1_000_000)))  # 1..100 ms
        assert (p["p50_ms"], p["p99_ms"], p["max_ms"], p["samples"]) == (51.0, 100.0, 100.0, 100)
        assert percentiles_ms([])["samples"] == 0

    def test_latency_histogram_bins_every_sample(self) -> None:
        edges = latency_edges_ms()
        hist = latency_histogram([5_000, 10_000, 1_000_000, 1_050_000, 20_000_000_000])
        assert len(hist) == len(edges) + 1
        assert sum(hist) == 5
        assert (hist[0], hist[1], hist[-1]) == (1, 1, 1)  # below 10 us, [10 us, next edge), 10 s and over
        one_ms = next(i for i, edge in enumerate(edges) if edge >= 1.0)
        assert hist[one_ms + 1] == 2  # 1.0 and 1.05 ms share the bin that starts at 1 ms

    def test_a_result_with_latencies_carries_their_histogram(self) -> None:
        c = TickCounter()
        c.reset(record_latency=True)
        c.add("A", 1, 1.0)
        c.latency(0, 2_000_000)
        assert sum(c.result()["latency_hist"]) == 1
        assert "latency_hist" not in c.result(percentiles=False)
        c.reset()
        assert "latency_hist" not in c.result()  # no samples: no histogram


def test_a_figure_not_measured_meets_no_target() -> None:
    # A run that failed early has -1 for its figures: no ratio of two -1s may pass for a target met.
    out: dict[str, Any] = dict.fromkeys(REQUIRED_KEYS, -1.0)
    out |= {"bare_cpu_s_per_mtick": -1.0, "transport": "picows"}
    rows = targets(out)
    assert [met for *_, met in rows] == [False] * len(rows)
    ratio_rows = [row for row in rows if " / " in row[0]]
    assert len(ratio_rows) == 7
    assert all(value == "n/a" for _, value, _, _ in ratio_rows)
    # Measured, the same rows are judged on the figures.
    out |= {"tps": 120.0, "seed_tps": 10.0, "bare_tps": 100.0, "pipeline_tps": 130.0, "naive_tps": 1.0}
    out |= {"cpu_s_per_mtick": 4.0, "pipeline_cpu_s_per_mtick": 3.5}
    out |= {"p50_ms": 0.5, "pipeline_p50_ms": 0.3, "p99_ms": 0.7, "bare_p99_ms": 0.5, "idle_cpu_cores": 0.04}
    met = {name: ok for name, _, _, ok in targets(out)}
    assert met["tps / seed_tps"]
    assert met["tps / naive_tps"]
    assert met["tps / pipeline_tps"]  # 0.92x, at least 0.85x wanted
    assert not met["tps / bare_tps"]  # 1.2x, 1.3x wanted
    assert met["cpu_s_per_mtick / pipeline_cpu_s_per_mtick"]  # 1.14x, at most 1.2x wanted
    assert not met["p50_ms / pipeline_p50_ms"]  # 1.67x, at most 1.3x wanted
    assert met["p99_ms / bare_p99_ms"]  # 1.4x, at most 1.5x wanted
    assert met["idle_cpu_cores"]


@pytest.mark.timeout(SMOKE_TIMEOUT_S * S + 30)
def test_smoke_run_reports_every_key(tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    bench, lines = run_smoke(["scripts/bench.py"], "BENCH", SMOKE_TIMEOUT_S * S, ["--plots", str(plots)])
    for key in REQUIRED_KEYS:
        assert key in bench, key
        assert number(bench[key]), f"{key} = {bench[key]!r}"
        assert bench[key] >= 0, f"{key} = {bench[key]!r}"
    for key, value in bench.items():
        # A mapping's values are figures as well (stage_us_per_tick).
        for leaf in value.values() if isinstance(value, dict) else [value]:
            assert isinstance(leaf, bool | str) or (number(leaf) and leaf >= 0), f"{key} = {value!r}"
    assert isinstance(bench["order_ok"], bool)
    assert bench["transport"] in TRANSPORTS  # the BENCH line names the transport tickvisor read with
    assert isinstance(bench["latency_exact"], bool)
    assert bench["seed_detect_s"] == 22.5
    assert bench["deadline_s"] > 0
    # 4 connections bursting at once: the job opened 4 connections, each with its own decoder worker.
    assert bench["burst4_connections"] == 4
    assert bench["burst4_decoders"] >= 4
    assert bench["burst4_ticks"] > 0
    # The Ray-free pipeline ran beside tickvisor, at both paces (its order counts in order_ok).
    for key in ("pipeline_tps", "pipeline_p50_ms", "pipeline_p99_ms", "pipeline_low_p50_ms"):
        assert number(bench.get(key)), f"{key} = {bench.get(key)!r}"
        assert bench[key] > 0, f"{key} = {bench.get(key)!r}"
    assert any(line.startswith("| Ray-free pipeline:") for line in lines)
    # And the same pipeline fused (two processes, the receiver decoding): the floor of one hop less.
    for key in ("fused_pipeline_tps", "fused_pipeline_p50_ms", "fused_pipeline_p99_ms"):
        assert number(bench.get(key)), f"{key} = {bench.get(key)!r}"
        assert bench[key] > 0, f"{key} = {bench.get(key)!r}"
    assert number(bench.get("fused_pipeline_cpu_s_per_mtick"))
    # CPU per tick at the paced rate too (a few ticks a batch: the wake-ups per batch count).
    for key in (
        "paced_cpu_s_per_mtick",
        "pipeline_paced_cpu_s_per_mtick",
        "fused_pipeline_paced_cpu_s_per_mtick",
    ):
        assert number(bench.get(key)), f"{key} = {bench.get(key)!r}"
    assert any(line.startswith("| the same, fused") for line in lines)
    # CPU per stage, tickvisor's and the pipeline's: a number each (>= 0 above; a smoke burst lasts a few
    # clock ticks of the CPU counters, so one may read 0).
    stages = ("connection", "decoder", "strategy", "rest", "pipeline", *(f"pipeline_{r}" for r in ROLES))
    for stage in stages:
        assert number(bench.get(f"{stage}_cpu_s_per_mtick")), stage
    # Per stage in microseconds per tick (the same figures), and the single connection's ceiling they imply.
    assert sorted(bench["stage_us_per_tick"]) == ["connection", "decoder", "other", "strategy"]
    assert bench["stage_us_per_tick"]["decoder"] == bench["decoder_cpu_s_per_mtick"]
    assert bench["stage_us_per_tick"]["other"] == bench["rest_cpu_s_per_mtick"]
    assert number(bench.get("ceiling_tps"))
    assert any(line.startswith("| CPU us per tick by stage |") for line in lines)
    # Both bare clients were timed at the paced rate, beside tickvisor and the pipeline.
    for key in ("bare_picows_p50_ms", "bare_picows_p99_ms"):
        assert number(bench.get(key)), f"{key} = {bench.get(key)!r}"
        assert bench[key] > 0, f"{key} = {bench.get(key)!r}"
    # --plots: every figure written as a PNG with a picture in it.
    for name in ("latency_cdf.png", "throughput_cpu.png", "stages.png"):
        width, height = png_size(plots / name)
        assert width > 0, name
        assert height > 0, name
    # What the job costs while no tick flows: measured (a Ray job's processes never idle at zero).
    assert number(bench.get("idle_cpu_cores"))
    assert bench["idle_cpu_cores"] > 0
    assert any("idle (no tick flowing)" in line for line in lines)
    # The table comes first: a markdown header row with every consumer.
    assert any(line.startswith("| figure | tickvisor | seed | bare | naive |") for line in lines)


def test_the_cpu_meter_never_goes_back_when_a_process_exits() -> None:
    import subprocess
    import sys

    from scripts.bench.harness import CpuMeter, cpu_seconds

    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ninput()",
        ],
        stdin=subprocess.PIPE,
    )
    meter = CpuMeter([busy.pid])
    while meter() < 0.2:
        pass
    seen = meter()
    busy.communicate(b"\n")  # it exits
    assert cpu_seconds([busy.pid]) == 0.0  # gone: the plain sum loses it
    assert meter() == seen  # the meter keeps what it last saw
