"""Benchmark tickvisor against the simulator on 127.0.0.1, beside its baselines, in one run.

    python scripts/bench.py            # full: 3 rounds of every throughput figure, about 5 minutes
    python scripts/bench.py --quick    # 1 round, about 2-3 minutes on a 2-core machine
    python scripts/bench.py --smoke    # tiny counts, well under a minute: checks the machinery only
    python scripts/bench.py --quick --plots DIR   # also the figures as PNGs in DIR (see "Plots")

It prints a markdown table and, as its very last line, ``BENCH {json}``. Every figure is measured in
this run, beside its baselines: the machine is shared and noisy, the ratios are what count.

What runs where:

* The simulator (scripts/simulator.py) runs in its own process; its unpaced burst is fully encoded
  before its first byte is written, so that it delivers far faster than any client consumes
  (``sim_fps`` checks that with a reader that only counts frame headers).
* One ``ray.init(address="local")`` for the whole run. tickvisor is started as tests/conftest.py's
  System does (actors.control.Job): a Supervisor actor with Settings from
  actors.core.settings.parse_settings, here with scripts.bench.strategy:BenchStrategy as the strategy.
* Baselines: ``seed``, ``bare`` and ``bare_picows`` (scripts/bench/clients.py) each in their own process;
  ``naive`` (scripts/bench/naive.py) as two Ray actors making one Ray call per tick; ``pipeline``: the
  Ray-free three-process pipeline of scripts/bench/channels.py (tickvisor's transport receiving, tickvisor's
  channel, ``wire.decode_batch``, the same per-tick counting in its strategy; no Ray, no checks,
  routing tables or supervision): the floor of the design on this machine.

Figures (the BENCH keys):

* Throughput over a burst of 200k ticks (``--burst``) across 100 codes on one connection, counted
  inside one strategy with per-code order checked: ``tps``, ``seed_tps``, ``bare_tps``,
  ``bare_picows_tps`` (the bare client on picows: the ceiling of one connection) (median of the
  rounds), ``transport`` (tickvisor's feed.transport, ``--transport``), ``naive_tps`` (over fewer ticks
  in --quick: one Ray call per tick is slow). ``order_ok``: every
  consumer got every tick, in order, without a gap; ``tickvisor_out_of_order_dropped``: ticks tickvisor's
  strategy base class dropped because they arrived after a later one.
* The Ray-free pipeline, measured beside tickvisor in each round and at both paces: ``pipeline_tps``,
  ``pipeline_cpu_s_per_mtick`` (its three processes; per process ``pipeline_{receiver,decoder,
  strategy}_cpu_s_per_mtick``), ``pipeline_p50_ms``/``pipeline_p99_ms`` (20k/s) and
  ``pipeline_low_p50_ms`` (2k/s); the same pipeline fused (two processes: its receiver decodes and
  routes, no decoder process; the floor of one process hop less): ``fused_pipeline_tps``,
  ``fused_pipeline_cpu_s_per_mtick``, ``fused_pipeline_p50_ms``/``fused_pipeline_p99_ms``.
  Beside them, tickvisor's burst per stage, from the injection to the last tick:
  ``{connection,decoder,strategy}_cpu_s_per_mtick`` (the forex connection, the busiest decoder, the
  strategy) and ``rest_cpu_s_per_mtick`` (every other process of the job).
* Per stage, to size a many-core host from a 2-core run: ``stage_us_per_tick``, a mapping of
  ``connection``, ``decoder``, ``strategy`` and ``other`` (Ray's and the job's other processes) to CPU
  microseconds per tick over the throughput burst (the same figures as above: a CPU second per million
  ticks is a microsecond per tick), and ``ceiling_tps``: the single connection's ceiling on a host with
  a core per stage, 1e6 / the busiest of the connection, decoder and strategy's microseconds per tick
  (0.0: not measurable, as in a ``--smoke`` burst shorter than a CPU clock tick). ``other`` is not one
  of those stages: it is some thirty processes off the ticks' path, which spread over spare cores.
* Latency from the simulator's send time to the strategy at a paced 20k ticks/s: ``p50_ms``,
  ``p99_ms``. ``latency_exact`` says whether the ticks carried the simulator's ``sent_ns``
  (actors.core.wire.Tick passes it on); if not, the send time is taken from ``tick_time`` (ms, so +-0.5 ms
  per sample).
  ``read_p50_ms``/``read_p99_ms``: the exact connection-read-to-strategy part; ``bare_p50_ms``/
  ``bare_p99_ms``, ``bare_picows_p50_ms``/``bare_picows_p99_ms``: the bare clients at the same pace, exact
  (``latency_rate``: that pace). ``latency_tps``: the rate tickvisor delivered
  at that pace (below it, queues grew); ``low_p50_ms``/``low_p99_ms``: tickvisor at ``low_rate`` (2k/s).
  ``paced_cpu_s_per_mtick``: the whole job's CPU per tick over the paced run (ticks come a few dozen a
  batch there, so every stage's wake-up per batch counts: several times the burst's figure);
  ``pipeline_paced_cpu_s_per_mtick``, ``fused_pipeline_paced_cpu_s_per_mtick``: the pipelines' own.
  The paced run into tickvisor is not polled while it runs (the strategy reports when done), like the
  pipelines' and the bare clients'.
* Liveness, a ``stall`` injected on the live connection, 5 times: ``stall_detect_s``
  (stall to the supervisor's restart decision, median), ``stall_resubscribed_s`` (stall to the server
  accepting the full set on a new connection, median), ``deadline_s`` (the configured silence deadline);
  ``seed_detect_s``: the seed's watchdog (a check every 5 s, 20 s threshold) detects at 20 + U(0, 5) s,
  median 22.5 s.
* Churn: 50 strategies each doing 20 subscribe/unsubscribe operations per second over a shared pool of
  40 codes for 10 s (scripts/bench/churn.py): ``churn_max_req_per_conn_s``, ``churn_429``,
  ``churn_converged_s`` (last operation to server set == registry union), ``churn_mismatch``;
  ``churn_ops_per_s``: the rate the registry actually sustained (``churn_ops_wanted_per_s`` asked).
* Recovery, SIGKILL in a live run: ``kill_conn_recover_s``, ``kill_registry_recover_s`` (kill to a new
  tick on every code), ``kill_lost_subscriptions``; ``kill_*_in_sync_s``: kill to the registry in sync
  with the server again; ``kill_*_restarted_s``: kill to Ray's new process reporting in.
* 4 connections bursting at once (``phase_burst4``: 100 codes, at most 25 per connection, so 4
  connections, each with its own decoder worker, into one strategy; the simulator's ``burst`` of
  ``Mode.burst4`` ticks on each at once): ``burst4_tps`` (aggregate, at the strategy),
  ``burst4_cpu_s_per_mtick`` (every process of the job),
  ``burst4_{connection,decoder,strategy}_cpu_s_per_mtick`` (each role summed over its processes) and
  ``burst4_decoder_cpu_spread`` (busiest decoder's CPU over
  the idlest's); ``bare_picows_tps`` is the single-connection reference. ``--profile`` runs that burst
  once more under py-spy and prints where the CPU goes per process (scripts/bench/pyspy.py) between
  the table and the BENCH line; if py-spy is missing or cannot attach, one line says so.
* Replay (scripts/bench/replay.py, no Ray): a tape of ``Mode.replay_ticks`` ticks (1M; 20k in smoke)
  written in this run, replayed as ``tickvisor replay --speed max`` does into a counting strategy:
  ``replay_tps_jsonl``, ``replay_tps_parquet``.
* Cost, over tickvisor's throughput burst: ``cpu_s_per_mtick`` (CPU seconds of every process of the job:
  Ray's own processes and all actors, per million ticks; not this benchmark's own process, the Ray
  driver here, whose polling and /proc reads are the measurement's: 0.7-0.9 us a tick when it was
  counted, until 2026-12-01 night), ``rss_mb`` (their summed RSS, the driver's included; ``pss_mb``
  counts shared pages once); ``idle_cpu_cores``: the same processes' CPU while no tick flows (after
  start-up, before the first burst), in cores: what the job costs while its market is closed.

Plots (``--plots DIR``, scripts/bench/plots.py, matplotlib): ``latency_cdf.png`` (the share of ticks
delivered within x ms at the paced rate, tickvisor beside the pipeline and both bare clients, from
histograms of every sample), ``throughput_cpu.png`` (ticks/s and CPU s per Mtick per client) and
``stages.png`` (CPU us per tick per stage, beside the pipeline's, with the ceiling). Written before the
BENCH line; a plot that fails fails the run.

Every measured consumer runs at the same niceness (``--niceness``, default 0; Ray's own default for its
workers is 15), so that on a shared machine none is starved more than the others.

The code: this module is the command line (``python scripts/bench.py`` runs it). scripts/bench/job.py
starts and stops Ray and tickvisor's job; scripts/bench/harness.py what needs no Ray (the simulator
process, the baseline client processes, the /proc accounting), scripts/bench/phases.py holds the
measured phases, scripts/bench/modes.py the sizes of each mode, and scripts/bench/report.py the table,
the targets and the BENCH line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.core.settings import TRANSPORTS
from scripts.bench.harness import hard_cap, log
from scripts.bench.job import local_ray, setup_environment
from scripts.bench.modes import Mode, mode_of
from scripts.bench.phases import (
    phase_burst4,
    phase_liveness,
    phase_throughput,
    start_burst4,
    start_liveness,
    start_throughput,
)
from scripts.bench.replay import phase_replay
from scripts.bench.report import write

if TYPE_CHECKING:
    from scripts.bench.harness import SimProcess
    from scripts.bench.job import System

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and the BENCH line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="one round; about 2-3 minutes on 2 cores")
    group.add_argument(
        "--smoke", action="store_true", help="tiny counts: checks the machinery, not the figures"
    )
    p.add_argument("--burst", type=int, default=None, help="ticks per throughput burst (default by mode)")
    p.add_argument("--rounds", type=int, default=None, help="throughput rounds (default by mode)")
    p.add_argument(
        "--niceness",
        type=int,
        default=0,
        help="niceness of every measured consumer: Ray's workers (RAY_worker_niceness, Ray's own "
        "default is 15) and the baseline clients alike, so that on a shared machine no "
        "consumer is starved more than another (default 0)",
    )
    p.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=TRANSPORTS[0],
        help=f"tickvisor's feed.transport (default {TRANSPORTS[0]}); the BENCH line names it",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="run the 4-connection burst once more under py-spy (pinned in scripts/requirements.lock) and "
        "print, per process of the job and the simulator, its samples and top functions by self time",
    )
    p.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        default=None,
        help="write the figures as PNGs into DIR (created if missing): latency_cdf.png, throughput_cpu.png, "
        "stages.png",
    )
    args = p.parse_args(argv)
    mode = mode_of(smoke=args.smoke, quick=args.quick)
    mode = dataclasses.replace(
        mode, burst=args.burst or mode.burst, rounds=args.rounds or mode.rounds, transport=args.transport
    )

    setup_environment(args.niceness)
    token = "bench-" + uuid.uuid4().hex[:10]
    out: dict[str, Any] = {"mode": mode.name, "niceness": args.niceness}
    started = time.monotonic()
    failed = ""
    profile = ""
    latency_hist: dict[str, list[int]] = {}
    smoke = mode.name == "smoke"
    try:
        if not smoke:
            phase_replay(mode, out)  # before Ray starts: it needs none
        # Ray prints its workers' deaths (the SIGKILLs are deliberate) on stdout: keep stdout for the report.
        with hard_cap(mode.hard_cap_s), contextlib.redirect_stdout(sys.stderr), local_ray():
            early = early4 = early_tp = None
            beside: concurrent.futures.Future[None] | None = None
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-beside")
            try:
                # Smoke checks the machinery, not the figures: the other systems start beside the first
                # (asked for first: the most waits on it), and the replay and the liveness phase run in a
                # thread beside the other phases.
                if smoke:
                    early_tp = start_throughput(mode, token)
                    early = start_liveness(mode, token)
                    early4 = start_burst4(mode, token)
                    beside = pool.submit(replay_and_liveness, mode, out, token, early)
                phase_throughput(mode, out, token, latency_hist, early_tp)
                profile = phase_burst4(mode, out, token, early4, profile=args.profile)
                if beside is None:
                    phase_liveness(mode, out, token, early)
                else:
                    beside.result()
            finally:
                for pair in (early_tp, early, early4):
                    if pair is not None:
                        pair[0].stop()
                pool.shutdown(wait=True)
    except Exception as exc:  # noqa: BLE001 - reported in the BENCH line, exit code 1
        failed = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {failed}")
    if args.plots is not None and not failed:
        try:
            from scripts.bench.plots import bench_plots

            for path in bench_plots(out, latency_hist, args.plots):
                log(f"plot: {path}")
        except Exception as exc:  # noqa: BLE001 - reported in the BENCH line, exit code 1
            failed = f"plots: {type(exc).__name__}: {exc}"
            log(f"FAILED: {failed}")
    out["elapsed_s"] = time.monotonic() - started
    if args.profile and not profile:
        profile = "--profile: not profiled: the run failed before the 4-connection burst"
    write(out, mode, ok=not failed, extra=profile)
    return 1 if failed else 0


def replay_and_liveness(
    mode: Mode, out: dict[str, Any], token: str, started: tuple[SimProcess, System]
) -> None:
    """The replay, then the liveness phase on its system already starting: ``--smoke`` runs them in a
    thread beside the other phases.
    """
    phase_replay(mode, out)
    phase_liveness(mode, out, token, started)


if __name__ == "__main__":
    sys.exit(main())
