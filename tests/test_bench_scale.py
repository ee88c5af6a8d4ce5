"""scripts/bench_scale.py (scripts/bench/scale.py) in its smoke mode: it runs, every code flows, and the
report has every key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.bench.plots import png_size
from tests.conftest import S, run_smoke

pytestmark = [pytest.mark.ray]


@pytest.mark.timeout(900)
def test_smoke_run_reports_every_key(tmp_path: Path) -> None:
    report, _ = run_smoke(["scripts/bench_scale.py"], "SCALE", 600 * S, ["--plots", str(tmp_path)])
    assert [(r["codes_per_connection"], r["connections"]) for r in report["runs"]] == [(5, 2)]
    assert [(r["codes_per_connection"], r["connections"], r["tokens"]) for r in report["two_tokens"]] == [
        (5, 2, 2)
    ]
    for run in [*report["runs"], *report["two_tokens"]]:
        assert run["all_flowing"]
        assert run["subscribed_s"] >= 0
        assert run["ticks_per_s"] > 0
        assert run["rss_mb"] > 0
        # Every socket dropped at once: every code ticked again from a new socket, no sooner than the
        # pacing allows (the simulator enforces it: a faster figure would mean old ticks were counted).
        assert run["all_reflowing"]
        assert run["resubscribed_s"] > 0
        assert run["resubscribed_s"] >= run["reconnect_bound_s"]
        assert run["reconnect_s"] >= run["reconnect_bound_s"]
    for run in report["runs"]:  # one token: N requests 3 s apart
        assert run["bound_s"] == 3.0 * (run["connections"] - 1)
        assert run["reconnect_bound_s"] == run["bound_s"]
    # Two tokens of one connection each are paced apart: no gap to wait for.
    assert report["two_tokens"][0]["bound_s"] == 0.0
    # --plots: scale.png written, a PNG with a picture in it.
    width, height = png_size(tmp_path / "scale.png")
    assert width > 0
    assert height > 0
