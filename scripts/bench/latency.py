"""The latency phase of scripts/bench.py alone, repeated: tickvisor, the Ray-free pipeline (three
processes, and fused: two) and the bare websockets client, each at the same paced rate, in turn,
``--reps`` times.

    python -m scripts.bench.latency                 # 5 rounds of 3 s at 20k ticks/s, about 80 s
    python -m scripts.bench.latency --reps 9 --rate 2000

Each round bursts ``rate x seconds`` ticks into each consumer one after the other (so they share the
machine's noise) and prints their p50 and p99 in ms; the last line, ``LATENCY {json}``, has every round
and the medians. Before the rounds, one unpaced 200k-tick burst warms tickvisor up as the full benchmark's
throughput phase does. It uses the full benchmark's parts (scripts/bench/phases.py
``start_throughput`` and ``run_tickvisor``, scripts/bench/harness.py ``run_client``,
scripts/bench/channels.py ``Pipeline``) and the same job.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import uuid
from typing import Any

from scripts.bench.channels import Pipeline
from scripts.bench.harness import FOREX_PATH, block, log, run_client
from scripts.bench.job import System, in_sync, local_ray, setup_environment
from scripts.bench.modes import mode_of
from scripts.bench.phases import job_processes, run_tickvisor, start_throughput
from scripts.bench.wait import wait_for

__all__ = ["main"]

WARM_UP_TICKS = 200_000
CONSUMERS = ("tickvisor", "pipeline", "fused", "bare")


def rounds(reps: int, rate: float, seconds: float, token: str) -> dict[str, list[dict[str, float]]]:
    """``reps`` rounds of each consumer at ``rate`` ticks/s for ``seconds``; p50/p99 ms of each."""
    codes = block(0)
    out: dict[str, list[dict[str, float]]] = {name: [] for name in CONSUMERS}
    n = int(rate * seconds)
    # The throughput phase's simulator (bursts only) and job, as the full benchmark starts them.
    sim, system = start_throughput(mode_of(smoke=False, quick=True), token)
    with sim:
        workdir = tempfile.mkdtemp(prefix="tv-latency-")
        floors: list[Pipeline] = []
        try:
            system.wait_started(120.0 * System.scale)
            wait_for(lambda: in_sync(system, sim, FOREX_PATH, set(codes)), 30, what="tickvisor subscribed")
            job_pids = job_processes(sim)
            run_tickvisor(system, sim, codes, WARM_UP_TICKS, job_pids)
            for k, fused in enumerate((False, True)):
                floors.append(Pipeline("picows", "uds", fused=fused).start(sim, block(1 + k), workdir))
            for r in range(reps):
                tv = run_tickvisor(system, sim, codes, n, job_pids, rate=rate)
                pl, fused_pl = (floor.measure(sim, n, rate=rate) for floor in floors)
                bare = run_client("bare", sim, block(3 + r), n, rate=rate)
                for name, result in zip(CONSUMERS, (tv, pl, fused_pl, bare), strict=True):
                    out[name].append({"p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"]})
                ok = tv["count"] == n and tv["gaps"] == 0 and tv["missed"] == 0
                log(
                    f"round {r + 1}/{reps}: "
                    + ", ".join(
                        f"{k} p50 {v[-1]['p50_ms']:.2f} p99 {v[-1]['p99_ms']:.2f}" for k, v in out.items()
                    )
                    + ("" if ok else f"; tickvisor got {tv['count']} of {n}, gaps {tv['gaps']}")
                )
        finally:
            for floor in floors:
                floor.stop()
            shutil.rmtree(workdir, ignore_errors=True)
            system.stop_quietly()
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the rounds; print one line per round on stderr and the ``LATENCY`` line on stdout."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--reps", type=int, default=5, help="rounds (default 5)")
    p.add_argument("--rate", type=float, default=20_000.0, help="ticks per second (default 20000)")
    p.add_argument("--seconds", type=float, default=3.0, help="length of each paced burst (default 3)")
    args = p.parse_args(argv)
    setup_environment(0)
    token = "bench-" + uuid.uuid4().hex[:10]
    with contextlib.redirect_stdout(sys.stderr), local_ray():
        got = rounds(args.reps, args.rate, args.seconds, token)
    medians: dict[str, Any] = {
        f"{name}_{key}": statistics.median(r[key] for r in got[name])
        for name in CONSUMERS
        for key in ("p50_ms", "p99_ms")
    }
    medians["p99_over_bare"] = medians["tickvisor_p99_ms"] / medians["bare_p99_ms"]
    medians["pipeline_p99_over_bare"] = medians["pipeline_p99_ms"] / medians["bare_p99_ms"]
    medians["fused_p99_over_bare"] = medians["fused_p99_ms"] / medians["bare_p99_ms"]
    print("LATENCY " + json.dumps({"rate": args.rate, "seconds": args.seconds, "rounds": got, **medians}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
