"""How start-up, throughput and memory grow with codes per connection and connections per endpoint.

    python scripts/bench_scale.py                      # the grid of docs/scaling.md
    python scripts/bench_scale.py --codes 5,200 --conns 1,3 --tick-rate 0.5 --window 10
    python scripts/bench_scale.py --two-tokens 100x10  # also 100 codes x 10 connections over two tokens
    python scripts/bench_scale.py --smoke              # seconds: proves it runs (tests/test_bench_scale.py)
    python scripts/bench_scale.py --plots DIR          # also scale.png in DIR: ticks/s against connections

For each (codes per connection C, connections N) it starts a whole job (actors.control.Job) on a local
Ray against the simulator (scripts/simulator.py, its own process, plan pro, the vendor's rate limits:
1 s per connection, 3 s across one token's connections), with one strategy holding C x N forex/crypto
codes, so the job starts with N connections of C codes. It reports, per run:

- ``accepted_s``: from ``Job.start`` to every connection accepted by the server (actor processes
  start, sockets open); ``flowing_s``: to the strategy having seen a tick of every code;
- ``subscribed_s`` = flowing - accepted: the subscription phase, against ``bound_s``, the pacing lower
  bound of the N initial full-set requests on one token, (N - 1) x 3 s
  (actors.core.growth.startup_lower_bound_s); ``over_bound_s`` = subscribed - bound;
- ``ticks_per_s`` at the strategy over ``--window`` seconds once every code flows, against
  ``offered_per_s`` = C x N x tick rate (what the simulator tries to push);
- ``rss_mb``: the summed RSS of the job's actor processes, and ``mb_per_1000_codes`` as the slope
  between the smallest and the largest run of the same N;
- reconnection of every shard at once: the simulator's ``drop`` fault tears down every socket of the
  job at one moment; ``reconnect_s`` is from then to the strategy having seen a tick of every code read
  from a new socket (``Tick.received_ns`` after the drop), against ``reconnect_bound_s``, the same
  pacing bound for the N full-set requests the resubscription needs; ``resubscribed_s`` is from the
  drop to the server's open sockets carrying every code again (the simulator's state, polled 4 times
  a second), so ``reconnect_s`` - ``resubscribed_s`` is the wait for the next push of each code (the
  simulator pushes every code once per 1 / tick-rate s);
- ``two_tokens``: the runs of ``--two-tokens CxN`` (C codes on each of N connections, the connections
  alternating over two tokens, as the pool opens them), whose bound is that of the busier token,
  (ceil(N / 2) - 1) x 3 s: tokens are paced apart, so they subscribe in parallel.

With ``--plots DIR``, ``scale.png`` (scripts/bench/plots.py) draws ticks/s at the strategy against the
connections, one line per codes per connection beside what the simulator offered; a plot that fails
fails the run. The last line is ``SCALE {json}``. Timings depend on this shared machine's load: compare
the ratios (``flowing_s`` against ``bound_s``), not the absolute figures, across machines.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import logging
import math
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from actors.core.normalise import Tick
from actors.core.plans import SUBSCRIBE_GAP_PER_TOKEN_S
from actors.core.settings import Settings
from actors.strategy import Strategy
from scripts.bench.config import build, job_config, strategy
from scripts.bench.harness import ROOT, rss_mb

TOKEN = "bench-scale-" + uuid.uuid4().hex[:6]


class ScaleStrategy(Strategy):
    """Counts ticks and the distinct codes seen; nothing else per tick."""

    def __init__(self, name: str, symbols: Any = (), options: Any = None, **kwargs: Any) -> None:
        super().__init__(name, symbols, options, **kwargs)
        self.codes: set[str] = set()
        self.ticks = 0
        self.mark_ns = 0  # 0: no mark; else the codes read from a socket at or after it are counted
        self.fresh: set[str] = set()

    async def on_ticks(self, ticks: list[Tick]) -> None:
        self.ticks += len(ticks)
        if len(self.codes) < len(self.symbols):
            self.codes.update(t.code for t in ticks)
        if self.mark_ns and len(self.fresh) < len(self.symbols):
            self.fresh.update(t.code for t in ticks if t.received_ns >= self.mark_ns)

    async def mark(self, at_ns: int) -> None:
        """Count afresh the codes whose ticks were read at or after ``at_ns`` (``time.time_ns()``)."""
        self.mark_ns = at_ns
        self.fresh = set()

    async def progress(self) -> tuple[int, int, int]:
        """(distinct codes seen, ticks seen, distinct codes read since the mark)."""
        return len(self.codes), self.ticks, len(self.fresh)


def codes_of(total: int) -> list[str]:
    """The simulator's generated forex/crypto codes (actors/sim/market.py ``generated_codes``)."""
    return [f"C{i:04d}USDT" for i in range(1, total + 1)]


TOKEN_NAMES = ("TICKVISOR_BENCH_TOKEN", "TICKVISOR_BENCH_TOKEN_2")
SECOND_TOKEN = TOKEN + "-2"


def scale_settings(port: int, per_conn: int, conns: int, tokens: int = 1) -> Settings:
    """One job of the grid: ``conns`` connections of ``per_conn`` forex/crypto codes, ``tokens`` tokens."""
    feed = {
        "token_envs": list(TOKEN_NAMES[:tokens]),
        "plan": "professional",
        "max_connections": math.ceil(conns / tokens),  # per token: N in all
        "max_codes_per_connection": per_conn,
        "start_timeout_s": 120.0,
    }
    codes = codes_of(per_conn * conns)
    doc = job_config(
        port,
        [strategy("scale", "scripts.bench.scale:ScaleStrategy", codes)],
        feed=feed,
        restart=None,
        endpoints=("forex_crypto",),
    )
    return build(doc, source="<bench scale>")


def one_run(  # noqa: PLR0917
    sim: Any, per_conn: int, conns: int, window_s: float, tick_rate: float, limit_s: float, tokens: int = 1
) -> dict[str, Any]:
    import ray

    from actors.control import Job
    from actors.core.growth import startup_lower_bound_s
    from actors.core.tokens import Secret

    total = per_conn * conns
    secrets = {TOKEN_NAMES[0]: Secret(TOKEN), TOKEN_NAMES[1]: Secret(SECOND_TOKEN)}
    settings = scale_settings(sim.port, per_conn, conns, tokens)
    started = time.monotonic()
    job = Job.start(settings, {n: secrets[n] for n in settings.token_names()}, timeout=limit_s)
    try:
        accepted_s = time.monotonic() - started
        # A handle: Ray types its methods as Never, with no .remote.
        strategy: Any = ray.get_actor("strategy:scale", namespace=job.namespace)
        seen = 0
        while time.monotonic() - started < limit_s:
            seen, _, _ = ray.get(strategy.progress.remote(), timeout=30)
            if seen >= total:
                break
            time.sleep(0.1)
        flowing_s = time.monotonic() - started
        _, before, _ = ray.get(strategy.progress.remote(), timeout=30)
        pushed_before = sim.state()["totals"]["pushes"]
        t0 = time.monotonic()
        time.sleep(window_s)
        pushed = sim.state()["totals"]["pushes"] - pushed_before
        _, after, _ = ray.get(strategy.progress.remote(), timeout=30)
        elapsed = time.monotonic() - t0
        rate = (after - before) / elapsed
        pids = [pid for name, pid in job.pids().items() if name != "supervisor"] + [job.pids()["supervisor"]]
        rss = rss_mb(pids)
        per_token = [len(range(t, conns, tokens)) for t in range(tokens)]  # the tokens in turn
        bound = startup_lower_bound_s(per_token, token_gap_s=SUBSCRIBE_GAP_PER_TOKEN_S)
        resubscribed_s, reconnect_s, fresh = reconnect_all(sim, strategy, total, limit_s)
        return {
            "codes_per_connection": per_conn,
            "connections": conns,
            "tokens": tokens,
            "codes": total,
            "all_flowing": seen >= total,
            "accepted_s": round(accepted_s, 2),
            "flowing_s": round(flowing_s, 2),
            "subscribed_s": round(flowing_s - accepted_s, 2),
            "bound_s": round(bound, 2),
            "over_bound_s": round(flowing_s - accepted_s - bound, 2),
            "ticks_per_s": round(rate, 1),
            "offered_per_s": round(total * tick_rate, 1),
            # What the simulator wrote in the same window: the pushes come in rounds (every code once
            # per 1/tick-rate s), so a short window's count depends on its phase; compare the two.
            "sim_pushes_per_s": round(pushed / elapsed, 1),
            "rss_mb": round(rss, 1),
            "all_reflowing": fresh >= total,
            "reflowed": fresh,  # codes with a tick from a new socket when the wait ended
            "resubscribed_s": round(resubscribed_s, 2),  # the server's sockets carry every code again
            "reconnect_s": round(reconnect_s, 2),
            "reconnect_bound_s": round(bound, 2),
            "reconnect_over_bound_s": round(reconnect_s - bound, 2),
        }
    finally:
        job.stop(timeout=60)


def reconnect_all(sim: Any, strategy: Any, total: int, limit_s: float) -> tuple[float, float, int]:
    """Drop every socket of the simulator at once. Returns (seconds until the server's open sockets
    carried every code again, seconds until a tick of every code was read from a new socket, how many
    codes were by then).
    """
    import ray

    state = sim.state()
    paths = {c["path"] for c in state["connections"] if c["open"]}
    codes = set().union(*(c["trades"] for c in state["connections"] if c["open"]))
    old = {c["id"] for c in state["connections"]}  # the server may list a dropped socket a moment longer
    dropped = time.monotonic()
    for path in sorted(paths):
        sim.fault("drop", path=path)
    # Marked after the drop: whatever is read from then on came through a new socket (a tick still on
    # its way from an old one carries the time its socket read it, before the drop).
    ray.get(strategy.mark.remote(time.time_ns()), timeout=30)
    fresh, resubscribed_s, asked_at = 0, 0.0, 0.0
    while time.monotonic() - dropped < limit_s:
        now = time.monotonic()
        if not resubscribed_s and now - asked_at >= 0.25:
            asked_at = now
            conns = sim.state()["connections"]
            open_sets = [set(c["trades"]) for c in conns if c["open"] and c["id"] not in old]
            if set().union(*open_sets) >= codes:
                resubscribed_s = time.monotonic() - dropped
        _, _, fresh = ray.get(strategy.progress.remote(), timeout=30)
        if fresh >= total and resubscribed_s:
            break
        time.sleep(0.1)
    return resubscribed_s, time.monotonic() - dropped, fresh


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--codes", default="5,100,1000,3000", help="codes per connection, comma-separated")
    p.add_argument("--conns", default="1,3,10", help="connections per endpoint, comma-separated (at most 10)")
    p.add_argument("--tick-rate", type=float, default=0.2, help="simulator pushes per second per code")
    p.add_argument("--window", type=float, default=10.0, help="seconds over which ticks/s is measured")
    p.add_argument("--limit", type=float, default=180.0, help="seconds a run may take to flow")
    p.add_argument(
        "--two-tokens", default="100x10", help="CxN,...: C codes on N connections over two tokens ('' none)"
    )
    p.add_argument("--smoke", action="store_true", help="a tiny grid, for the test suite")
    p.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        default=None,
        help="write scale.png into DIR (created if missing)",
    )
    args = p.parse_args(argv)
    if args.smoke:
        # Two connections: the smallest grid with the per-token pacing in it (one is the trivial case).
        # A short window at a faster tick: every code flows, and flows again after the drop, sooner.
        args.codes, args.conns, args.window, args.tick_rate, args.limit = "5", "2", 1.0, 5.0, 120.0
        args.two_tokens = "5x2"
    grid = [(c, n) for n in map(int, args.conns.split(",")) for c in map(int, args.codes.split(","))]
    if any(n > 10 or n < 1 for _, n in grid):
        p.error("--conns: between 1 and 10 (the professional plan's connections per token)")
    try:
        two = [(int(c), int(n)) for c, n in (x.split("x") for x in args.two_tokens.split(",") if x)]
    except ValueError:
        p.error(f"--two-tokens {args.two_tokens!r}: expected CxN,... e.g. 100x10")
    if any(n > 20 or n < 2 for _, n in two):
        p.error("--two-tokens: N between 2 and 20 (two tokens of 10 connections each)")

    import ray

    from scripts.bench.harness import SimProcess

    os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH", "")) if x)
    os.environ.pop("RAY_ADDRESS", None)
    most = max(c * n for c, n in [*grid, *two])
    runs: list[dict[str, Any]] = []
    two_runs: list[dict[str, Any]] = []
    sim_args = ["--plan", "pro", "--codes", str(most), "--tick-rate", str(args.tick_rate)]
    sim_args += ["--more-token", SECOND_TOKEN]

    def run_all(sim: Any, tokens: int, todo: list[tuple[int, int]], done: list[dict[str, Any]]) -> bool:
        ok = True
        for per_conn, conns in todo:
            run = one_run(sim, per_conn, conns, args.window, args.tick_rate, args.limit, tokens)
            done.append(run)
            ok &= run["all_flowing"] and run["all_reflowing"]
            print(json.dumps(run), file=sys.stderr, flush=True)
        return ok

    # Smoke checks the machinery, not the figures: the two-token runs go beside the grid's, against a
    # simulator of their own (each run drops every socket of its simulator). Otherwise one after another,
    # on the one simulator.
    beside = args.smoke and bool(two)
    with (
        SimProcess(TOKEN, *sim_args) as sim,
        SimProcess(TOKEN, *sim_args) if beside else contextlib.nullcontext(sim) as sim_two,
    ):
        for attempt in (1, 2, 3):  # Ray gives its raylet 30 s to register: a loaded machine can miss that
            try:
                ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
                break
            except Exception:
                ray.shutdown()
                if attempt == 3:
                    raise
        try:
            if beside:
                with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                    beside = pool.submit(run_all, sim_two, 2, two, two_runs)
                    ok = run_all(sim, 1, grid, runs)
                    ok &= beside.result()
            else:
                ok = run_all(sim, 1, grid, runs) & run_all(sim_two, 2, two, two_runs)
        finally:
            ray.shutdown()
    slopes: dict[str, float] = {}
    for conns in sorted({n for _, n in grid}):
        mine = sorted((r for r in runs if r["connections"] == conns), key=lambda r: r["codes"])
        if len(mine) >= 2 and mine[-1]["codes"] > mine[0]["codes"]:
            slope = (mine[-1]["rss_mb"] - mine[0]["rss_mb"]) / (mine[-1]["codes"] - mine[0]["codes"]) * 1000
            slopes[str(conns)] = round(slope, 2)
    report = {"ok": ok, "tick_rate": args.tick_rate, "runs": runs, "two_tokens": two_runs}
    report["mb_per_1000_codes"] = slopes
    if args.plots is not None:
        from scripts.bench.plots import plot_report, scale_plot

        plot_report(scale_plot, report, args.plots)
        ok = report["ok"]
    print("SCALE " + json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
