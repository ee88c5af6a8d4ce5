"""The benchmarks as pictures: PNGs drawn with matplotlib from the figures the runs already report.

* ``bench_plots``: scripts/bench.py ``--plots DIR``: ``latency_cdf.png`` (the latency distribution at the
  paced rate, tickvisor beside the Ray-free pipeline and the bare clients), ``throughput_cpu.png``
  (throughput and CPU per million ticks per client) and ``stages.png`` (CPU per tick per stage of the
  data path, with the ceiling it implies);
* ``scale_plot``: scripts/bench_scale.py ``--plots DIR``: ``scale.png``, throughput against connections;
* ``soak_plot``: scripts/soak.py ``--plots DIR``: ``soak.png``, delivered ticks over time with the fault
  windows shaded by kind.

Each takes the dict its run reports (the BENCH / SCALE / SOAK JSON, plus the latency histograms of
scripts/bench/count.py) and writes files; nothing is measured here. matplotlib is imported only when a
plot is drawn, with the Agg backend (no display).
"""

from __future__ import annotations

import itertools
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scripts.bench.count import latency_edges_ms

if TYPE_CHECKING:
    from collections.abc import Callable

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["bench_plots", "plot_report", "png_size", "scale_plot", "soak_plot", "soak_sample", "soak_series"]

#: The latency plot's consumers: (name in ``latency_hist``, prefix of its percentiles in the BENCH line,
#: label).
LATENCY_CONSUMERS = (
    ("tickvisor", "", "tickvisor"),
    ("pipeline", "pipeline_", "Ray-free pipeline"),
    ("fused", "fused_pipeline_", "Ray-free pipeline, fused (2 processes)"),
    ("bare", "bare_", "bare websockets client"),
    ("bare_picows", "bare_picows_", "bare picows client"),
)
#: The throughput plot's consumers: (BENCH key prefix, label).
CLIENTS = (
    ("", "tickvisor"),
    ("pipeline_", "Ray-free\npipeline"),
    ("bare_", "bare\nwebsockets"),
    ("bare_picows_", "bare\npicows"),
    ("seed_", "seed\ndesign"),
    ("naive_", "naive\n(Ray call/tick)"),
)
#: The stages of tickvisor's data path and the pipeline's process doing the same work (None: none does).
STAGES = (
    ("connection", "receiver", "connection\n(socket read)"),
    ("decoder", "decoder", "decoder"),
    ("strategy", "strategy", "strategy"),
    ("other", None, "other: Ray, supervision\n(off the ticks' path,\nnot in the ceiling)"),
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _figure(width: float = 9.0, height: float = 5.0, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    return fig, list(axes[0])


def _save(fig: Figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def _measured(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


# --- scripts/bench.py ----------------------------------------------------------------------------------


def bench_plots(out: dict[str, Any], latency_hist: dict[str, list[int]], directory: Path) -> list[Path]:
    """Write the benchmark's three PNGs into ``directory``; returns their paths.

    Args:
        out: the BENCH line's figures.
        latency_hist: per consumer of ``LATENCY_CONSUMERS`` (by name), the histogram of its latencies
            at the paced rate (scripts/bench/count.py ``latency_histogram``).
        directory: created if missing.

    """
    return [
        latency_cdf(out, latency_hist, directory / "latency_cdf.png"),
        throughput_cpu(out, directory / "throughput_cpu.png"),
        stages(out, directory / "stages.png"),
    ]


def latency_cdf(out: dict[str, Any], latency_hist: dict[str, list[int]], path: Path) -> Path:
    """The share of ticks delivered within x ms, per consumer, on a log x axis."""
    edges = latency_edges_ms()
    fig, (ax,) = _figure()
    seen: list[float] = []  # the x of every curve's first tick and of its last
    for name, prefix, label in LATENCY_CONSUMERS:
        counts = latency_hist.get(name)
        if not counts or not sum(counts):
            continue
        total = sum(counts)
        # A bin's ticks are within its upper edge; those below the first edge within it, those above
        # the last at it.
        xs = [edges[0], *edges, edges[-1]]
        running, ys = 0, []
        for count in counts:
            running += count
            ys.append(running / total)
        p50, p99 = out.get(f"{prefix}p50_ms"), out.get(f"{prefix}p99_ms")
        shown = f" (p50 {p50:.2f} ms, p99 {p99:.2f} ms)" if _measured(p50) and _measured(p99) else ""
        ax.step(xs[1:], ys, where="post", label=f"{label}{shown}, {total:,} ticks")
        seen += [xs[1 + next(i for i, y in enumerate(ys) if y > 0)], xs[1 + ys.index(1.0)]]
    for share in (0.5, 0.99):
        ax.axhline(share, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    if seen:
        ax.set_xlim(min(seen) / 2, max(seen) * 2)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency, simulator send to strategy (ms, log scale)")
    ax.set_ylabel("share of ticks delivered within x")
    rate = out.get("latency_rate", 0)
    ax.set_title(f"Latency at a paced {rate:,.0f} ticks/s (one connection, 100 codes)")
    ax.grid(visible=True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def _thousands(ax: Axes) -> None:
    from matplotlib.ticker import StrMethodFormatter

    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))


def _bars(ax: Axes, labels: list[str], values: list[float], fmt: str) -> None:
    colors = ["tab:blue" if i == 0 else "tab:gray" for i in range(len(labels))]
    bars = ax.bar(labels, [max(v, 0.0) for v in values], color=colors)
    for bar, value in zip(bars, values, strict=True):
        text = format(value, fmt) if value > 0 else "n/a"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")
    ax.tick_params(axis="x", labelsize="small")
    ax.margins(y=0.15)


def throughput_cpu(out: dict[str, Any], path: Path) -> Path:
    """Throughput (ticks/s) and CPU seconds per million ticks per client, side by side."""
    fig, (left, right) = _figure(width=12.0, ncols=2)
    tps = [(label, float(out.get(f"{prefix}tps", -1.0))) for prefix, label in CLIENTS]
    _bars(left, [label for label, _ in tps], [value for _, value in tps], ",.0f")
    left.set_ylabel("ticks per second")
    _thousands(left)
    left.set_title(f"Throughput, a burst of {out.get('burst', 0):,} ticks on one connection")
    cpu = [(label, float(out.get(f"{prefix}cpu_s_per_mtick", -1.0))) for prefix, label in CLIENTS[:-1]]
    _bars(right, [label for label, _ in cpu], [value for _, value in cpu], ".1f")
    right.set_ylabel("CPU seconds per million ticks (all processes)")
    right.set_title("CPU per tick over the same burst (lower is better)")
    fig.suptitle(f"tickvisor ({out.get('transport', '?')}) beside its baselines, {out.get('mode', '?')} run")
    return _save(fig, path)


def stages(out: dict[str, Any], path: Path) -> Path:
    """CPU microseconds per tick per stage, tickvisor's beside the Ray-free pipeline's process."""
    import numpy as np

    stage_us = out.get("stage_us_per_tick") or {}
    fig, (ax,) = _figure()
    x = np.arange(len(STAGES))
    ours = [float(stage_us.get(stage, 0.0)) for stage, _, _ in STAGES]
    floor = [
        float(out.get(f"pipeline_{role}_cpu_s_per_mtick", 0.0)) if role else 0.0 for _, role, _ in STAGES
    ]
    width = 0.38
    for offset, values, label, color in (
        (-width / 2, ours, "tickvisor", "tab:blue"),
        (width / 2, floor, "Ray-free pipeline (its process for the stage)", "tab:gray"),
    ):
        bars = ax.bar(x + offset, values, width, label=label, color=color)
        for bar, value, (_, role, _) in zip(bars, values, STAGES, strict=True):
            if color == "tab:gray" and role is None:
                continue  # the pipeline has no such process
            at = (bar.get_x() + bar.get_width() / 2, bar.get_height())
            ax.annotate(f"{value:.2f}", at, ha="center", va="bottom")
    ax.set_xticks(x, [label for *_, label in STAGES])
    ax.set_ylabel("CPU microseconds per tick")
    ax.margins(y=0.15)
    ceiling = out.get("ceiling_tps", 0.0)
    path_us = {stage: us for stage, us in stage_us.items() if stage != "other"}
    busiest = max(path_us.items(), key=lambda item: float(item[1]), default=("", 0.0))[0]
    note = (
        f"ceiling with a core per stage: {ceiling:,.0f} ticks/s (busiest: {busiest})"
        if _measured(ceiling)
        else "ceiling: not measured"
    )
    ax.set_title(f"CPU per tick by stage during the throughput burst\n{note}")
    ax.legend(fontsize="small")
    return _save(fig, path)


# --- scripts/bench_scale.py ----------------------------------------------------------------------------


def scale_plot(report: dict[str, Any], directory: Path) -> Path:
    """Ticks per second at the strategy against connections, one line per codes per connection."""
    fig, (ax,) = _figure()
    runs = report.get("runs", [])
    for per_conn in sorted({r["codes_per_connection"] for r in runs}):
        mine = sorted(
            (r for r in runs if r["codes_per_connection"] == per_conn), key=lambda r: r["connections"]
        )
        conns = [r["connections"] for r in mine]
        line = ax.plot(
            conns, [r["ticks_per_s"] for r in mine], marker="o", label=f"{per_conn} codes/connection"
        )
        ax.plot(
            conns,
            [r["offered_per_s"] for r in mine],
            linestyle="--",
            marker="x",
            color=line[0].get_color(),
            alpha=0.6,
            label=f"{per_conn} codes/connection: offered",
        )
    two = report.get("two_tokens", [])
    if two:
        ax.scatter(
            [r["connections"] for r in two],
            [r["ticks_per_s"] for r in two],
            marker="*",
            s=150,
            color="black",
            label="two tokens ("
            + ", ".join(f"{r['codes_per_connection']}x{r['connections']}" for r in two)
            + ")",
            zorder=3,
        )
    every = [*runs, *two]
    ax.set_xticks(sorted({r["connections"] for r in every}))
    rates = [r[key] for r in every for key in ("ticks_per_s", "offered_per_s") if r.get(key, 0) > 0]
    if rates and max(rates) > 50 * min(rates):  # the full grid spans decades: a log axis shows them all
        ax.set_yscale("log")
        ax.set_ylabel("ticks per second at the strategy (log scale)")
    else:
        ax.set_ylim(0, max(rates, default=1.0) * 1.15)
        ax.set_ylabel("ticks per second at the strategy")
    ax.set_xlabel("connections per endpoint")
    ax.set_title(
        f"Throughput against connections (simulator at {report.get('tick_rate', 0):g} ticks/s per code)"
    )
    ax.grid(visible=True, alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, directory / "scale.png")


# --- scripts/soak.py -----------------------------------------------------------------------------------

SOAK_SAMPLE_EVERY_S = 1.0


def soak_sample(timeline: list[tuple[float, int]], now: float, delivered: int) -> None:
    """Append (``now``, ``delivered``) to the soak's timeline unless its last sample is under
    ``SOAK_SAMPLE_EVERY_S`` old: the soak calls this each time it drains the checker.
    """
    if not timeline or now - timeline[-1][0] >= SOAK_SAMPLE_EVERY_S:
        timeline.append((now, delivered))


def soak_series(timeline: list[tuple[float, int]], faults: list[Any]) -> dict[str, Any]:
    """The SOAK JSON's ``timeline`` and ``windows`` (``soak_plot`` reads them), in seconds since the first
    sample: ``faults`` have ``kind``, ``injected`` and ``recovered`` (``time.time()``, or None).
    """
    t0 = timeline[0][0] if timeline else 0.0
    return {
        "timeline": [[round(t - t0, 2), n] for t, n in timeline],
        "windows": [
            [f.kind, round(f.injected - t0, 2), None if f.recovered is None else round(f.recovered - t0, 2)]
            for f in faults
        ],
    }


def plot_report(
    draw: Callable[[dict[str, Any], Path], Path], report: dict[str, Any], directory: Path
) -> None:
    """``draw(report, directory)`` for a ``--plots`` option (``scale_plot``, ``soak_plot``): the path on
    stderr; a failure marks ``report`` not ok (``plots_error`` says why), as any broken part of the run
    does, so the SCALE / SOAK line and the exit code tell it.
    """
    import sys

    try:
        sys.stderr.write(f"plot: {draw(report, directory)}\n")
    except Exception as exc:  # noqa: BLE001 - reported in the report's JSON line, exit code 1
        report["ok"] = False
        report["plots_error"] = f"{type(exc).__name__}: {exc}"


def soak_plot(report: dict[str, Any], directory: Path) -> Path:
    """Delivered ticks per second over the soak, each fault's window shaded in its kind's colour.

    ``report`` is the SOAK JSON: ``timeline``, [[seconds since the start, ticks delivered so far], ...],
    and ``windows``, [[kind, injected s, recovered s or null], ...] on the same clock.
    """
    import matplotlib as mpl

    fig, (ax,) = _figure(width=12.0)
    timeline = report.get("timeline", [])
    times = [t for t, _ in timeline]
    rates = [(n1 - n0) / (t1 - t0) if t1 > t0 else 0.0 for (t0, n0), (t1, n1) in itertools.pairwise(timeline)]
    if rates:
        ax.step(
            times[1:], rates, where="pre", color="black", linewidth=1.0, label="ticks delivered per second"
        )
    end = times[-1] if times else 0.0
    kinds = sorted({w[0] for w in report.get("windows", [])})
    cmap = mpl.colormaps["tab20"]
    # tab20 pairs a dark and a light shade of each hue: the ten dark ones first, then the light ones.
    colors = {kind: cmap((2 * i) % 20 + (2 * i // 20) % 2) for i, kind in enumerate(kinds)}
    labelled: set[str] = set()
    for kind, start, stop in report.get("windows", []):
        ax.axvspan(
            start,
            stop if stop is not None else end,
            color=colors[kind],
            alpha=0.5,
            label=None if kind in labelled else kind,
        )
        labelled.add(kind)
    ax.set_xlabel("time since the job started (s)")
    ax.set_ylabel("ticks delivered per second")
    verdict = "every invariant held" if report.get("ok") else "FAILED"
    ax.set_title(
        f"Soak, seed {report.get('seed', '?')}: {len(report.get('windows', []))} faults, "
        f"{report.get('delivered', 0):,} ticks delivered; {verdict}"
    )
    ax.set_ylim(bottom=0)
    ax.grid(visible=True, alpha=0.3)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
        title="shaded: a fault,\ninjection to recovery",
        title_fontsize="small",
    )
    return _save(fig, directory / "soak.png")


# --- checking the files --------------------------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; raises ``ValueError`` if the file is not a PNG."""
    head = path.read_bytes()[:24]
    if len(head) < 24 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG file (no PNG signature and IHDR chunk); write it again")
    width, height = struct.unpack(">II", head[16:24])
    return width, height
