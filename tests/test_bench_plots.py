"""scripts/bench/plots.py without a run: the soak's timeline and windows, and its plot from a small
synthetic report (the bench and scale plots are drawn by their smoke runs, tests/test_bench.py and
tests/test_bench_scale.py).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from scripts.bench.plots import plot_report, png_size, soak_plot, soak_sample, soak_series


def test_the_soak_timeline_keeps_one_sample_a_second() -> None:
    timeline: list[tuple[float, int]] = []
    for i, now in enumerate((100.0, 100.25, 100.5, 101.0, 101.2, 102.5)):
        soak_sample(timeline, now, i * 10)
    assert timeline == [(100.0, 0), (101.0, 30), (102.5, 50)]


def test_the_soak_series_is_in_seconds_since_the_first_sample() -> None:
    faults = [
        SimpleNamespace(kind="stall", injected=102.0, recovered=104.5),
        SimpleNamespace(kind="kill:registry", injected=106.0, recovered=None),
    ]
    series = soak_series([(100.0, 0), (101.0, 30)], faults)
    assert series == {
        "timeline": [[0.0, 0], [1.0, 30]],
        "windows": [["stall", 2.0, 4.5], ["kill:registry", 6.0, None]],
    }
    assert soak_series([], []) == {"timeline": [], "windows": []}


def test_the_soak_plot_is_a_png(tmp_path: Path) -> None:
    report = {
        "ok": True,
        "seed": 7,
        "delivered": 600,
        "timeline": [[float(t), 60 * t - (20 if t >= 4 else 0)] for t in range(11)],
        "windows": [["stall", 3.0, 4.5], ["kill:connection", 6.0, 7.0], ["stall", 8.0, None]],
    }
    width, height = png_size(soak_plot(report, tmp_path))
    assert width > 0
    assert height > 0


def test_a_soak_plot_that_fails_fails_the_report(tmp_path: Path) -> None:
    in_the_way = tmp_path / "file"
    in_the_way.write_text("")
    result = {"ok": True, "timeline": [[0.0, 0], [1.0, 5]], "windows": []}
    plot_report(soak_plot, result, in_the_way / "plots")  # a directory under a file: cannot be made
    assert result["ok"] is False
    assert "plots_error" in result


def test_png_size_rejects_a_file_that_is_not_a_png(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(b"GIF89a" + bytes(30))
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(path)
