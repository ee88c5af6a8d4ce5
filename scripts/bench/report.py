"""The report of scripts/bench.py: the markdown table, the targets of the benchmark issue, the BENCH line.

``write`` prints the table and then, as the very last line of stdout, ``BENCH {json}``: every figure
the phases put in ``out`` (-1 for a required one that was not measured), the targets met and ``ok``.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scripts.bench.modes import Mode

#: Every key of the BENCH line that the issue asks for.
REQUIRED_KEYS = (
    "tps",
    "seed_tps",
    "bare_tps",
    "bare_picows_tps",
    "naive_tps",
    "p50_ms",
    "p99_ms",
    "stall_detect_s",
    "stall_resubscribed_s",
    "deadline_s",
    "seed_detect_s",
    "churn_max_req_per_conn_s",
    "churn_429",
    "churn_converged_s",
    "churn_mismatch",
    "kill_conn_recover_s",
    "kill_registry_recover_s",
    "kill_lost_subscriptions",
    "cpu_s_per_mtick",
    "rss_mb",
    "burst4_tps",
    "burst4_cpu_s_per_mtick",
    "replay_tps_jsonl",
    "replay_tps_parquet",
)


#: Upper bounds: latency from the data-path issue (13), the rest from the benchmark issue: (key,
#: bound, value format); a missing key counts as missed.
UPPER_BOUNDS: list[tuple[str, float, str]] = [
    ("p50_ms", 1, ".2f"),
    ("p99_ms", 2, ".2f"),
    ("low_p50_ms", 0.5, ".2f"),
    ("churn_429", 0, "d"),
    ("churn_max_req_per_conn_s", 1, "d"),
    ("churn_converged_s", 1.5, ".2f"),
    ("churn_mismatch", 0, "d"),
    ("kill_conn_recover_s", 2.5, ".2f"),
    ("kill_registry_recover_s", 2.5, ".2f"),
    ("kill_lost_subscriptions", 0, "d"),
]
LATENCY_BOUNDS = 3  # the first entries of UPPER_BOUNDS
#: The idle job's CPU (issue 29); docs/performance-idle.md says where it goes and why ~0.07 is the floor.
IDLE_CORES = 0.05
#: Lower bounds from the user-project issue (27, item 5): ``tickvisor replay --speed max`` of a tape.
LOWER_BOUNDS: list[tuple[str, float]] = [("replay_tps_parquet", 1_000_000), ("replay_tps_jsonl", 300_000)]


def ratios(transport: str) -> list[tuple[str, float, str, str]]:
    """Throughput ratios: (tickvisor over this baseline) at least (factor), shown with (format) and
    (suffix). The last data-path issue's (29) bars: 0.85 x the Ray-free pipeline measured in the same run
    and, with picows, still 1.3 x the bare websockets client (with websockets: 1 x); the seed's design and
    one Ray call per tick from the benchmark issue.
    """
    bare = 1.0 if transport == "websockets" else 1.3
    return [
        ("seed_tps", 6, ".1f", "x"),
        ("pipeline_tps", 0.85, ".2f", "x"),
        ("bare_tps", bare, ".2f", "x"),
        ("naive_tps", 40, ".1f", "x"),
    ]


#: (figure, baseline, at most this many times the baseline): CPU per tick and latency against the
#: Ray-free pipeline and the bare websockets client of the same run (issue 29).
RELATIVE_BOUNDS: list[tuple[str, str, float]] = [
    ("cpu_s_per_mtick", "pipeline_cpu_s_per_mtick", 1.2),
    ("p50_ms", "pipeline_p50_ms", 1.3),
    ("p99_ms", "bare_p99_ms", 1.5),
]


def measured(r: dict[str, Any], *keys: str) -> bool:
    """Whether every figure named was measured: a positive number (-1 stands for one that was not)."""
    return all(isinstance(r.get(key), int | float) and r[key] > 0 for key in keys)


def times(r: dict[str, Any], a: str, b: str, spec: str = ".2f") -> str:
    """Figure ``a`` over figure ``b``, e.g. ``1.23x``; ``n/a`` unless both were measured."""
    return f"{r[a] / r[b]:{spec}}x" if measured(r, a, b) else "n/a"


def targets(r: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(figure, value, target, met) rows of the table."""
    g = r.get
    rows = [
        (
            f"tps / {base}",
            times(r, "tps", base, spec),
            f">= {factor:g}{suffix}",
            measured(r, "tps", base) and r["tps"] >= factor * r[base],
        )
        for base, factor, spec, suffix in ratios(g("transport", "picows"))
    ]
    rows += [
        (
            f"{key} / {base}",
            times(r, key, base),
            f"<= {bound:g}x",
            measured(r, key, base) and r[key] / r[base] <= bound,
        )
        for key, base, bound in RELATIVE_BOUNDS
    ]
    for key, bound, spec in UPPER_BOUNDS[:LATENCY_BOUNDS]:
        rows.append((key, f"{g(key, -1):{spec}}", f"<= {bound:g}", 0 <= g(key, -1) <= bound))
    deadline = g("deadline_s", 0) + 1.5
    rows.append(
        (
            "stall_resubscribed_s",
            f"{g('stall_resubscribed_s', -1):.2f}",
            f"<= deadline + 1.5 = {deadline:.1f}",
            0 <= g("stall_resubscribed_s", -1) <= deadline,
        )
    )
    for key, bound, spec in UPPER_BOUNDS[LATENCY_BOUNDS:]:
        value = g(key, -1)
        shown = f"{value:{spec}}" if spec != "d" else f"{value}"
        rows.append((key, shown, f"= {bound:g}" if bound == 0 else f"<= {bound:g}", 0 <= value <= bound))
    rows += [
        (key, f"{g(key, -1):,.0f}", f">= {bound:,.0f}", g(key, -1) >= bound) for key, bound in LOWER_BOUNDS
    ]
    idle = g("idle_cpu_cores", -1)
    rows.append(("idle_cpu_cores", f"{idle:.2f}", f"<= {IDLE_CORES:g}", 0 <= idle <= IDLE_CORES))
    return rows


def table(r: dict[str, Any], mode: Mode) -> str:
    """The markdown report."""
    g = r.get

    def f(key: str, spec: str = ".2f") -> str:
        value = g(key)
        return "n/a" if value is None else format(value, spec) if isinstance(value, float) else str(value)

    def row(*cells: str) -> str:
        return "| " + " | ".join(cells) + " |"

    def pair(a: str, b: str, spec: str = ".2f") -> str:
        return f"{f(a, spec)} / {f(b, spec)}"

    lines = [
        (
            f"## tickvisor benchmark ({mode.name}: bursts of {mode.burst} ticks over 100 codes on one "
            f"connection, {mode.rounds} round(s), median)"
        ),
        "",
        row("figure", "tickvisor", "seed", "bare", "naive", "note"),
        row("---", "---:", "---:", "---:", "---:", "---"),
        row(
            "ticks/s",
            f("tps", ".0f"),
            f("seed_tps", ".0f"),
            f("bare_tps", ".0f"),
            f("naive_tps", ".0f"),
            f"tickvisor reads with {f('transport')}; bare picows {f('bare_picows_tps', '.0f')}/s; simulator "
            f"delivers {f('sim_fps', '.0f')}/s to a header-only reader; naive over {f('naive_ticks')} ticks",
        ),
        row(
            "CPU s per Mtick",
            f("cpu_s_per_mtick", ".1f"),
            f("seed_cpu_s_per_mtick", ".1f"),
            f("bare_cpu_s_per_mtick", ".1f"),
            "",
            f"tickvisor: every process of the job; baselines: their one (bare picows "
            f"{f('bare_picows_cpu_s_per_mtick', '.1f')}); per stage from the injection: connection "
            f"{f('connection_cpu_s_per_mtick', '.1f')}, decoder {f('decoder_cpu_s_per_mtick', '.1f')}, "
            f"strategy {f('strategy_cpu_s_per_mtick', '.1f')}, the job's other processes "
            f"{f('rest_cpu_s_per_mtick', '.1f')} "
            f"(Ray-free pipeline: {f('pipeline_receiver_cpu_s_per_mtick', '.1f')}, "
            f"{f('pipeline_decoder_cpu_s_per_mtick', '.1f')}, "
            f"{f('pipeline_strategy_cpu_s_per_mtick', '.1f')})",
        ),
        row(
            "CPU us per tick by stage",
            ", ".join(f"{name} {us:.2f}" for name, us in (g("stage_us_per_tick") or {}).items()) or "n/a",
            "",
            "",
            "",
            f"ceiling of one connection with a core per stage: {f('ceiling_tps', ',.0f')} ticks/s "
            "(1e6 / the busiest stage's us per tick)",
        ),
        row(
            f"latency p50 / p99 ms @ {mode.latency_rate:.0f}/s",
            pair("p50_ms", "p99_ms"),
            "",
            pair("bare_p50_ms", "bare_p99_ms"),
            "",
            f"tickvisor exact: {f('latency_exact')}; bare picows "
            f"{pair('bare_picows_p50_ms', 'bare_picows_p99_ms')}; connection read to strategy "
            f"{pair('read_p50_ms', 'read_p99_ms')}; delivered {f('latency_tps', '.0f')}/s; CPU s per Mtick "
            f"at this pace {f('paced_cpu_s_per_mtick', '.1f')} (the whole job; pipeline "
            f"{f('pipeline_paced_cpu_s_per_mtick', '.1f')}, fused "
            f"{f('fused_pipeline_paced_cpu_s_per_mtick', '.1f')})",
        ),
        row(
            f"latency p50 / p99 ms @ {f('low_rate', '.0f')}/s",
            pair("low_p50_ms", "low_p99_ms"),
            "",
            "",
            "",
            "",
        ),
        row(
            "stall detected / resubscribed s",
            pair("stall_detect_s", "stall_resubscribed_s"),
            f"{f('seed_detect_s', '.1f')} / -",
            "",
            "",
            f"deadline {f('deadline_s', '.1f')} s, {mode.stall_trials} trials, worst resubscribe "
            f"{f('stall_resubscribed_max_s')} s",
        ),
        row(
            "SIGKILL connection: flowing / in sync s",
            pair("kill_conn_recover_s", "kill_conn_in_sync_s"),
            "",
            "",
            "",
            f"Ray's new process reported in after {f('kill_conn_restarted_s')} s",
        ),
        row(
            "SIGKILL registry: flowing / in sync s",
            pair("kill_registry_recover_s", "kill_registry_in_sync_s"),
            "",
            "",
            "",
            f"new process after {f('kill_registry_restarted_s')} s; lost subscriptions (both "
            f"kills): {f('kill_lost_subscriptions')}",
        ),
        row(
            "churn",
            f"max {f('churn_max_req_per_conn_s')} req/conn/s, {f('churn_429')} x 429, converged "
            f"{f('churn_converged_s')} s, mismatch {f('churn_mismatch')}",
            "",
            "",
            "",
            f"{f('churn_ops')} ops, {f('churn_ops_per_s', '.0f')}/s of "
            f"{f('churn_ops_wanted_per_s', '.0f')}/s wanted, {f('churn_errors')} errors",
        ),
        row(
            "4 connections bursting at once: ticks/s, CPU s per Mtick",
            f"{f('burst4_tps', '.0f')}, {f('burst4_cpu_s_per_mtick', '.1f')}",
            "",
            f"picows 1 conn: {f('bare_picows_tps', '.0f')}",
            "",
            f"{f('burst4_ticks')} ticks over {f('burst4_connections')} connections and "
            f"{f('burst4_decoders')} decoders, in order: {f('burst4_order_ok')}; CPU s/Mtick connections "
            f"{f('burst4_connection_cpu_s_per_mtick', '.1f')}, decoders "
            f"{f('burst4_decoder_cpu_s_per_mtick', '.1f')} "
            f"(busiest / idlest {f('burst4_decoder_cpu_spread')}), strategy "
            f"{f('burst4_strategy_cpu_s_per_mtick', '.1f')}",
        ),
        row(
            "Ray-free pipeline: ticks/s, CPU s per Mtick, p50 / p99 ms",
            f"{f('pipeline_tps', '.0f')}, {f('pipeline_cpu_s_per_mtick', '.1f')}, "
            f"{pair('pipeline_p50_ms', 'pipeline_p99_ms')}",
            "",
            "",
            "",
            f"scripts/bench/channels.py's {f('transport')}/uds: three processes, decode_batch, no Ray, "
            f"checks or supervision; tickvisor over it: {times(r, 'tps', 'pipeline_tps')} ticks/s, "
            f"{times(r, 'cpu_s_per_mtick', 'pipeline_cpu_s_per_mtick')} CPU; its p50 @ "
            f"{f('low_rate', '.0f')}/s {f('pipeline_low_p50_ms')}",
        ),
        row(
            "the same, fused (decoding in its receiver): ticks/s, CPU s per Mtick, p50 / p99 ms",
            f"{f('fused_pipeline_tps', '.0f')}, {f('fused_pipeline_cpu_s_per_mtick', '.1f')}, "
            f"{pair('fused_pipeline_p50_ms', 'fused_pipeline_p99_ms')}",
            "",
            "",
            "",
            "two processes: what the decode in the connection actor's process would make the floor; "
            f"its p99 over bare websockets' {times(r, 'fused_pipeline_p99_ms', 'bare_p99_ms')} (the "
            f"three-process pipeline's {times(r, 'pipeline_p99_ms', 'bare_p99_ms')})",
        ),
        row(
            "memory",
            f"RSS {f('rss_mb', '.0f')} MB (PSS {f('pss_mb', '.0f')} MB), {f('job_processes')} processes; "
            f"idle (no tick flowing) {f('idle_cpu_cores')} of a core",
            "",
            "",
            "",
            "",
        ),
        "",
        row("target", "value", "wanted", "met"),
        row("---", "---:", "---", "---"),
    ]
    lines += [row(name, value, want, "yes" if met else "**no**") for name, value, want, met in targets(r)]
    lines.append(
        f"\norder checked: every consumer got every tick in per-code order without a gap: {f('order_ok')} "
        f"(tickvisor: {f('tickvisor_out_of_order_dropped')} ticks dropped by the strategy as out of order, "
        f"{f('tickvisor_missed')} dropped for slowness)"
    )
    return "\n".join(lines)


def write(out: dict[str, Any], mode: Mode, *, ok: bool, extra: str = "") -> None:
    """Complete ``out`` (-1 for each missing required key, the targets met, ``ok``) and print the report.

    The table comes first, then ``extra`` (``--profile``'s table), and ``BENCH {json}`` is the very last
    line of stdout.
    """
    for key in REQUIRED_KEYS:
        out.setdefault(key, -1.0)
    rows = targets(out)
    out["targets_met"] = sum(met for *_, met in rows)
    out["targets_total"] = len(rows)
    out["ok"] = ok
    sys.stdout.write(table(out, mode) + "\n\n")
    if extra:
        sys.stdout.write(extra + "\n\n")
    sys.stdout.write("BENCH " + json.dumps(out, sort_keys=True) + "\n")
    sys.stdout.flush()
