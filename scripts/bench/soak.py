"""A soak: the job against the simulator under seeded random faults, checked tick by tick.

    python scripts/soak.py --minutes 30 --seed 7
    python scripts/soak.py --minutes 0.4 --seed 1 --pause 0.2 1    # tests/test_soak.py (with --address)

It starts a local Ray (or joins a running one on this machine, ``--address``) and the simulator (in
this process, on 127.0.0.1), runs the job with one checking strategy (scripts/bench/soak_strategy.py) on six
codes, and then, one fault at a time, after a pause drawn from ``--seed``, injects the next fault of a
seeded shuffle of every fault kind (each kind once per round):

    stall, blackhole, drop, ghost, malformed     the simulator's faults on a random endpoint's socket
    refuse                                       the next connection gets 606; the socket is dropped
    reply:429, reply:600, reply:603              the next subscription request is answered so; the
                                                 strategy changes its subscription to cause one (a 600
                                                 on a code added alone quarantines it: a fresh code each
                                                 time, and the strategy must be told)
    mute                                         the simulator's ``mute`` fault, if it has one (looked up
                                                 at run time; skipped with a printed note when absent)
    kill:<actor>                                 SIGKILL of the process of a random connection, decoder,
                                                 the registry, heartbeat, strategy or supervisor (pids
                                                 from Ray's GCS actor table)
    sigstop                                      SIGSTOP of a connection's process, SIGCONT 1-4 s later
    session                                      the trading session of one code (700.HK) closes and
                                                 opens on a seeded table of explicit windows drawn at
                                                 the start (``Mon-Sun HH:MM:SS-HH:MM:SS UTC``, open and
                                                 closed stretches of 20-40 s, 10-20 s in a soak under a
                                                 minute); the simulator mutes the code while it is
                                                 closed (scripts/bench/soak_sessions.py). It runs on its
                                                 own clock, beside the other faults, not in their turn

A fault has recovered when: a killed actor runs again (a new pid, ALIVE), every desired code delivered
a tick stamped after the injection (after the SIGCONT, or the end of a mute; the session code only while
its session is open, and after its last open), the server's subscribed sets equal the desired union,
and every actor of the job is ALIVE, each name once. The soak waits ``--recovery-timeout`` seconds at
most.

Checked throughout (each an invariant; the exit code is 1 when one breaks):

* no tick delivered twice (same code and seq) or out of order (seq below the last one of its code);
* no tick of a code the strategy never held;
* no tick lost outside the fault windows: a gap in a code's seq whose span (the tick_time of the ticks
  on both sides) overlaps no window [injection - 0.5 s, recovery + 1 s];
* every fault recovers; the server's sets equal the desired union after each recovery;
* no actor orphaned or duplicated; a clean stop at the end leaves no actor of the job (GCS);
* the session code never gets ``on_stale`` while its session is closed (``stale_after_s`` is shorter than
  a closed stretch); it gets ``on_session`` at each close and open (excused inside a kill's window); it
  ticks again within ``open_grace_s + stale_after_s`` of each open (excused where a fault overlaps).
  A closed stretch is a fault window of kind ``session``, and the recovery checks of the other faults
  leave the code out while it is closed.

It prints a progress line every ``--progress-every`` seconds and a table at the end, then one last
line ``SOAK {json}`` for programs. Bounded: ``--minutes`` of faults (plus start and stop), at most
``--max-faults`` faults, every wait has a deadline; loopback only. Exit codes: 0 every invariant
held, 1 one broke, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.core.settings import Settings
from scripts.bench.config import PATHS, RESTART, build, job_config, strategy
from scripts.bench.plots import plot_report, soak_plot, soak_sample, soak_series
from scripts.bench.soak_sessions import MUTE_BEFORE_S, UNMUTE_AFTER_S, Closer, Schedule
from scripts.bench.wait import WaitTimeoutError, wait_for

ROOT = Path(__file__).resolve().parents[2]

CODES = {
    "stock": ["AAPL.US", "TSLA.US", "700.HK"],
    "forex_crypto": ["EURUSD", "XAUUSD", "BTCUSDT"],
}
#: Codes the strategy adds to cause a subscription request: the simulator's generated ones, each once.
EXTRA = {
    "stock": [f"S{i:04d}.US" for i in range(1, 200)],
    "forex_crypto": [f"C{i:04d}USDT" for i in range(1, 200)],
}
KILL_TARGETS = ("connection", "decoder", "registry", "heartbeat", "strategy", "supervisor")
SIM_FAULTS = (
    "stall",
    "blackhole",
    "drop",
    "ghost",
    "malformed",
    "refuse",
    "reply:429",
    "reply:600",
    "reply:603",
)
STRATEGY = "soak"
TOKEN = "soak-token-" + uuid.uuid4().hex[:8]
TOKEN_ENV = "TICKVISOR_SOAK_TOKEN"  # noqa: S105 - the name of the variable, not a token
#: The code whose trading session opens and closes during the soak (scripts/bench/soak_sessions.py).
SESSION_CODE = "700.HK"
STALE_AFTER_S = 8.0  # per-code liveness: short enough that a closed stretch (20-40 s) would go stale...
OPEN_GRACE_S = 2.0  # ... if the session were ignored; at the open the code has this on top to tick
STALE_MARGIN_S = 2.0  # an on_stale decided just before a close may arrive this long after it
WINDOW_BEFORE_S = 0.5  # a fault window opens this long before the injection...
WINDOW_AFTER_S = 1.0  # ... and closes this long after the recovery
POLL_S = 0.25


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="soak.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=1.0, help="how long faults are injected (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seeds the fault order and times (default 0)")
    p.add_argument("--tick-rate", type=float, default=10.0, help="simulator trades/s per code (default 10)")
    p.add_argument(
        "--pause",
        type=float,
        nargs=2,
        default=(0.5, 3.0),
        metavar=("MIN", "MAX"),
        help="seconds between a recovery and the next fault, drawn uniformly (default 0.5 3)",
    )
    p.add_argument("--recovery-timeout", type=float, default=60.0, help="seconds a fault may take to recover")
    p.add_argument(
        "--max-faults", type=int, default=0, help="at most this many faults (default: 1 per second)"
    )
    p.add_argument("--progress-every", type=float, default=5.0, help="seconds between progress lines")
    p.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        default=None,
        help="write soak.png into DIR: ticks delivered over time, the fault windows shaded by kind",
    )
    p.add_argument(
        "--verbose", action="store_true", help="show the actors' logs (Ray forwards them to stderr)"
    )
    p.add_argument(
        "--address",
        default=None,
        help="join this running Ray cluster (GCS address, e.g. 127.0.0.1:6379) instead of starting a local "
        "one; its workers must import this tree (PYTHONPATH), and the actors must run on this machine: "
        "the soak signals their processes by pid",
    )
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.minutes > 24 * 60:
        p.error(f"--minutes {args.minutes}: give a number of minutes above 0 and at most 1440")
    if not 0 <= args.pause[0] <= args.pause[1]:
        p.error(f"--pause {args.pause[0]} {args.pause[1]}: give MIN <= MAX, both >= 0")
    if args.tick_rate <= 0:
        p.error(f"--tick-rate {args.tick_rate}: the check needs ticks, give a rate above 0")
    if not args.max_faults:
        args.max_faults = max(1, int(args.minutes * 60))
    return args


def soak_settings(port: int, session: str = "always") -> Settings:
    """The job under test: liveness deadlines short enough to see faults, loose enough for a shared
    machine; ``SESSION_CODE`` follows ``session``, every other code is always open.
    """
    feed = {
        "token_env": TOKEN_ENV,
        "heartbeat_interval_s": 1.0,
        "silence_deadline_s": 3.0,
        "ping_deadline_s": 5.0,
        "stale_after_s": STALE_AFTER_S,
        "open_grace_s": OPEN_GRACE_S,
        "sessions": {"*": "always", SESSION_CODE: session},
    }
    symbols = [c for codes in CODES.values() for c in codes]
    doc = job_config(
        port,
        [strategy(STRATEGY, "scripts.bench.soak_strategy:SoakChecker", symbols)],
        feed=feed,
        restart={**RESTART, "max_restarts": 10000},
    )
    return build(doc, source="<soak>")


# --- Ray's view of the job ---------------------------------------------------------------------------


def actor_table(namespace: str) -> list[tuple[str, str, int]]:
    """(name, state, pid) of every actor of ``namespace`` in Ray's GCS actor table (dead ones included)."""
    from ray._private.state import state as global_state
    from ray.core.generated import gcs_pb2

    accessor = global_state._connect_and_get_accessor()  # noqa: SLF001 - the dashboard-free state API
    rows = [gcs_pb2.ActorTableData.FromString(raw) for raw in accessor.get_actor_table(None, None)]
    state_name = gcs_pb2.ActorTableData.ActorState.Name
    return sorted((r.name, state_name(r.state), r.pid) for r in rows if r.ray_namespace == namespace)


def alive(namespace: str) -> dict[str, list[int]]:
    """Name -> pids of its ALIVE actors (more than one pid: a duplicate)."""
    out: dict[str, list[int]] = {}
    for name, state, pid in actor_table(namespace):
        if state == "ALIVE":
            out.setdefault(name, []).append(pid)
    return out


def proc_usage(pid: int) -> tuple[float, int] | None:
    """(RSS in MiB, open file descriptors) of a process, from /proc; None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:  # noqa: PTH123 - a /proc file by its path string
            rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))  # noqa: PTH208 - /proc entries are names, read as strings
    except (OSError, StopIteration, ValueError):
        return None
    return rss_kb / 1024, fds


# --- the check -------------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    target: str
    injected: float  # time.time()
    recovered: float | None = None
    problem: str = ""  # why it did not recover, if it did not
    lost_codes: list[str] = field(default_factory=list)
    old_pid: int = 0  # kill: the process killed
    code: str = ""  # reply: the code added or dropped
    since: float = 0.0  # fresh ticks must be stamped after this (time.time()): the end of a held fault

    def __post_init__(self) -> None:
        self.since = self.since or self.injected

    def window(self, now: float) -> tuple[float, float]:
        return self.injected - WINDOW_BEFORE_S, (self.recovered or now) + WINDOW_AFTER_S


@dataclass
class Gap:
    code: str
    missing: int
    after_ms: int  # tick_time of the tick before the gap
    before_ms: int  # tick_time of the tick after it


class Ledger:
    """Every delivered tick, checked as it is drained: duplicates, order, gaps, unexpected codes."""

    def __init__(self) -> None:
        self.delivered = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.unexpected: Counter[str] = Counter()
        self.gaps: list[Gap] = []
        self.last: dict[str, tuple[int, int]] = {}  # code -> (seq, tick_time_ms) of its last tick
        self.seen: dict[str, set[int]] = {}
        self.examples: list[str] = []
        self.problems: list[tuple[str, str]] = []
        self.missed_reported = 0

    def add(self, ticks: list[tuple[str, int, int]], held_ever: set[str]) -> None:
        for code, seq, tick_time in ticks:
            self.delivered += 1
            if code not in held_ever:
                self.unexpected[code] += 1
                self._example(f"{code} seq {seq}: a code the strategy never held")
                continue
            seen = self.seen.setdefault(code, set())
            if seq in seen:
                self.duplicates += 1
                self._example(f"{code} seq {seq} delivered twice")
                continue
            seen.add(seq)
            last = self.last.get(code)
            if last is not None and seq < last[0]:
                self.out_of_order += 1
                self._example(f"{code} seq {seq} after {last[0]}")
                continue
            if last is not None and seq > last[0] + 1:
                self.gaps.append(Gap(code, seq - last[0] - 1, last[1], tick_time))
            self.last[code] = (seq, tick_time)

    def _example(self, text: str) -> None:
        if len(self.examples) < 20:
            self.examples.append(text)

    def fresh(self, codes: set[str], since_ms: int) -> bool:
        """Whether every code in ``codes`` delivered a tick stamped after ``since_ms``."""
        return all(code in self.last and self.last[code][1] > since_ms for code in codes)


# --- the soak --------------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.ledger = Ledger()
        self.faults: list[Fault] = []
        self.notes: list[str] = []
        self.violations: list[str] = []
        self.held: dict[str, set[str]] = {ep: set(codes) for ep, codes in CODES.items()}
        self.held_ever: set[str] = {c for codes in CODES.values() for c in codes}
        self.quarantined: set[str] = set()
        self.extra = {ep: list(codes) for ep, codes in EXTRA.items()}
        self.stopped_pids: set[int] = set()
        self.stop = threading.Event()
        self.began = 0.0
        self.last_progress = 0.0
        self.usage: dict[str, dict[str, Any]] = {}
        self.sim: Any = None
        self.job: Any = None
        self.checker: Any = None
        self.expected_names: set[str] = set()
        self.mute_ok: bool | None = None
        self.timeline: list[tuple[float, int]] = []  # (time.time(), ticks delivered): --plots draws it
        # the trading session of SESSION_CODE (drawn at the start) and what the strategy was told of it
        self.schedule = Schedule(())
        self.closer: Closer | None = None
        self.closer_stop = threading.Event()
        self.session_ticks: list[int] = []  # tick_time (ms) of every tick of SESSION_CODE
        self.sessions_told: list[tuple[bool, float]] = []  # (open, at) of each on_session(SESSION_CODE)
        self.stale_told: list[tuple[str, float, float]] = []  # (code, silent_for_s, arrived) of each on_stale
        self.began_wall = 0.0  # time.time() when the faults began, and when the last drain ended
        self.ended_wall = 0.0

    # -- set-up and tear-down ---------------------------------------------------------------------

    def start(self) -> None:
        import ray

        from actors.control import Job
        from scripts.simulator import SimulatorThread

        self.sim = SimulatorThread(
            token=TOKEN, tick_rate=self.args.tick_rate, heartbeat_timeout=10.0, seed=self.args.seed
        )
        self.sim.start()
        # The session's stretches start now: the job's start-up (up to 180 s) and the faults fit in them.
        # They last 20-40 s, shorter in a soak under a minute (but longer than STALE_AFTER_S) to show some.
        span = 180.0 + self.args.minutes * 60 + 60.0
        stretch = min(20.0, max(STALE_AFTER_S + 2.0, self.args.minutes * 60 / 3))
        rng = random.Random(f"sessions {self.args.seed}")
        self.schedule = Schedule.draw(time.time(), span, rng, (stretch, 2 * stretch))
        sim = self.sim
        self.closer = Closer(
            self.schedule,
            mute=lambda: sim.inject("mute", code=SESSION_CODE),
            unmute=lambda: sim.inject("clear", code=SESSION_CODE),
            clock=time.time,
            stop=self.closer_stop,
        )
        self.closer.start()
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        os.environ[TOKEN_ENV] = TOKEN
        for attempt in (1, 2):
            try:
                if self.args.address:  # a running cluster: joined, and left running
                    ray.init(
                        address=self.args.address,
                        logging_level=logging.WARNING,
                        log_to_driver=self.args.verbose,
                        namespace="soak",
                    )
                else:
                    ray.init(
                        address="local",
                        num_cpus=2,
                        include_dashboard=False,
                        logging_level=logging.WARNING,
                        log_to_driver=self.args.verbose,
                        namespace="soak",
                    )
                break
            except Exception:
                # Ray gives its raylet 30 s to register; a heavily loaded machine can miss that once.
                ray.shutdown()
                if attempt == 2:
                    raise
        settings = soak_settings(self.sim.port, self.schedule.spec())
        self.job = Job.start(settings, TOKEN, prefix="soak", timeout=180.0)
        self.checker = self.job.actor(f"strategy:{STRATEGY}")
        deadline = time.monotonic() + 60
        while not self.in_sync():
            if time.monotonic() > deadline:
                raise RuntimeError("the first subscription was not in sync within 60 s")
            self.observe()
            time.sleep(POLL_S)
        self.expected_names = set(alive(self.job.namespace))

    def finish(self) -> None:
        import ray

        self.closer_stop.set()
        if self.closer is not None:
            self.closer.join(5.0)
        for pid in list(self.stopped_pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if self.job is not None:
            ns = self.job.namespace
            try:
                self.job.stop(timeout=30)
            except Exception as exc:  # noqa: BLE001 - reported as a broken invariant
                self.violations.append(f"the clean stop failed: {type(exc).__name__}: {exc}")
            left: dict[str, list[int]] = {}
            try:
                wait_for(lambda: not alive(ns), 20, what="no actor of the job left", every=0.2)
            except WaitTimeoutError:
                left = alive(ns)
            if left:
                self.violations.append(f"actors left behind after a clean stop: {sorted(left)}")
            for name in left:
                with contextlib.suppress(Exception):
                    ray.kill(ray.get_actor(name, namespace=ns), no_restart=True)
        if ray.is_initialized():
            ray.shutdown()
        if self.sim is not None:
            self.sim.stop()

    # -- observing ----------------------------------------------------------------------------------

    def desired(self) -> set[str]:
        return set().union(*self.held.values()) - self.quarantined

    def server_union(self) -> set[str]:
        return {c for conn in self.sim.state()["connections"] if conn["open"] for c in conn["trades"]}

    def in_sync(self) -> bool:
        return self.server_union() == self.desired()

    def observe(self) -> None:
        """Drain the checker into the ledger; a strategy that Ray is restarting is asked again later."""
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        try:
            got = ray.get(self.checker.drain.remote(), timeout=5)
        except (RayError, GetTimeoutError):
            return
        self.ledger.add([tuple(t) for t in got["ticks"]], self.held_ever)
        self.ledger.problems.extend(tuple(p) for p in got["problems"])
        self.ledger.missed_reported += got["missed"]
        soak_sample(self.timeline, time.time(), self.ledger.delivered)
        self.session_ticks.extend(tt for code, _, tt in got["ticks"] if code == SESSION_CODE)
        self.sessions_told.extend(
            (is_open, at) for code, is_open, at in got["sessions"] if code == SESSION_CODE
        )
        self.stale_told.extend((code, silent, arrived) for code, silent, arrived in got["stale"])
        self.progress()

    def progress(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_progress < self.args.progress_every:
            return
        self.last_progress = now
        done = [f for f in self.faults if f.recovered]
        last = self.faults[-1] if self.faults else None
        if last is None:
            what = "no fault yet"
        elif last.recovered:
            what = f"last {last.kind} ({last.target}) recovered in {last.recovered - last.injected:.2f} s"
        else:
            what = f"in {last.kind} ({last.target}) for {time.time() - last.injected:.1f} s"
        elapsed = now - self.began if self.began else 0.0  # drained during the start-up: no fault yet
        print(
            f"soak {elapsed:6.1f}/{self.args.minutes * 60:.0f} s: {len(self.faults)} faults, "
            f"{len(done)} recovered, {what}; {self.ledger.delivered} ticks, dup {self.ledger.duplicates}, "
            f"out of order {self.ledger.out_of_order}, gaps {len(self.ledger.gaps)}",
            flush=True,
        )

    def sleep(self, seconds: float) -> None:
        """Wait, observing."""
        end = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < end:
            self.observe()
            self.stop.wait(min(POLL_S, max(0.0, end - time.monotonic())))

    def record_usage(self, when: str) -> None:
        for name, pids in sorted(alive(self.job.namespace).items()):
            use = proc_usage(pids[0])
            if use is not None:
                self.usage.setdefault(name, {})[when] = (pids[0], *use)
        use = proc_usage(os.getpid())
        if use is not None:
            self.usage.setdefault("soak driver + simulator", {})[when] = (os.getpid(), *use)

    # -- faults ---------------------------------------------------------------------------------------

    def kinds(self) -> list[str]:
        kinds = [*SIM_FAULTS, *(f"kill:{t}" for t in KILL_TARGETS), "sigstop"]
        from actors.sim.faults import FAULTS

        if "mute" in FAULTS:
            kinds.append("mute")
        else:
            self.notes.append(
                "the simulator has no 'mute' fault (actors/sim/faults.py FAULTS): muted codes skipped"
            )
            print(f"soak: note: {self.notes[-1]}", flush=True)
        return kinds

    def run(self) -> None:
        kinds = self.kinds()
        self.began = time.monotonic()
        self.began_wall = time.time()
        end = self.began + self.args.minutes * 60
        self.record_usage("start")
        queue: list[str] = []
        while not self.stop.is_set() and time.monotonic() < end and len(self.faults) < self.args.max_faults:
            self.sleep(self.rng.uniform(*self.args.pause))
            if self.stop.is_set() or time.monotonic() >= end:
                break
            if not queue:
                queue = self.rng.sample(kinds, len(kinds))
            fault = self.inject(queue.pop())
            if fault is None:
                continue
            self.faults.append(fault)
            self.wait_recovered(fault)
            if fault.problem:
                self.violations.append(f"{fault.kind} ({fault.target}) did not recover: {fault.problem}")
                break  # the job's state is unknown now: stop injecting
        self.sleep(2.0)  # the last ticks reach the strategy
        self.ended_wall = time.time()
        self.record_usage("end")
        self.progress(force=True)

    def inject(self, kind: str) -> Fault | None:
        endpoint = self.rng.choice(sorted(PATHS))
        path = PATHS[endpoint]
        now = time.time()
        if kind in ("stall", "blackhole", "drop", "ghost", "malformed"):
            params = {"kind": self.rng.choice(["json", "fields", "types"])} if kind == "malformed" else {}
            self.sim.inject(kind, path=path, **params)
            return Fault(kind, endpoint + (f" {params['kind']}" if params else ""), now)
        if kind == "refuse":
            self.sim.inject("refuse", path=path, count=1)
            self.sim.inject("drop", path=path)
            return Fault(kind, endpoint, now)
        if kind.startswith("reply:"):
            return self.inject_reply(int(kind.split(":")[1]), endpoint, now)
        if kind == "mute":
            code = self.rng.choice([c for c in CODES[endpoint] if c != SESSION_CODE])
            try:
                self.sim.inject("mute", path=path, code=code)
            except (ValueError, TypeError) as exc:
                self.notes.append(f"mute skipped: the simulator refused inject('mute', code=...): {exc}")
                print(f"soak: note: {self.notes[-1]}", flush=True)
                return None
            fault = Fault(kind, code, now)
            self.sleep(self.rng.uniform(2.0, 4.0))
            self.sim.inject("clear", code=code)
            fault.since = time.time()
            return fault
        if kind.startswith("kill:"):
            target = kind.split(":")[1]
            names = sorted(n for n in alive(self.job.namespace) if n.split(":")[0] == target)
            if not names:
                self.notes.append(f"{kind}: no such actor alive, skipped")
                return None
            name = self.rng.choice(names)
            pid = alive(self.job.namespace)[name][0]
            os.kill(pid, signal.SIGKILL)
            return Fault(kind, name, now, old_pid=pid)
        if kind == "sigstop":
            name = f"connection:{endpoint}-0"
            pids = alive(self.job.namespace).get(name)
            if not pids:
                return None
            pid = pids[0]
            os.kill(pid, signal.SIGSTOP)
            self.stopped_pids.add(pid)
            fault = Fault(kind, name, now)
            try:
                self.sleep(self.rng.uniform(1.0, 4.0))
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                self.stopped_pids.discard(pid)
            fault.since = time.time()  # ticks read from the socket's buffer after SIGCONT are not fresh
            return fault
        raise ValueError(f"unknown fault kind {kind!r}")

    def inject_reply(self, ret: int, endpoint: str, now: float) -> Fault:
        """Answer the next subscription request on ``endpoint`` with ``ret``, and cause one: the strategy
        adds a fresh code (always, for 600: a code added alone and refused 600 is quarantined), or drops
        the one it added before.
        """
        import ray

        self.sim.inject("reply", path=PATHS[endpoint], ret=ret)
        added = self.held[endpoint] - set(CODES[endpoint])
        if ret != 600 and added:
            code = min(added)
            self.held[endpoint].discard(code)
            change: tuple[list[str], list[str]] = ([], [code])  # (added, removed)
            target = f"{endpoint} -{code}"
        else:
            code = self.extra[endpoint].pop(0)
            self.held_ever.add(code)
            if ret == 600:
                self.quarantined.add(code)  # the registry drops it from the holdings: not held
            else:
                self.held[endpoint].add(code)
            change = ([code], [])
            target = f"{endpoint} +{code}"
        error = ray.get(self.checker.change.remote(*change), timeout=30)
        if error:
            self.violations.append(f"reply:{ret}: the strategy's change {change} failed: {error}")
        return Fault(f"reply:{ret}", target, now, code=code)

    def recovered(self, fault: Fault) -> str:
        """'' once ``fault`` has recovered, else what is still missing."""
        names = alive(self.job.namespace)
        if fault.kind.startswith("kill:"):
            pids = names.get(fault.target, [])
            if not pids or pids == [fault.old_pid]:
                return f"{fault.target} not running again"
        dupes = {n: p for n, p in names.items() if len(p) > 1}
        if dupes:
            return f"duplicated actors: {dupes}"
        missing = self.expected_names - set(names)
        if missing:
            return f"actors not alive: {sorted(missing)}"
        desired = self.desired()
        stale = sorted(c for c in desired if not self.fresh_since(c, fault.since))
        if stale:
            return f"no tick since the injection on {stale}"
        server = self.server_union()
        if server != desired:
            fault.lost_codes = sorted(desired - server)
            return (
                f"server sets differ from the desired union: missing {fault.lost_codes}, "
                f"extra {sorted(server - desired)}"
            )
        fault.lost_codes = []
        if fault.kind == "reply:600" and not any(c == fault.code for c, _ in self.ledger.problems):
            return f"the strategy was not told that {fault.code} was refused"
        return ""

    def fresh_since(self, code: str, since: float) -> bool:
        """Whether ``code`` delivered a tick stamped after ``since``: the session code, while its market
        is closed, is not asked, and once it opens, ticks from after the open count.
        """
        if code == SESSION_CODE and self.closer is not None:
            if self.closer.muted:
                return True
            since = max(since, self.schedule.last_open(time.time()))
        return self.ledger.fresh({code}, int(since * 1000))

    def clear_faults(self) -> None:
        """Clear every simulator fault (stalled or blackholed sockets close now), keeping a closed
        market muted.
        """
        if self.closer is None:
            self.sim.inject("clear")
            return
        with self.closer.lock:
            self.sim.inject("clear")
            if self.closer.muted:
                self.sim.inject("mute", code=SESSION_CODE)

    def diagnosis(self) -> str:
        """What the server, the registry and the decoders say, for a fault that did not recover."""
        import ray

        parts = [f"server sets {sorted(self.server_union())}, desired {sorted(self.desired())}"]
        try:
            reg = self.job.registry(timeout=10)
            conns = [
                (c.conn_id, c.up, sorted(c.desired), sorted(c.acknowledged), c.in_sync)
                for c in reg.connections
            ]
            parts.append(
                f"registry: in_sync {reg.in_sync}, union {sorted(reg.union)}, connections {conns}, "
                f"refused {reg.refused}, vendor errors {reg.vendor_errors[-3:]}"
            )
            decoders = ray.get(self.job.sup.status.remote(), timeout=10).get("decoders", {})
            parts.append(f"decoders: {decoders}")
        except Exception as exc:  # noqa: BLE001 - a diagnosis must not fail the report
            parts.append(f"(registry or status unavailable: {type(exc).__name__}: {exc})")
        return "; ".join(parts)

    def wait_recovered(self, fault: Fault) -> None:
        deadline = time.monotonic() + self.args.recovery_timeout
        missing = "not checked yet"
        while not self.stop.is_set():
            self.observe()
            missing = self.recovered(fault)
            if not missing:
                fault.recovered = time.time()
                break
            if time.monotonic() > deadline:
                fault.problem = f"after {self.args.recovery_timeout:g} s: {missing}; {self.diagnosis()}"
                break
            self.stop.wait(POLL_S)
        if self.stop.is_set() and fault.recovered is None:
            fault.problem = f"interrupted: {missing}"
        with contextlib.suppress(Exception):
            self.clear_faults()

    # -- the report -----------------------------------------------------------------------------------

    def session_faults(self, now: float) -> list[Fault]:
        """Each closed stretch of the session begun by ``now``, as a fault window of kind ``session``: from
        the simulator's mute before the close to its unmute after the open.
        """
        return [
            Fault(
                "session",
                SESSION_CODE,
                close - MUTE_BEFORE_S,
                recovered=opens + UNMUTE_AFTER_S if opens + UNMUTE_AFTER_S <= now else None,
            )
            for close, opens in self.schedule.closed
            if close - MUTE_BEFORE_S <= now
        ]

    def check_sessions(self) -> dict[str, Any]:
        """The session's invariants, over the closes and opens between the first fault and the last drain:
        no on_stale of SESSION_CODE while closed, an on_session at each close and open (a change inside a
        kill's window is excused: the strategy or the registry may have been down), and a tick again within
        open_grace_s + stale_after_s of each open (excused where another fault's window overlaps that).
        """
        now = time.time()
        closed = self.schedule.closed
        windows = [f.window(now) for f in self.faults]
        kills = [f.window(now) for f in self.faults if f.kind.startswith("kill:")]
        stale_closed = [
            (silent, arrived)
            for code, silent, arrived in self.stale_told
            if code == SESSION_CODE and any(c + STALE_MARGIN_S < arrived < o for c, o in closed)
        ]
        for silent, arrived in stale_closed:
            self.violations.append(
                f"on_stale({SESSION_CODE}, {silent:.1f}) arrived at {arrived:.1f}, its session closed"
            )
        changes = [
            (at, is_open)
            for at, is_open in self.schedule.changes()
            if self.began_wall <= at <= self.ended_wall - 2.0
        ]
        told = excused = 0
        for at, is_open in changes:
            if any(o == is_open and abs(t - at) < 0.5 for o, t in self.sessions_told):
                told += 1
            elif any(a <= at <= b for a, b in kills):
                excused += 1
            else:
                self.violations.append(f"no on_session({SESSION_CODE}, {is_open}, {at:.0f})")
        ticks = sorted(self.session_ticks)
        due_s = OPEN_GRACE_S + STALE_AFTER_S
        opens = [at for at, is_open in changes if is_open and at + due_s + 1.0 <= self.ended_wall]
        ticked = 0
        for at in opens:
            i = bisect.bisect_left(ticks, int(at * 1000))
            if i < len(ticks) and ticks[i] <= (at + due_s) * 1000:
                ticked += 1
            elif any(a <= at + due_s and b >= at for a, b in windows):
                excused += 1
            else:
                self.violations.append(
                    f"{SESSION_CODE} did not tick within {due_s:g} s of its open at {at:.0f}"
                )
        return {
            "code": SESSION_CODE,
            "changes": len(changes),
            "closes": sum(1 for _, is_open in changes if not is_open),
            "opens": sum(1 for _, is_open in changes if is_open),
            "told": told,
            "ticked_after_open": ticked,
            "excused": excused,
            "stale_while_closed": len(stale_closed),
        }

    def lost_outside_windows(self) -> list[Gap]:
        now = time.time()
        windows = [f.window(now) for f in (*self.faults, *self.session_faults(now))]
        return [
            g
            for g in self.ledger.gaps
            if not any(g.after_ms / 1000 <= end and g.before_ms / 1000 >= start for start, end in windows)
        ]

    def lost_by_kind(self) -> Counter[str]:
        """Ticks lost inside fault windows, by the kind of the fault whose window overlaps the gap most."""
        now = time.time()
        out: Counter[str] = Counter()
        for gap in self.ledger.gaps:
            lo, hi = gap.after_ms / 1000, gap.before_ms / 1000
            overlaps = [
                (min(hi, end) - max(lo, start), f.kind)
                for f in (*self.faults, *self.session_faults(now))
                for start, end in [f.window(now)]
            ]
            best = max(overlaps, default=(-1.0, ""))
            if best[0] >= 0:
                out[best[1]] += gap.missing
        return out

    def report(self) -> dict[str, Any]:
        led = self.ledger
        outside = self.lost_outside_windows()
        lost_kind = self.lost_by_kind()
        sessions = self.check_sessions()
        if led.duplicates:
            self.violations.append(f"{led.duplicates} ticks delivered twice")
        if led.out_of_order:
            self.violations.append(f"{led.out_of_order} ticks out of order")
        if led.unexpected:
            self.violations.append(f"ticks of codes never held: {dict(led.unexpected)}")
        if outside:
            self.violations.append(f"{sum(g.missing for g in outside)} ticks lost outside the fault windows")
        lost_subs = [f for f in self.faults if f.lost_codes]
        # A closed stretch within the faults' time counts as a session fault, recovered at the open.
        closed = [
            f
            for f in self.session_faults(time.time())
            if self.began_wall <= f.injected and f.recovered is not None and f.recovered <= self.ended_wall
        ]
        by_kind: dict[str, dict[str, Any]] = {}
        for f in (*self.faults, *closed):
            row = by_kind.setdefault(
                f.kind,
                {"injected": 0, "recovered": 0, "slowest_s": 0.0, "total_s": 0.0, "lost": lost_kind[f.kind]},
            )
            row["injected"] += 1
            if f.recovered is not None:
                took = f.recovered - f.injected
                row["recovered"] += 1
                row["total_s"] += took
                row["slowest_s"] = max(row["slowest_s"], took)
        lines = [
            "",
            "fault kind            injected  recovered  mean s  slowest s  ticks lost in its windows",
        ]
        for kind, row in sorted(by_kind.items()):
            mean = row["total_s"] / row["recovered"] if row["recovered"] else float("nan")
            lines.append(
                f"{kind:<20} {row['injected']:>9} {row['recovered']:>10} {mean:>7.2f} "
                f"{row['slowest_s']:>10.2f}"
                f" {row['lost']:>10}"
            )
        injected = sum(r["injected"] for r in by_kind.values())
        lines.append(f"{'all':<20} {injected:>9} {sum(r['recovered'] for r in by_kind.values()):>10}")
        lines += [
            "",
            f"ticks delivered                 {led.delivered}",
            f"delivered twice                 {led.duplicates}",
            f"out of order                    {led.out_of_order}",
            f"of codes never held             {sum(led.unexpected.values())}",
            (
                "lost inside fault windows       "
                f"{sum(g.missing for g in led.gaps) - sum(g.missing for g in outside)}"
            ),
            f"lost outside fault windows      {sum(g.missing for g in outside)}",
            f"reported missed (on_missed)     {led.missed_reported}",
            (
                f"session changes of {SESSION_CODE}      {sessions['changes']} ({sessions['closes']} closes, "
                f"{sessions['opens']} opens; told {sessions['told']}, ticked after the open "
                f"{sessions['ticked_after_open']}, excused {sessions['excused']}, stale while closed "
                f"{sessions['stale_while_closed']})"
            ),
            (
                f"subscriptions lost              {sum(len(f.lost_codes) for f in lost_subs)} "
                f"(after {len(lost_subs)} of {len(self.faults)} recoveries)"
            ),
            "",
            "process                        pid      RSS MiB  fds   ->   pid      RSS MiB  fds",
        ]
        for name, when in sorted(self.usage.items()):
            s, e = when.get("start"), when.get("end")
            fmt = lambda u: f"{u[0]:<8} {u[1]:>7.1f} {u[2]:>4}" if u else f"{'-':<8} {'-':>7} {'-':>4}"  # noqa: E731
            lines.append(f"{name:<30} {fmt(s)}   ->   {fmt(e)}")
        for gap in outside[:10]:
            lines.append(
                f"lost outside a window: {gap.code} {gap.missing} ticks between tick_time {gap.after_ms} "
                f"and {gap.before_ms}"
            )
        lines += [f"example: {e}" for e in led.examples[:10]]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"INVARIANT BROKEN: {v}" for v in self.violations]
        lines.append("soak: ok, every invariant held" if not self.violations else "soak: FAILED")
        print("\n".join(lines), flush=True)
        return {
            "ok": not self.violations,
            "minutes": self.args.minutes,
            "seed": self.args.seed,
            "faults": {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in by_kind.items()},
            "delivered": led.delivered,
            "duplicates": led.duplicates,
            "out_of_order": led.out_of_order,
            "unexpected": sum(led.unexpected.values()),
            "lost_inside": sum(g.missing for g in led.gaps) - sum(g.missing for g in outside),
            "lost_outside": sum(g.missing for g in outside),
            "subscriptions_lost": sum(len(f.lost_codes) for f in lost_subs),
            "sessions": sessions,
            "usage": {k: {w: list(u) for w, u in v.items()} for k, v in self.usage.items()},
            "notes": self.notes,
            "violations": self.violations,
            **soak_series(self.timeline, [*self.faults, *self.session_faults(time.time())]),
        }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soak = Soak(args)

    def on_signal(signum: int, _frame: Any) -> None:
        print(f"soak: {signal.Signals(signum).name}, stopping", file=sys.stderr, flush=True)
        soak.stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    result: dict[str, Any] = {"ok": False}
    try:
        soak.start()
        signal.signal(signal.SIGINT, on_signal)  # ray.init replaces them
        signal.signal(signal.SIGTERM, on_signal)
        print(
            f"soak: job running in namespace {soak.job.namespace}; {args.minutes:g} min of faults, "
            f"seed {args.seed}",
            flush=True,
        )
        soak.run()
    except Exception as exc:  # noqa: BLE001 - reported, then the job is stopped
        soak.violations.append(f"the soak itself failed: {type(exc).__name__}: {exc}")
    finally:
        soak.finish()
        result = soak.report()
    if args.plots is not None:
        plot_report(soak_plot, result, args.plots)
    print("SOAK " + json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
