"""scripts/bench_scale.py in its smoke mode: it runs, every code flows, and the report has every key."""

from __future__ import annotations

import pytest

from tests.conftest import S, run_smoke

pytestmark = [pytest.mark.ray]


@pytest.mark.timeout(900)
def test_smoke_run_reports_every_key() -> None:
    report, _ = run_smoke("bench_scale.py", "SCALE", 600 * S)
    assert [(r["codes_per_connection"], r["connections"]) for r in report["runs"]] == [(5, 1), (5, 2)]
    for run in report["runs"]:
        assert run["all_flowing"]
        assert run["subscribed_s"] >= 0
        assert run["bound_s"] == 3.0 * (run["connections"] - 1)
        assert run["ticks_per_s"] > 0
        assert run["rss_mb"] > 0
