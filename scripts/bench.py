"""Benchmark tickvisor against the simulator on 127.0.0.1, beside its baselines, in one run.

    python scripts/bench.py            # full: 3 rounds of every throughput figure, about 5 minutes
    python scripts/bench.py --quick    # 1 round, within 3 minutes on a 2-core machine
    python scripts/bench.py --smoke    # tiny counts, well under a minute: checks the machinery only

It prints a markdown table and, as its very last line, ``BENCH {json}``. Every figure is measured in
this run, beside its baselines: the machine is shared and noisy, the ratios are what count.

What runs where:

* The simulator (scripts/simulator.py) runs in its own process; its unpaced burst is fully encoded
  before its first byte is written, so that it delivers far faster than any client consumes
  (``sim_fps`` checks that with a reader that only counts frame headers).
* One ``ray.init(address="local")`` for the whole run. tickvisor is started as tests/conftest.py's
  System does (actors.control.Job): a Supervisor actor with Settings from actors.core.settings.parse_settings, here with
  scripts.bench_strategy:BenchStrategy as the strategy.
* Baselines: ``seed`` and ``bare`` (scripts/bench_clients.py) each in their own process; ``naive``
  (scripts/bench_naive.py) as two Ray actors making one Ray call per tick.

Figures (the BENCH keys):

* Throughput over a burst of 200k ticks (``--burst``) across 100 codes on one connection, counted
  inside one strategy with per-code order checked: ``tps``, ``seed_tps``, ``bare_tps`` (median of the
  rounds), ``naive_tps`` (over fewer ticks in --quick: one Ray call per tick is slow). ``order_ok``: every
  consumer got every tick, in order, without a gap; ``tickvisor_out_of_order_dropped``: ticks tickvisor's
  strategy base class dropped because they arrived after a later one.
* Latency from the simulator's send time to the strategy at a paced 20k ticks/s: ``p50_ms``,
  ``p99_ms``. ``latency_exact`` says whether the ticks carried the simulator's ``sent_ns`` (actors.core.wire.Tick
  passes it on); if not, the send time is taken from ``tick_time`` (ms, so +-0.5 ms per sample).
  ``read_p50_ms``/``read_p99_ms``: the exact connection-read-to-strategy part; ``bare_p50_ms``/
  ``bare_p99_ms``: the bare client at the same pace, exact. ``latency_tps``: the rate tickvisor delivered
  at that pace (below it, queues grew); ``low_p50_ms``/``low_p99_ms``: tickvisor at ``low_rate`` (2k/s).
* Liveness, a ``stall`` injected on the live connection, 5 times: ``stall_detect_s``
  (stall to the supervisor's restart decision, median), ``stall_resubscribed_s`` (stall to the server
  accepting the full set on a new connection, median), ``deadline_s`` (the configured silence deadline);
  ``seed_detect_s``: the seed's watchdog (a check every 5 s, 20 s threshold) detects at 20 + U(0, 5) s,
  median 22.5 s.
* Churn: 50 strategies each doing 20 subscribe/unsubscribe operations per second over a shared pool of
  40 codes for 10 s (scripts/bench_churn.py): ``churn_max_req_per_conn_s``, ``churn_429``,
  ``churn_converged_s`` (last operation to server set == registry union), ``churn_mismatch``;
  ``churn_ops_per_s``: the rate the registry actually sustained (``churn_ops_wanted_per_s`` asked).
* Recovery, SIGKILL in a live run: ``kill_conn_recover_s``, ``kill_registry_recover_s`` (kill to a new
  tick on every code), ``kill_lost_subscriptions``; ``kill_*_in_sync_s``: kill to the registry in sync
  with the server again; ``kill_*_restarted_s``: kill to Ray's new process reporting in.
* Cost, over tickvisor's throughput burst: ``cpu_s_per_mtick`` (CPU seconds of every process of the job:
  driver, Ray's own processes and all actors, per million ticks), ``rss_mb`` (their summed RSS; ``pss_mb``
  counts shared pages once).

Every measured consumer runs at the same niceness (``--niceness``, default 0; Ray's own default for its
workers is 15), so that on a shared machine none is starved more than the others.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors.control import Job  # noqa: E402
from scripts.bench_sim import FOREX_PATH, STOCK_PATH, SimProcess, cpu_seconds, pss_mb, rss_mb, tree  # noqa: E402

SEED_CHECK_EVERY_S = 5.0  # the seed article's watchdog
SEED_SILENT_AFTER_S = 20.0
SEED_DETECT_S = SEED_SILENT_AFTER_S + SEED_CHECK_EVERY_S / 2  # median of 20 + U(0, 5)
STOCK_SUFFIXES = (".US", ".HK", ".SH", ".SZ")
POLL_S = 0.02
LOW_RATE = 2000.0  # ticks/s of a second, light paced burst: latency when nothing queues
NICENESS = 0  # of the baseline client processes; the same as Ray's workers (--niceness)


@dataclass(frozen=True)
class Mode:
    """Sizes of one benchmark mode."""

    name: str
    burst: int  # ticks per throughput burst
    rounds: int  # throughput rounds (median reported)
    naive: int  # ticks of the naive pipeline's burst
    naive_cap_s: float  # ...or this long, whichever comes first
    latency_rate: float  # ticks/s of the paced burst
    latency_s: float
    stall_trials: int
    churn_strategies: int
    churn_rate: float  # operations per second per strategy
    churn_s: float
    deadline_s: float  # feed.silence_deadline_s of the liveness system
    quiet_s: float  # before each stall and kill: time since the last subscription request (token gap)
    hard_cap_s: float  # the whole run is stopped after this


MODES = {
    "smoke": Mode(
        "smoke",
        burst=3000,
        rounds=1,
        naive=300,
        naive_cap_s=10,
        latency_rate=2000,
        latency_s=0.5,
        stall_trials=1,
        churn_strategies=4,
        churn_rate=5,
        churn_s=1.5,
        deadline_s=1.5,
        quiet_s=0.0,
        hard_cap_s=150,
    ),
    "quick": Mode(
        "quick",
        burst=200_000,
        rounds=1,
        naive=20_000,
        naive_cap_s=15,
        latency_rate=20_000,
        latency_s=3.0,
        stall_trials=5,
        churn_strategies=50,
        churn_rate=20,
        churn_s=10,
        deadline_s=1.5,
        quiet_s=3.2,
        hard_cap_s=400,
    ),
    "full": Mode(
        "full",
        burst=200_000,
        rounds=3,
        naive=200_000,
        naive_cap_s=60,
        latency_rate=20_000,
        latency_s=5.0,
        stall_trials=5,
        churn_strategies=50,
        churn_rate=20,
        churn_s=10,
        deadline_s=1.5,
        quiet_s=3.2,
        hard_cap_s=1200,
    ),
}

#: Every key of the BENCH line that the issue asks for.
REQUIRED_KEYS = (
    "tps",
    "seed_tps",
    "bare_tps",
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
)


def log(message: str) -> None:
    """Progress on stderr (stdout carries the table and the BENCH line)."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def block(k: int, size: int = 100) -> list[str]:
    """The k-th block of ``size`` generated forex/crypto codes: a fresh set for every client run."""
    return [f"C{i:04d}USDT" for i in range(k * size + 1, (k + 1) * size + 1)]


def wait_until(condition: Callable[[], Any], timeout: float, what: str, every: float = POLL_S) -> Any:
    """Poll ``condition`` until truthy; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# --- tickvisor ------------------------------------------------------------------------------------------


def settings_toml(
    port: int, strategies: list[tuple[str, list[str]]], *, heartbeat_s: float, deadline_s: float
) -> str:
    """A tickvisor config against the simulator on ``port``."""
    lines = [
        "[feed]",
        'token_env = "TICKVISOR_BENCH_TOKEN"',
        f"heartbeat_interval_s = {heartbeat_s}",
        f"silence_deadline_s = {deadline_s}",
        "ping_deadline_s = 1.0",
        "[restart]",
        "max_restarts = 50",
        "within_s = 60.0",
        "backoff_initial_s = 0.1",
        "backoff_max_s = 2.0",
        "[endpoints.stock]",
        f'url = "ws://127.0.0.1:{port}{STOCK_PATH}"',
        "[endpoints.forex_crypto]",
        f'url = "ws://127.0.0.1:{port}{FOREX_PATH}"',
    ]
    for name, symbols in strategies:
        lines += [
            "[[strategies]]",
            f'name = "{name}"',
            'kind = "scripts.bench_strategy:BenchStrategy"',
            f"symbols = {json.dumps(symbols)}",
        ]
    return "\n".join(lines) + "\n"


class System(Job):
    """tickvisor started as the tests start it (actors.control.Job), in a ``bench-`` namespace."""

    @classmethod
    def from_toml(cls, toml: str, token: str, *, wait: bool = True) -> System:
        from actors.core.settings import parse_settings

        job = cls.start(parse_settings(toml, source="<bench>"), token, prefix="bench", wait=wait)
        assert isinstance(job, System)
        return job

    def stop(self, timeout: float = 20.0) -> None:
        try:
            super().stop(timeout)
        except Exception as exc:  # noqa: BLE001 - stopping anyway
            log(f"supervisor stop: {type(exc).__name__}: {exc}")


def server_set(sim: SimProcess, path: str) -> set[str]:
    """The union of the trade sets of the open connections on ``path``."""
    out: set[str] = set()
    for conn in sim.state()["connections"]:
        if conn["open"] and conn["path"] == path:
            out.update(conn["trades"])
    return out


def in_sync(system: System, sim: SimProcess, path: str, expected: set[str] | None = None) -> bool:
    """Registry in sync, and the server's set on ``path`` equals the registry's union there."""
    reg = system.registry()
    stock = path == STOCK_PATH
    union = {c for c in reg.union if c.endswith(STOCK_SUFFIXES) == stock}
    return reg.in_sync and server_set(sim, path) == union and (expected is None or union == expected)


# --- running one consumer -----------------------------------------------------------------------------


class Client:
    """A baseline client process (scripts/bench_clients.py), its output read line by line."""

    def __init__(self, kind: str, url: str, codes: list[str], count: int, *, latency: bool = False) -> None:
        cmd = [
            sys.executable,
            str(ROOT / "scripts" / "bench_clients.py"),
            kind,
            "--url",
            url,
            "--codes",
            ",".join(codes),
            "--count",
            str(count),
        ]
        if latency:
            cmd.append("--latency")
        nice = NICENESS
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,  # noqa: PLW1509 - os.nice only
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")

    def expect(self, prefix: str, timeout: float) -> str:
        """The next line starting with ``prefix`` (its rest)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"client printed no {prefix} within {timeout:.0f} s") from None
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"client exited ({self.proc.returncode}) before {prefix}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def run_client(
    kind: str, sim: SimProcess, codes: list[str], count: int, *, rate: float | None = None
) -> dict[str, Any]:
    """One baseline run: the client subscribes, the simulator bursts, the client reports."""
    client = Client(kind, sim.url(FOREX_PATH), codes, count, latency=rate is not None)
    try:
        client.expect("READY", 30)
        conn = sim.find_conn(codes)
        sim.fault("burst", conn=conn, count=count, **({"rate": rate} if rate else {}))
        expected_s = count / (rate or 5000)
        result = json.loads(client.expect("RESULT", 30 + expected_s))
    finally:
        client.close()
    if result["count"] != count or result.get("gaps") or result.get("out_of_order"):
        state = sim.state()
        pushes = [c["pushes"] for c in state["connections"] + state["closed"] if c["id"] == conn]
        log(
            f"{kind}: got {result['count']} of {count} ticks (gaps {result.get('gaps')}, out of order "
            f"{result.get('out_of_order')}); the simulator wrote {pushes} pushes on that connection"
        )
    log(
        f"{kind}: {result['count']} ticks, {result['tps']:.0f}/s"
        + (f", p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms" if rate else "")
    )
    return result


def run_tickvisor(
    system: System,
    sim: SimProcess,
    codes: list[str],
    count: int,
    job_pids: list[int],
    *,
    rate: float | None = None,
) -> dict[str, Any]:
    """One burst into tickvisor; counted inside the bench strategy. CPU of the job sampled alongside."""
    strategy = system.actor("strategy:bench")
    system.get(strategy.bench_reset.remote(rate is not None))
    conn = sim.find_conn(codes)
    injected_cpu = cpu_seconds(job_pids)
    sim.fault("burst", conn=conn, count=count, **({"rate": rate} if rate else {}))
    first: tuple[int, float] | None = None
    last_change, last_count = time.monotonic(), -1
    deadline = time.monotonic() + 60 + count / (rate or 5000)
    while True:
        cpu = cpu_seconds(job_pids)
        result = system.get(strategy.bench_result.remote())
        n = result["count"]
        if n and first is None:
            first = (n, cpu)
        now = time.monotonic()
        if n != last_count:
            last_change, last_count = now, n
        if (
            n + result["dropped_out_of_order"] + result["missed"] >= count
            or now - last_change > 5.0
            or now > deadline
        ):
            break
        time.sleep(0.1)
    if first is not None and n - first[0] >= n // 2:  # sampled inside the burst
        result["cpu_s_per_mtick"] = (cpu - first[1]) / (n - first[0]) * 1e6
    elif n:  # a burst shorter than the sampling: from the injection on (the simulator's encoding included)
        result["cpu_s_per_mtick"] = (cpu - injected_cpu) / n * 1e6
    log(
        f"tickvisor: {n} ticks, {result['tps']:.0f}/s, missed {result['missed']}, gaps {result['gaps']}, "
        f"dropped as out of order {result['dropped_out_of_order']}"
        + (f", p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms" if rate else "")
    )
    return result


def run_naive(sim: SimProcess, codes: list[str], count: int, cap_s: float) -> dict[str, Any]:
    """The naive pipeline: one Ray call per tick, from a connection-like actor to a sink actor."""
    import ray

    from scripts.bench_naive import NaiveConnection, NaiveSink

    sink = ray.remote(NaiveSink).options(num_cpus=0).remote()
    conn = ray.remote(NaiveConnection).options(num_cpus=0).remote(sim.url(FOREX_PATH), codes, sink)
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


def phase_throughput(mode: Mode, out: dict[str, Any], token: str) -> None:
    """Throughput, latency, churn and cost: simulator without a tick loop (bursts only)."""
    codes = block(0)
    with SimProcess(
        token, "--tick-rate", "0", "--book-rate", "0", "--codes", "3000"
    ) as sim:
        log(f"simulator on port {sim.port}; starting tickvisor")
        system = System.from_toml(
            settings_toml(sim.port, [("bench", codes)], heartbeat_s=2.0, deadline_s=6.0), token
        )
        try:
            wait_until(lambda: in_sync(system, sim, FOREX_PATH, set(codes)), 30, "tickvisor subscribed")
            job_pids = tree(os.getpid(), exclude=[sim.pid])
            next_block = iter(range(1, 30))

            raw = run_client("raw", sim, block(next(next_block)), mode.burst)
            out["sim_fps"] = raw["tps"]

            runs: dict[str, list[dict[str, Any]]] = {"tickvisor": [], "bare": [], "seed": []}
            for r in range(mode.rounds):
                log(f"throughput round {r + 1}/{mode.rounds}: {mode.burst} ticks over 100 codes")
                runs["bare"].append(run_client("bare", sim, block(next(next_block)), mode.burst))
                runs["tickvisor"].append(run_tickvisor(system, sim, codes, mode.burst, job_pids))
                if r == 0:
                    pids = tree(os.getpid(), exclude=[sim.pid])
                    out["rss_mb"] = rss_mb(pids)
                    out["pss_mb"] = pss_mb(pids)
                    out["job_processes"] = len(pids)
                runs["seed"].append(run_client("seed", sim, block(next(next_block)), mode.burst))

            def median(name: str, key: str) -> float:
                values = [r[key] for r in runs[name] if key in r]
                return statistics.median(values) if values else -1.0

            out["tps"] = median("tickvisor", "tps")
            out["bare_tps"] = median("bare", "tps")
            out["seed_tps"] = median("seed", "tps")
            out["cpu_s_per_mtick"] = median("tickvisor", "cpu_s_per_mtick")
            out["bare_cpu_s_per_mtick"] = statistics.median(
                r["cpu_s"] / max(r["count"], 1) * 1e6 for r in runs["bare"]
            )
            out["seed_cpu_s_per_mtick"] = statistics.median(
                r["cpu_s"] / max(r["count"], 1) * 1e6 for r in runs["seed"]
            )
            out["tickvisor_missed"] = sum(r["missed"] for r in runs["tickvisor"])
            out["tickvisor_out_of_order_dropped"] = sum(r["dropped_out_of_order"] for r in runs["tickvisor"])
            order = [
                r["count"] == mode.burst and r["gaps"] == 0 and r["out_of_order"] == 0
                for rs in runs.values()
                for r in rs
            ]

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
            low = run_tickvisor(
                system, sim, codes, int(LOW_RATE * mode.latency_s / 2), job_pids, rate=LOW_RATE
            )
            out.update(low_rate=LOW_RATE, low_p50_ms=low["p50_ms"], low_p99_ms=low["p99_ms"])
            out["tickvisor_out_of_order_dropped"] += low["dropped_out_of_order"]
            bare_lat = run_client("bare", sim, block(next(next_block)), n, rate=mode.latency_rate)
            out.update(bare_p50_ms=bare_lat["p50_ms"], bare_p99_ms=bare_lat["p99_ms"])
            order.append(lat["count"] == n and lat["gaps"] == 0 and bare_lat["count"] == n)
            out["tickvisor_out_of_order_dropped"] += lat["dropped_out_of_order"]

            churn(mode, out, system, sim)

            log(f"naive: one Ray call per tick, {mode.naive} ticks (or {mode.naive_cap_s:g} s)")
            naive = run_naive(sim, block(next(next_block)), mode.naive, mode.naive_cap_s)
            out["naive_tps"] = naive["tps"]
            out["naive_ticks"] = naive["count"]
            order.append(naive["gaps"] == 0 and naive["out_of_order"] == 0)
            out["order_ok"] = all(order)
        finally:
            system.stop()


def churn(mode: Mode, out: dict[str, Any], system: System, sim: SimProcess) -> None:
    """Many strategies subscribing and unsubscribing overlapping stock codes at once."""
    import ray

    from scripts.bench_churn import Churn
    from scripts.simulator import max_requests_in_window

    pool = [f"S{i:04d}.US" for i in range(1, 41)]
    names = [f"churn-{i}" for i in range(mode.churn_strategies)]
    log(f"churn: {len(names)} strategies x {mode.churn_rate:g} ops/s, {mode.churn_s:g} s, {len(pool)} codes")
    before = sim.state()["totals"].get("429", 0)
    actor = ray.remote(Churn).options(num_cpus=0, namespace=system.namespace).remote(system.actor("registry"))
    try:
        result = ray.get(
            actor.run.remote(names, pool, mode.churn_rate, mode.churn_s), timeout=mode.churn_s + 120
        )
    finally:
        ray.kill(actor)
    last_op = result["last_op"]
    converged_at = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if in_sync(system, sim, STOCK_PATH):
            converged_at = time.monotonic()
            break
        time.sleep(POLL_S)
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
    """The liveness phase's simulator (with its tick loop) and tickvisor, not yet waited for."""
    sim = SimProcess(token, "--tick-rate", "20", "--book-rate", "0", "--codes", "200")
    sim.start()
    log(f"liveness simulator on port {sim.port}; starting tickvisor (deadline {mode.deadline_s:g} s)")
    toml = settings_toml(sim.port, [("bench", LIVENESS_CODES)], heartbeat_s=0.5, deadline_s=mode.deadline_s)
    return sim, System.from_toml(toml, token, wait=False)


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
            wait_until(lambda: in_sync(system, sim, FOREX_PATH, set(codes)), 30, "tickvisor subscribed")
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
            system.stop()


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
    wait_until(lambda: in_sync(system, sim, FOREX_PATH, set(codes)), 30, "in sync before the stall")
    quiet_since_last_request(sim, FOREX_PATH, quiet_s)
    before = system.get(strategy.bench_last_seqs.remote())
    wait_until(lambda: flowing(strategy, system, before, codes), 10, "ticks before the stall")
    old = sim.find_conn(codes)
    started, started_wall = time.monotonic(), time.time()
    sim.fault("stall", conn=old)

    def accepted_on_new() -> float | None:
        for conn in sim.state()["connections"]:
            if conn["id"] != old and conn["path"] == FOREX_PATH and conn["trades"] == sorted(codes):
                ok = [r[0] for r in conn["requests"] if r[2] == 200]
                return ok[0] if ok else None
        return None

    accepted = wait_until(accepted_on_new, 30, "the full set on a new connection")
    events = system.get(system.sup.status.remote())["events"]
    restarts = [
        e["at"]
        for e in events
        if e["event"] == "restart" and e["child"].startswith("connection:") and e["at"] >= started_wall
    ]
    detected = (min(restarts) - started_wall) if restarts else -1.0
    return detected, accepted - started


def kill_trial(
    system: System, sim: SimProcess, strategy: Any, codes: list[str], child: str, quiet_s: float
) -> dict[str, float]:
    """SIGKILL ``child``. Returns seconds from the kill to: a new tick on every code (``flowing``), the
    registry in sync with the server (``in_sync``), Ray's new process reporting in (``restarted``), the
    server accepting the set again (``accepted``, -1 if it was never dropped); and ``lost`` codes.
    """
    wait_until(lambda: in_sync(system, sim, FOREX_PATH, set(codes)), 30, f"in sync before killing {child}")
    quiet_since_last_request(sim, FOREX_PATH, quiet_s)
    pid = system.pids()[child]
    killed, killed_wall = time.monotonic(), time.time()
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)  # ticks already in the pipeline when the socket died are not "flowing again"
    before = system.get(strategy.bench_last_seqs.remote())
    wait_until(lambda: flowing(strategy, system, before, codes), 30, f"ticks after killing {child}")
    out = {"flowing": time.monotonic() - killed}
    wait_until(lambda: system.pids().get(child) not in (None, pid), 30, f"{child} restarted")
    try:
        wait_until(lambda: in_sync(system, sim, FOREX_PATH), 30, f"in sync after killing {child}")
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


# --- report ---------------------------------------------------------------------------------------------


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


#: Upper bounds of the benchmark issue: (key, bound, value format); a missing key counts as missed.
UPPER_BOUNDS: list[tuple[str, float, str]] = [
    ("p50_ms", 2, ".2f"),
    ("p99_ms", 5, ".2f"),
    ("churn_429", 0, "d"),
    ("churn_max_req_per_conn_s", 1, "d"),
    ("churn_converged_s", 1.5, ".2f"),
    ("churn_mismatch", 0, "d"),
    ("kill_conn_recover_s", 2.5, ".2f"),
    ("kill_registry_recover_s", 2.5, ".2f"),
    ("kill_lost_subscriptions", 0, "d"),
]
#: Throughput ratios: (tickvisor over this baseline) at least (factor), shown with (format) and (suffix).
RATIOS: list[tuple[str, float, str, str]] = [
    ("seed_tps", 6, ".1f", "x"),
    ("bare_tps", 0.85, ".2f", ""),
    ("naive_tps", 40, ".1f", "x"),
]


def targets(r: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(figure, value, target, met) rows of the table."""
    g = r.get
    rows = [
        (
            f"tps / {base}",
            f"{ratio(g('tps', 0), g(base, 0)):{spec}}{suffix}",
            f">= {factor:g}{suffix}",
            g("tps", 0) >= factor * g(base, math.inf),
        )
        for base, factor, spec, suffix in RATIOS
    ]
    for key, bound, spec in UPPER_BOUNDS[:2]:
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
    for key, bound, spec in UPPER_BOUNDS[2:]:
        value = g(key, -1)
        shown = f"{value:{spec}}" if spec != "d" else f"{value}"
        rows.append((key, shown, f"= {bound:g}" if bound == 0 else f"<= {bound:g}", 0 <= value <= bound))
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
        f"## tickvisor benchmark ({mode.name}: bursts of {mode.burst} ticks over 100 codes on one "
        f"connection, {mode.rounds} round(s), median)",
        "",
        row("figure", "tickvisor", "seed", "bare", "naive", "note"),
        row("---", "---:", "---:", "---:", "---:", "---"),
        row(
            "ticks/s",
            f("tps", ".0f"),
            f("seed_tps", ".0f"),
            f("bare_tps", ".0f"),
            f("naive_tps", ".0f"),
            f"simulator delivers {f('sim_fps', '.0f')}/s to a header-only reader; naive over "
            f"{f('naive_ticks')} ticks",
        ),
        row(
            "CPU s per Mtick",
            f("cpu_s_per_mtick", ".1f"),
            f("seed_cpu_s_per_mtick", ".1f"),
            f("bare_cpu_s_per_mtick", ".1f"),
            "",
            "tickvisor: every process of the job; baselines: their one",
        ),
        row(
            f"latency p50 / p99 ms @ {mode.latency_rate:.0f}/s",
            pair("p50_ms", "p99_ms"),
            "",
            pair("bare_p50_ms", "bare_p99_ms"),
            "",
            f"tickvisor exact: {f('latency_exact')}; connection read to strategy "
            f"{pair('read_p50_ms', 'read_p99_ms')}; delivered {f('latency_tps', '.0f')}/s",
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
            "memory",
            f"RSS {f('rss_mb', '.0f')} MB (PSS {f('pss_mb', '.0f')} MB), {f('job_processes')} processes",
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


@contextlib.contextmanager
def hard_cap(seconds: float) -> Iterator[None]:
    """Stop the run (and clean up) if it takes longer than ``seconds``."""

    def expired(signum: int, frame: object) -> None:  # noqa: ARG001
        raise TimeoutError(f"the benchmark took longer than its hard cap of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(int(seconds))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and the BENCH line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="one round; within 3 minutes on 2 cores")
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
    args = p.parse_args(argv)
    mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.burst is not None or args.rounds is not None:
        mode = Mode(
            **{**mode.__dict__, "burst": args.burst or mode.burst, "rounds": args.rounds or mode.rounds}
        )

    # Ray puts the driver's working directory first on its workers' sys.path: run from this tree, so that
    # the actors measured are this tree's actors.
    os.chdir(ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH", "")) if x)
    os.environ.setdefault("LOGURU_LEVEL", "WARNING")
    os.environ["RAY_worker_niceness"] = str(args.niceness)  # noqa: SIM112 - Ray's spelling
    global NICENESS  # noqa: PLW0603 - read by Client
    NICENESS = args.niceness
    import ray

    token = "bench-" + uuid.uuid4().hex[:10]
    out: dict[str, Any] = {"mode": mode.name, "niceness": args.niceness}
    started = time.monotonic()
    failed = ""
    try:
        # Ray prints its workers' deaths (the SIGKILLs are deliberate) on stdout: keep stdout for the report.
        with hard_cap(mode.hard_cap_s), contextlib.redirect_stdout(sys.stderr):
            ray.init(
                address="local",
                include_dashboard=False,
                num_cpus=2,
                logging_level=logging.WARNING,
                log_to_driver=False,
                namespace="tickvisor-bench",
            )
            early = None
            try:
                # Smoke checks the machinery only: the second system starts beside the first to save time.
                early = start_liveness(mode, token) if mode.name == "smoke" else None
                phase_throughput(mode, out, token)
                phase_liveness(mode, out, token, early)
            finally:
                if early is not None:
                    early[0].stop()
                ray.shutdown()
    except Exception as exc:  # noqa: BLE001 - reported in the BENCH line, exit code 1
        failed = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {failed}")
    out["elapsed_s"] = time.monotonic() - started
    for key in REQUIRED_KEYS:
        out.setdefault(key, -1.0)
    rows = targets(out)
    out["targets_met"] = sum(met for *_, met in rows)
    out["targets_total"] = len(rows)
    out["ok"] = not failed
    sys.stdout.write(table(out, mode) + "\n\n")
    sys.stdout.write("BENCH " + json.dumps(out, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
