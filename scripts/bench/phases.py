"""The measured phases of scripts/bench.py (the sizes of each mode: scripts/bench/modes.py).

* ``phase_throughput``: a simulator without a tick loop (bursts only) and one tickvisor system:
  throughput of tickvisor and of each baseline (``run_tickvisor``, ``run_client``, ``run_naive``),
  latency at a paced rate, ``churn``, and cost (CPU and memory of the job).
* ``phase_liveness``: a simulator with its own tick loop and a second system (``start_liveness``):
  ``stall_trial`` and ``kill_trial``.

Each phase writes its figures into ``out``, the dict scripts/bench/report.py prints as the BENCH line.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import statistics
import tempfile
import time
from typing import Any

from scripts.bench.channels import IDLE_S, ROLES, Pipeline, in_order, per_mtick
from scripts.bench.harness import (
    FOREX_PATH,
    STOCK_PATH,
    CpuMeter,
    SimProcess,
    block,
    cpu_seconds,
    log,
    pss_mb,
    rss_mb,
    run_client,
    tree,
)
from scripts.bench.job import STOCK_SUFFIXES, System, bench_settings, in_sync, server_set
from scripts.bench.modes import Mode
from scripts.bench.wait import WaitTimeoutError, wait_for

SEED_CHECK_EVERY_S = 5.0  # the seed article's watchdog
SEED_SILENT_AFTER_S = 20.0
SEED_DETECT_S = SEED_SILENT_AFTER_S + SEED_CHECK_EVERY_S / 2  # median of 20 + U(0, 5)


def run_tickvisor(
    system: System,
    sim: SimProcess,
    codes: list[str],
    count: int,
    job_pids: list[int],
    *,
    rate: float | None = None,
    conns: list[int] | None = None,
) -> dict[str, Any]:
    """One burst into tickvisor; counted inside the bench strategy. CPU of the job sampled alongside.

    ``conns``: burst ``count`` ticks on each of these simulator connections at once (default: the one
    holding ``codes``); the strategy then expects ``count`` times as many.
    """
    strategy = system.actor("strategy:bench")
    system.get(strategy.bench_reset.remote(rate is not None))
    decoders = [system.actor(name) for name in system.pids() if name.startswith("decoder:")]
    before = [system.get(d.statistics.remote()) for d in decoders]
    conns = conns or [sim.find_conn(codes)]
    per_conn, count = count, count * len(conns)
    meter = CpuMeter(job_pids)
    injected_cpu = meter()
    for conn in conns:
        sim.fault("burst", conn=conn, count=per_conn, **({"rate": rate} if rate else {}))
    deadline = time.monotonic() + 60 + count / (rate or 5000)
    if rate is None:
        result = poll_burst(system, strategy, meter, count, deadline, injected_cpu)
    else:
        # Paced: nothing polls the job while the ticks flow, as nothing polls the bare client or the
        # pipeline (each reports when done): the strategy waits for the last tick itself. The CPU is the
        # whole paced run's, from the injection on.
        system.get(strategy.bench_wait.remote(count, IDLE_S), timeout=deadline - time.monotonic())
        cpu = meter()
        result = system.get(strategy.bench_result.remote(True))
        if result["count"]:
            result["cpu_s_per_mtick"] = (cpu - injected_cpu) / result["count"] * 1e6
    n = result["count"]
    after = [system.get(d.statistics.remote()) for d in decoders]
    # How the work was cut: the fewer and fuller the batches, the less each tick pays for its hops.
    batches = sum(a.batches - b.batches for a, b in zip(after, before, strict=True))
    frames = sum(a.frames - b.frames for a, b in zip(after, before, strict=True))
    result["frames_per_decoder_batch"] = frames / batches if batches else 0.0
    result["ticks_per_strategy_batch"] = n / result["batches"] if result["batches"] else 0.0
    log(
        f"tickvisor: {n} ticks, {result['tps']:.0f}/s, missed {result['missed']}, gaps {result['gaps']}, "
        f"dropped as out of order {result['dropped_out_of_order']}"
        + (f", p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms" if rate else "")
        + f"; frames per decoder batch {result['frames_per_decoder_batch']:.1f}, ticks per on_ticks"
        f" {result['ticks_per_strategy_batch']:.1f}"
    )
    return result


def poll_burst(  # noqa: PLR0917 - run_tickvisor's state, handed over
    system: System, strategy: Any, meter: CpuMeter, count: int, deadline: float, injected_cpu: float
) -> dict[str, Any]:
    """An unpaced burst: the strategy's counts every 0.1 s until ``count`` ticks are accounted for (or
    none came for 5 s, or ``deadline``); its result with ``cpu_s_per_mtick``, sampled inside the burst.
    """
    first: tuple[int, float] | None = None
    last_change, last_count = time.monotonic(), -1
    while True:
        cpu = meter()
        result = system.get(strategy.bench_result.remote(False))  # counts only: no pause in the strategy
        n = result["count"]
        if n and first is None:
            first = (n, cpu)
        now = time.monotonic()
        if n != last_count:
            last_change, last_count = now, n
        if (
            n + result["dropped_out_of_order"] + result["missed"] >= count
            or now - last_change > IDLE_S
            or now > deadline
        ):
            break
        time.sleep(0.1)
    result = system.get(strategy.bench_result.remote(True))  # now the percentiles too
    if first is not None and n - first[0] >= n // 2:  # sampled inside the burst
        result["cpu_s_per_mtick"] = (cpu - first[1]) / (n - first[0]) * 1e6
    elif n:  # a burst shorter than the sampling: from the injection on
        result["cpu_s_per_mtick"] = (cpu - injected_cpu) / n * 1e6
    return result


def run_naive(sim: SimProcess, codes: list[str], count: int, cap_s: float) -> dict[str, Any]:
    """The naive pipeline: one Ray call per tick, from a connection-like actor to a sink actor."""
    import ray

    from scripts.bench.naive import NaiveConnection, NaiveSink

    # Handles: Ray types them as the class, whose methods lack .remote.
    sink: Any = ray.remote(NaiveSink).options(num_cpus=0).remote()
    conn: Any = ray.remote(NaiveConnection).options(num_cpus=0).remote(sim.url(FOREX_PATH), codes, sink)
    try:
        error = ray.get(conn.wait_ready.remote(), timeout=60)
        if error:
            raise RuntimeError(f"naive connection: {error}")
        sim.fault("burst", conn=sim.find_conn(codes), count=count)
        started = time.monotonic()
        last_change, last_count = started, -1
        while True:
            time.sleep(0.5)
            result = ray.get(sink.result.remote(), timeout=60)
            now = time.monotonic()
            if result["count"] != last_count:
                last_change, last_count = now, result["count"]
            if (
                result["count"] >= count
                or now - last_change > 10
                or (result["count"] and now - started > cap_s)
            ):
                break
    finally:
        with contextlib.suppress(Exception):
            ray.get(conn.stop.remote(), timeout=10)
        ray.kill(conn)
        ray.kill(sink)
    log(f"naive: {result['count']} ticks, {result['tps']:.0f}/s")
    return result


# --- the phases ---------------------------------------------------------------------------------------

BURST4_CONNECTIONS = 4


def start_burst4(mode: Mode, token: str) -> tuple[SimProcess, System]:
    """The 4-connection phase's simulator (bursts only) and tickvisor (forex endpoint only), not waited
    for.
    """
    codes = block(0)
    sim = SimProcess(token, "--tick-rate", "0", "--book-rate", "0", "--codes", "3000")
    sim.start()
    log(f"burst4: simulator on port {sim.port}; tickvisor with {BURST4_CONNECTIONS} connections")
    settings = bench_settings(
        sim.port,
        [("bench", codes)],
        heartbeat_s=2.0,
        deadline_s=6.0,
        transport=mode.transport,
        max_codes_per_connection=len(codes) // BURST4_CONNECTIONS,
        stock=False,
    )
    return sim, System.launch(settings, token, prefix="bench", wait=False)


def phase_burst4(
    mode: Mode,
    out: dict[str, Any],
    token: str,
    started: tuple[SimProcess, System] | None = None,
    *,
    profile: bool = False,
) -> str:
    """4 connections bursting at once: 100 codes, at most 25 per connection, so the job opens 4
    connections on the forex endpoint, each with its own decoder worker, all feeding one strategy.

    Writes ``burst4_*`` into ``out``: ``burst4_tps`` (aggregate, counted at the strategy),
    ``burst4_cpu_s_per_mtick`` (every process of the job, as ``cpu_s_per_mtick``), and the CPU per
    Mtick of the connections, decoders and strategy (each summed over its processes, from the
    injection to the last tick) with ``burst4_decoder_cpu_spread``: the busiest decoder's CPU over the
    idlest's (1.0: decoding spread evenly; 0.0: too little CPU to tell). With ``profile``, a second,
    unmeasured burst runs under py-spy (scripts/bench/pyspy.py); returns its table, or one line saying
    why it could not run.
    """
    from scripts.bench.pyspy import Profiler, table

    codes = block(0)
    sim, system = started or start_burst4(mode, token)
    with sim:
        try:
            system.wait_started()
            wait_for(lambda: in_sync(system, sim, FOREX_PATH, set(codes)), 30, what="tickvisor subscribed")

            def forex_conns() -> list[int] | None:
                live = [
                    c
                    for c in sim.state()["connections"]
                    if c["open"] and c["path"] == FOREX_PATH and c["trades"]
                ]
                held = set().union(*(set(c["trades"]) for c in live)) if live else set()
                return (
                    [int(c["id"]) for c in live]
                    if len(live) == BURST4_CONNECTIONS and held == set(codes)
                    else None
                )

            conns = wait_for(forex_conns, 30, what=f"{BURST4_CONNECTIONS} connections holding the codes")
            children = system.pids()
            job_pids = job_processes(sim)
            roles = {
                role: [pid for name, pid in children.items() if name.startswith(role + ":")]
                for role in ("connection", "decoder", "strategy")
            }
            before = {pid: cpu_seconds([pid]) for pids in roles.values() for pid in pids}
            log(f"burst4: {mode.burst4} ticks on each of {len(conns)} connections at once")
            result = run_tickvisor(system, sim, codes, mode.burst4, job_pids, conns=conns)
            used = {pid: cpu_seconds([pid]) - cpu for pid, cpu in before.items()}
            n = max(result["count"], 1)
            out["burst4_tps"] = result["tps"]
            out["burst4_cpu_s_per_mtick"] = result.get("cpu_s_per_mtick", -1.0)
            out["burst4_connections"] = len(conns)
            out["burst4_decoders"] = len(roles["decoder"])
            out["burst4_ticks"] = result["count"]
            out["burst4_order_ok"] = in_order(result, mode.burst4 * len(conns))
            for role, pids in roles.items():
                out[f"burst4_{role}_cpu_s_per_mtick"] = sum(used[p] for p in pids) / n * 1e6
            decoders = sorted(used[p] for p in roles["decoder"])
            # 0.0: not measurable (an idlest decoder with no CPU clock tick, as in --smoke)
            out["burst4_decoder_cpu_spread"] = (
                decoders[-1] / decoders[0] if decoders and decoders[0] > 0 else 0.0
            )
            log(
                f"burst4: {result['count']} ticks, {result['tps']:.0f}/s; CPU s per decoder "
                + ", ".join(f"{x:.2f}" for x in decoders)
            )
            if not profile:
                return ""
            profiled = {**children, "simulator": sim.pid}
            profiler = Profiler(profiled)
            why = profiler.unavailable()
            if why:
                return f"--profile: not profiled: {why}"
            log(
                f"burst4 --profile: the same burst again under py-spy on {len(profiled)} processes"
                " (not measured)"
            )
            profiler.start()
            time.sleep(1.0)  # py-spy attaches
            began = time.monotonic()
            try:
                run_tickvisor(system, sim, codes, mode.burst4, job_pids, conns=conns)
            finally:
                seconds = time.monotonic() - began
                profiles = profiler.stop()
            return table(profiles, seconds)
        finally:
            system.stop_quietly()


def job_processes(sim: SimProcess) -> list[int]:
    """The processes whose CPU counts as tickvisor's: Ray's own and every actor, not the simulator and not
    this one. This process is the Ray driver here, but its work is the benchmark's (it polls the
    strategy every 0.1 s and reads /proc); a job's own driver, supervisor.py, only waits.
    """
    return [pid for pid in tree(os.getpid(), exclude=[sim.pid]) if pid != os.getpid()]


def stage_pids(system: System) -> dict[str, list[int]]:
    """The pids of the forex connection (it holds the bench's codes), every decoder and the strategy."""
    children = system.pids()
    return {
        "connection": [children["connection:forex_crypto-0"]],
        "decoder": [pid for name, pid in children.items() if name.startswith("decoder:")],
        "strategy": [children["strategy:bench"]],
    }


def idle(mode: Mode, out: dict[str, Any], job_pids: list[int]) -> None:
    """What the job costs while no tick flows (a market closed, a quiet night): its CPU over
    ``mode.idle_s``, in cores (CPU seconds per second), every process of it counted (Ray's own too).
    """
    time.sleep(min(1.0, mode.idle_s))  # the start-up's last answers (subscriptions, liveness) settle
    meter = CpuMeter(job_pids)
    before, started = meter(), time.monotonic()
    time.sleep(mode.idle_s)
    out["idle_cpu_cores"] = (meter() - before) / (time.monotonic() - started)
    log(f"idle: {out['idle_cpu_cores']:.2f} of a core over {mode.idle_s:g} s, {len(job_pids)} processes")


def start_throughput(mode: Mode, token: str) -> tuple[SimProcess, System]:
    """The throughput phase's simulator (bursts only) and tickvisor, not waited for."""
    # No heartbeat timeout: the Ray-free pipeline's receiver sends no 22000 (tickvisor does, every 2 s).
    sim_args = ["--tick-rate", "0", "--book-rate", "0", "--codes", "3000", "--heartbeat-timeout", "3600"]
    sim = SimProcess(token, *sim_args, "--token-gap-s", str(mode.sim_token_gap_s))
    sim.start()
    log(f"simulator on port {sim.port}; starting tickvisor")
    settings = bench_settings(
        sim.port, [("bench", block(0))], heartbeat_s=2.0, deadline_s=6.0, transport=mode.transport
    )
    try:
        return sim, System.launch(settings, token, prefix="bench", wait=False)
    except BaseException:
        sim.stop()
        raise


def phase_throughput(
    mode: Mode,
    out: dict[str, Any],
    token: str,
    latency_hist: dict[str, list[int]] | None = None,
    started: tuple[SimProcess, System] | None = None,
) -> None:
    """Throughput, latency, churn and cost: simulator without a tick loop (bursts only).

    ``latency_hist`` (if given) gets the histogram of every consumer's latencies at the paced rate, by
    name (``tickvisor``, ``pipeline``, ``fused``, ``bare``, ``bare_picows``): what ``--plots`` draws.
    ``started``: what ``start_throughput`` returned, if it was called before.
    """
    hists = latency_hist if latency_hist is not None else {}
    codes = block(0)
    sim, system = started or start_throughput(mode, token)
    with sim:
        pipeline: Pipeline | None = None  # the Ray-free pipeline: a floor for the design (see Pipeline)
        fused: Pipeline | None = None  # the same, decoding in its receiver: the floor of one hop less
        side_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-side")
        workdir = tempfile.mkdtemp(prefix="tv-bench-")
        try:
            system.wait_started(120.0 * System.scale)
            wait_for(lambda: in_sync(system, sim, FOREX_PATH, set(codes)), 30, what="tickvisor subscribed")
            job_pids = job_processes(sim)
            next_block = iter(range(1, 30))
            idle(mode, out, job_pids)
            # Smoke checks the machinery, not the figures: churn (on the stock endpoint) and the naive
            # pipeline (codes of its own) run in a thread beside the measurements.
            naive_codes = block(next(next_block))
            side = (
                side_pool.submit(churn_and_naive, mode, out, system, sim, naive_codes)
                if mode.name == "smoke"
                else None
            )

            raw = run_client("raw", sim, block(next(next_block)), mode.burst)
            out["sim_fps"] = raw["tps"]

            runs: dict[str, list[dict[str, Any]]] = {
                "tickvisor": [], "bare": [], "bare_picows": [], "seed": [], "pipeline": [], "fused": []
            }  # fmt: skip
            # Per stage, to set beside the pipeline's: the connection holding the codes, its decoder, the
            # strategy; "rest" is every other process of the job (Ray's own, the actors that only wait).
            stages = stage_pids(system)
            stage_cpu: dict[str, list[float]] = {stage: [] for stage in (*stages, "rest")}
            out["transport"] = mode.transport
            out["burst"] = mode.burst
            for r in range(mode.rounds):
                log(f"throughput round {r + 1}/{mode.rounds}: {mode.burst} ticks over 100 codes")
                runs["bare"].append(run_client("bare", sim, block(next(next_block)), mode.burst))
                runs["bare_picows"].append(
                    run_client("bare_picows", sim, block(next(next_block)), mode.burst)
                )
                before = {pid: cpu_seconds([pid]) for pids in stages.values() for pid in pids}
                whole = CpuMeter(job_pids)
                before_all = whole()
                runs["tickvisor"].append(run_tickvisor(system, sim, codes, mode.burst, job_pids))
                spent = {pid: cpu_seconds([pid]) - cpu for pid, cpu in before.items()}
                # The decoder is the busiest one (the idle stock endpoint's counts with the rest).
                used = {stage: max(spent[pid] for pid in pids) for stage, pids in stages.items()}
                # (read a moment apart from the stages': clamped, as a short burst can read -1 clock tick)
                used["rest"] = max(0.0, whole() - before_all - sum(used.values()))
                for stage, cpu in used.items():
                    stage_cpu[stage].append(cpu / max(runs["tickvisor"][-1]["count"], 1) * 1e6)
                if r == 0:  # the job's processes (the simulator's excluded), before the pipeline starts
                    pids = tree(os.getpid(), exclude=[sim.pid])
                    out["rss_mb"] = rss_mb(pids)
                    out["pss_mb"] = pss_mb(pids)
                    out["job_processes"] = len(pids)
                    pipeline = Pipeline(mode.transport, "uds").start(sim, block(next(next_block)), workdir)
                    fused = Pipeline(mode.transport, "uds", fused=True).start(
                        sim, block(next(next_block)), workdir
                    )
                assert pipeline is not None
                assert fused is not None
                runs["pipeline"].append(pipeline.measure(sim, mode.burst))
                runs["fused"].append(fused.measure(sim, mode.burst))
                runs["seed"].append(run_client("seed", sim, block(next(next_block)), mode.burst))

            def median(name: str, key: str) -> float:
                values = [r[key] for r in runs[name] if key in r]
                return statistics.median(values) if values else -1.0

            def cpu_median(name: str, key: str = "cpu_s") -> float:  # CPU s per Mtick, median of the rounds
                return statistics.median(per_mtick(r, key) for r in runs[name])

            out["tps"] = median("tickvisor", "tps")
            out["bare_tps"] = median("bare", "tps")
            out["bare_picows_tps"] = median("bare_picows", "tps")
            out["seed_tps"] = median("seed", "tps")
            out["cpu_s_per_mtick"] = median("tickvisor", "cpu_s_per_mtick")
            for name in ("bare", "bare_picows", "seed", "pipeline"):
                out[f"{name}_cpu_s_per_mtick"] = cpu_median(name)
            out["pipeline_tps"] = median("pipeline", "tps")
            out["fused_pipeline_tps"] = median("fused", "tps")
            out["fused_pipeline_cpu_s_per_mtick"] = cpu_median("fused")
            for stage, values in stage_cpu.items():  # from the injection to the last tick
                out[f"{stage}_cpu_s_per_mtick"] = statistics.median(values)
            per_stage(out)
            for role in ROLES:
                out[f"pipeline_{role}_cpu_s_per_mtick"] = cpu_median("pipeline", f"cpu_s_{role}")
            out["tickvisor_missed"] = sum(r["missed"] for r in runs["tickvisor"])
            out["tickvisor_out_of_order_dropped"] = sum(r["dropped_out_of_order"] for r in runs["tickvisor"])
            order = [in_order(r, mode.burst) for rs in runs.values() for r in rs]

            log(f"latency: paced {mode.latency_rate:.0f} ticks/s for {mode.latency_s:g} s")
            n = int(mode.latency_rate * mode.latency_s)
            lat = run_tickvisor(system, sim, codes, n, job_pids, rate=mode.latency_rate)
            out.update(
                p50_ms=lat["p50_ms"],
                p99_ms=lat["p99_ms"],
                latency_exact=lat["exact"],
                read_p50_ms=lat["read_p50_ms"],
                read_p99_ms=lat["read_p99_ms"],
            )
            out["latency_tps"] = lat["tps"]  # below the pace: the pipeline could not keep up, queues grew
            out["latency_rate"] = mode.latency_rate
            low = run_tickvisor(
                system, sim, codes, int(mode.low_rate * mode.latency_s / 2), job_pids, rate=mode.low_rate
            )
            out.update(low_rate=mode.low_rate, low_p50_ms=low["p50_ms"], low_p99_ms=low["p99_ms"])
            out["tickvisor_out_of_order_dropped"] += low["dropped_out_of_order"]
            bare_lat = run_client("bare", sim, block(next(next_block)), n, rate=mode.latency_rate)
            out.update(bare_p50_ms=bare_lat["p50_ms"], bare_p99_ms=bare_lat["p99_ms"])
            picows_lat = run_client("bare_picows", sim, block(next(next_block)), n, rate=mode.latency_rate)
            out.update(bare_picows_p50_ms=picows_lat["p50_ms"], bare_picows_p99_ms=picows_lat["p99_ms"])
            order.append(
                lat["count"] == n and lat["gaps"] == 0 and bare_lat["count"] == n and picows_lat["count"] == n
            )
            assert pipeline is not None
            pl_lat = pipeline.measure(sim, n, rate=mode.latency_rate)
            pl_low = pipeline.measure(sim, int(mode.low_rate * mode.latency_s / 2), rate=mode.low_rate)
            out.update(
                pipeline_p50_ms=pl_lat["p50_ms"],
                pipeline_p99_ms=pl_lat["p99_ms"],
                pipeline_low_p50_ms=pl_low["p50_ms"],
            )
            order.append(in_order(pl_lat, n))
            assert fused is not None
            fused_lat = fused.measure(sim, n, rate=mode.latency_rate)
            out.update(fused_pipeline_p50_ms=fused_lat["p50_ms"], fused_pipeline_p99_ms=fused_lat["p99_ms"])
            # CPU per tick at the pace: ~25 ticks a batch, so each stage's wake-up per batch counts.
            out["paced_cpu_s_per_mtick"] = lat.get("cpu_s_per_mtick", -1.0)
            out["pipeline_paced_cpu_s_per_mtick"] = per_mtick(pl_lat, "cpu_s")
            out["fused_pipeline_paced_cpu_s_per_mtick"] = per_mtick(fused_lat, "cpu_s")
            order.append(in_order(fused_lat, n))
            for name, result in (
                ("tickvisor", lat), ("pipeline", pl_lat), ("fused", fused_lat), ("bare", bare_lat),
                ("bare_picows", picows_lat),
            ):  # fmt: skip
                hists[name] = result.get("latency_hist", [])
            out["tickvisor_out_of_order_dropped"] += lat["dropped_out_of_order"]

            naive = churn_and_naive(mode, out, system, sim, naive_codes) if side is None else side.result()
            order.append(naive["gaps"] == 0 and naive["out_of_order"] == 0)
            out["order_ok"] = all(order)
        finally:
            side_pool.shutdown(wait=False, cancel_futures=True)
            for floor in (pipeline, fused):
                if floor is not None:
                    floor.stop()
            shutil.rmtree(workdir, ignore_errors=True)
            system.stop_quietly()


#: The stages of the data path that ``per_stage`` reports: (the BENCH key's stage, its name there).
STAGES = (("connection", "connection"), ("decoder", "decoder"), ("strategy", "strategy"), ("rest", "other"))


def per_stage(out: dict[str, Any]) -> None:
    """``stage_us_per_tick`` (CPU microseconds per tick of the connection, the busiest decoder, the
    strategy, and "other": Ray's and the job's other processes) and ``ceiling_tps``, the single
    connection's ceiling on a host with a core per stage: 1e6 / the busiest data-path stage's
    microseconds (0.0 when none could be read, as in a burst shorter than a CPU clock tick). "other"
    is shown but not a stage of that ceiling: it is the sum of some thirty processes, none in the
    ticks' path, that a many-core host spreads over its spare cores.
    CPU seconds per million ticks are microseconds per tick: the figures are the ``*_cpu_s_per_mtick``.
    """
    stage_us = {name: out.get(f"{key}_cpu_s_per_mtick", 0.0) for key, name in STAGES}
    out["stage_us_per_tick"] = stage_us
    busiest = max(us for name, us in stage_us.items() if name != "other")
    out["ceiling_tps"] = 1e6 / busiest if busiest > 0 else 0.0
    log(
        "per stage, CPU us per tick: "
        + ", ".join(f"{name} {us:.2f}" for name, us in stage_us.items())
        + f"; ceiling with a core per stage {out['ceiling_tps']:,.0f} ticks/s"
    )


def churn_and_naive(
    mode: Mode, out: dict[str, Any], system: System, sim: SimProcess, naive_codes: list[str]
) -> dict[str, Any]:
    """``churn``, then the naive pipeline on ``naive_codes``: its figures into ``out``; returns its result."""
    churn(mode, out, system, sim)
    log(f"naive: one Ray call per tick, {mode.naive} ticks (or {mode.naive_cap_s:g} s)")
    naive = run_naive(sim, naive_codes, mode.naive, mode.naive_cap_s)
    out["naive_tps"] = naive["tps"]
    out["naive_ticks"] = naive["count"]
    return naive


def churn(mode: Mode, out: dict[str, Any], system: System, sim: SimProcess) -> None:
    """Many strategies subscribing and unsubscribing overlapping stock codes at once."""
    import ray

    from scripts.bench.churn import Churn
    from scripts.simulator import max_requests_in_window

    pool = [f"S{i:04d}.US" for i in range(1, 41)]
    names = [f"churn-{i}" for i in range(mode.churn_strategies)]
    log(f"churn: {len(names)} strategies x {mode.churn_rate:g} ops/s, {mode.churn_s:g} s, {len(pool)} codes")
    before = sim.state()["totals"].get("429", 0)
    actor: Any = (
        ray.remote(Churn).options(num_cpus=0, namespace=system.namespace).remote(system.actor("registry"))
    )
    try:
        result = ray.get(
            actor.run.remote(names, pool, mode.churn_rate, mode.churn_s), timeout=mode.churn_s + 120
        )
    finally:
        ray.kill(actor)
    last_op = result["last_op"]
    converged_at = None
    with contextlib.suppress(WaitTimeoutError):
        wait_for(lambda: in_sync(system, sim, STOCK_PATH), 15, what="the churn converged")
        converged_at = time.monotonic()
    reg = system.registry()
    union = {c for c in reg.union if c.endswith(STOCK_SUFFIXES)}
    held = set().union(*map(set, result["held"].values()))
    state = sim.state()
    requests = 0
    for conn in state["connections"] + state["closed"]:
        if conn["path"] == STOCK_PATH:
            recent = {"requests": [r for r in conn["requests"] if r[0] >= result["started"]]}
            requests = max(requests, max_requests_in_window(recent, 1.0))
    out.update(
        churn_max_req_per_conn_s=requests,
        churn_429=state["totals"].get("429", 0) - before,
        churn_converged_s=(converged_at - last_op) if converged_at else -1.0,
        churn_mismatch=len(server_set(sim, STOCK_PATH) ^ union) + len(union ^ held),
        churn_ops=result["ops"],
        churn_ops_per_s=result["ops_per_s"],
        churn_ops_wanted_per_s=mode.churn_strategies * mode.churn_rate,
        churn_errors=result["error_count"],
        churn_late_s=result["late_s"],
    )
    log(
        f"churn: {result['ops']} ops ({result['ops_per_s']:.0f}/s), converged "
        f"{out['churn_converged_s']:.2f} s after the last, {out['churn_429']} x 429, "
        f"{result['error_count']} errors"
    )


LIVENESS_CODES = block(0, 50)


def start_liveness(mode: Mode, token: str) -> tuple[SimProcess, System]:
    """The liveness phase's simulator (with its tick loop) and tickvisor, not yet waited for: its codes
    are all on the forex endpoint, so the job has no stock endpoint (two processes fewer to start).
    """
    sim = SimProcess(
        token,
        "--tick-rate",
        "20",
        "--book-rate",
        "0",
        "--codes",
        "200",
        "--token-gap-s",
        str(mode.sim_token_gap_s),
    )
    sim.start()
    log(f"liveness simulator on port {sim.port}; starting tickvisor (deadline {mode.deadline_s:g} s)")
    settings = bench_settings(
        sim.port,
        [("bench", LIVENESS_CODES)],
        heartbeat_s=0.5,
        deadline_s=mode.deadline_s,
        transport=mode.transport,
        stock=False,
    )
    return sim, System.launch(settings, token, prefix="bench", wait=False)


def phase_liveness(
    mode: Mode, out: dict[str, Any], token: str, started: tuple[SimProcess, System] | None = None
) -> None:
    """Stall trials and SIGKILLs: the simulator's own tick loop keeps ticks flowing."""
    codes = LIVENESS_CODES
    sim, system = started or start_liveness(mode, token)
    with sim:
        try:
            system.wait_started()
            strategy = system.actor("strategy:bench")
            wait_for(lambda: in_sync(system, sim, FOREX_PATH, set(codes)), 30, what="tickvisor subscribed")
            out["deadline_s"] = mode.deadline_s
            out["seed_detect_s"] = SEED_DETECT_S
            detect, resub = [], []
            for trial in range(mode.stall_trials):
                d, r = stall_trial(system, sim, strategy, codes, mode.quiet_s)
                log(f"stall {trial + 1}/{mode.stall_trials}: detected {d:.2f} s, resubscribed {r:.2f} s")
                detect.append(d)
                resub.append(r)
            out["stall_detect_s"] = statistics.median(detect)
            out["stall_resubscribed_s"] = statistics.median(resub)
            out["stall_resubscribed_max_s"] = max(resub)

            lost = 0
            for child, key in (("connection:forex_crypto-0", "conn"), ("registry", "registry")):
                k = kill_trial(system, sim, strategy, codes, child, mode.quiet_s)
                log(
                    f"SIGKILL {child}: Ray's new process up after {k['restarted']:.2f} s, set accepted after "
                    f"{k['accepted']:.2f} s, ticks flowing after {k['flowing']:.2f} s, in sync after "
                    f"{k['in_sync']:.2f} s, {k['lost']:.0f} subscriptions lost"
                )
                out[f"kill_{key}_recover_s"] = k["flowing"]
                out[f"kill_{key}_in_sync_s"] = k["in_sync"]
                out[f"kill_{key}_restarted_s"] = k["restarted"]
                lost += int(k["lost"])
            out["kill_lost_subscriptions"] = lost
        finally:
            system.stop_quietly()


def quiet_since_last_request(sim: SimProcess, path: str, gap_s: float) -> None:
    """Wait until ``gap_s`` after the last subscription request on ``path`` (PROTOCOL.md: 3 s across
    the connections of a token), so that a reconnect is not held back by the rate limit.
    """
    state = sim.state()
    times = [r[0] for c in state["connections"] + state["closed"] if c["path"] == path for r in c["requests"]]
    if times:
        wait = max(times) + gap_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)


def flowing(strategy: Any, system: System, before: dict[str, int], codes: list[str]) -> bool:
    seen = system.get(strategy.bench_last_seqs.remote())
    return all(seen.get(c, -1) > before.get(c, -1) for c in codes)


def stall_trial(
    system: System, sim: SimProcess, strategy: Any, codes: list[str], quiet_s: float
) -> tuple[float, float]:
    """Stall the live connection; (stall to detection, stall to the full set accepted on a new one)."""
    wait_for(lambda: in_sync(system, sim, FOREX_PATH, set(codes)), 30, what="in sync before the stall")
    quiet_since_last_request(sim, FOREX_PATH, quiet_s)
    before = system.get(strategy.bench_last_seqs.remote())
    wait_for(lambda: flowing(strategy, system, before, codes), 10, what="ticks before the stall")
    old = sim.find_conn(codes)
    started, started_wall = time.monotonic(), time.time()
    sim.fault("stall", conn=old)

    def accepted_on_new() -> float | None:
        for conn in sim.state()["connections"]:
            if conn["id"] != old and conn["path"] == FOREX_PATH and conn["trades"] == sorted(codes):
                ok = [r[0] for r in conn["requests"] if r[2] == 200]
                return ok[0] if ok else None
        return None

    accepted = wait_for(accepted_on_new, 30, what="the full set on a new connection")
    events = system.get(system.sup.status.remote())["events"]
    restarts = [
        e["at"]
        for e in events
        if e["event"] == "restart" and e["child"].startswith("connection:") and e["at"] >= started_wall
    ]
    detected = (min(restarts) - started_wall) if restarts else -1.0
    return detected, accepted - started


def kill_trial(  # noqa: PLR0917
    system: System, sim: SimProcess, strategy: Any, codes: list[str], child: str, quiet_s: float
) -> dict[str, float]:
    """SIGKILL ``child``. Returns seconds from the kill to: a new tick on every code (``flowing``), the
    registry in sync with the server (``in_sync``), Ray's new process reporting in (``restarted``), the
    server accepting the set again (``accepted``, -1 if it was never dropped); and ``lost`` codes.
    """
    wait_for(lambda: in_sync(system, sim, FOREX_PATH, set(codes)), 30, what=f"in sync before killing {child}")
    quiet_since_last_request(sim, FOREX_PATH, quiet_s)
    pid = system.pids()[child]
    killed, killed_wall = time.monotonic(), time.time()
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)  # ticks already in the pipeline when the socket died are not "flowing again"
    before = system.get(strategy.bench_last_seqs.remote())
    wait_for(lambda: flowing(strategy, system, before, codes), 30, what=f"ticks after killing {child}")
    out = {"flowing": time.monotonic() - killed}
    wait_for(lambda: system.pids().get(child) not in (None, pid), 30, what=f"{child} restarted")
    try:
        wait_for(lambda: in_sync(system, sim, FOREX_PATH), 30, what=f"in sync after killing {child}")
        out["in_sync"] = time.monotonic() - killed
    except TimeoutError:
        out["in_sync"] = -1.0
    events = system.get(system.sup.status.remote())["events"]
    restarted = [
        e["at"]
        for e in events
        if e["child"] == child and e["event"] == "restarted" and e["at"] >= killed_wall
    ]
    out["restarted"] = (min(restarted) - killed_wall) if restarted else -1.0
    state = sim.state()
    accepted = [
        r[0]
        for c in state["connections"] + state["closed"]
        if c["path"] == FOREX_PATH
        for r in c["requests"]
        if r[0] >= killed and r[2] == 200
    ]
    out["accepted"] = (min(accepted) - killed) if accepted else -1.0
    union = set(system.registry().union)
    out["lost"] = len(set(codes) - server_set(sim, FOREX_PATH)) + len(set(codes) - union)
    return out
