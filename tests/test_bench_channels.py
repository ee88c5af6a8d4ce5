"""scripts/bench/channels.py: every variant, in its tiny ``--smoke`` mode, delivers every tick in order.

A correctness check of the machinery, not of speed: the smoke run starts its own simulator, the two
baseline clients and one three-process pipeline per variant (no Ray), bursts a few thousand ticks through
each, and its BENCH_CHANNELS line must show every tick delivered, in per-code order, for every variant.
The figures are not asserted: the machine is shared and noisy (``--quick`` or the default mode measures).
"""

from __future__ import annotations

import pytest

from scripts.bench.channels import BASELINES, CHANNELS, RECEIVERS
from tests.conftest import S, run_smoke

SMOKE_TIMEOUT_S = 150.0


@pytest.mark.timeout(SMOKE_TIMEOUT_S * S + 30)
def test_smoke_run_delivers_every_tick_in_order_through_every_variant() -> None:
    bench, lines = run_smoke(["-m", "scripts.bench.channels"], "BENCH_CHANNELS", SMOKE_TIMEOUT_S * S)

    variants = [*BASELINES, *(f"{r}/{c}" for r in RECEIVERS for c in CHANNELS)]
    assert sorted(bench["figures"]) == sorted(variants)
    for name in variants:
        figures = bench["figures"][name]
        # Every measurement (the burst, then the two paced ones) delivered exactly its count, in order.
        assert figures["delivered"] == bench["expected"], name
        assert figures["order_ok"] is True, name
        assert figures["tps"] > 0, name
    # The table comes first: a markdown header row, then a row per variant.
    assert any(line.startswith("| variant | ticks/s | x bare |") for line in lines)
    assert sum(line.startswith("| ") for line in lines) == len(variants) + 2
