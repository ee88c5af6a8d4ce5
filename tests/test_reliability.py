"""SIGKILL of the Supervisor actor itself, against the real simulator: the job goes on.

The driver (this test process, or ``python supervisor.py``) creates and owns every actor, so a killed
Supervisor takes no child with it; Ray restarts it and it finds its children by name. Checked here:
ticks keep flowing, no subscription is lost (the simulator's own sets), no actor is lost, re-created
or duplicated (the same actor ids, each name once), the restart is an event in the status and the
history before it is kept, the restarted Supervisor still supervises, and a clean stop leaves no
actor of the job behind, a strategy added while running (a detached actor) included.

Figures are printed, not asserted (the machine is shared); the only bounds are generous liveness
waits, scaled by TICKVISOR_TEST_S.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import System, collector_toml, sim_sets, start_system, wait_for
from tests.test_job import STATUS_UP, Job, job_env, jobs  # noqa: F401 - jobs is a fixture used below

pytestmark = pytest.mark.ray

CODES = ["AAPL.US", "TSLA.US", "700.HK", "EURUSD", "XAUUSD", "BTCUSDT"]
ADDED_CODES = ["MSFT.US", "ETHUSDT"]  # held by a strategy added while running
FX_PATH = "/quote-b-ws-api"


def actors_in(namespace: str, state: str = "ALIVE") -> list[tuple[str, str]]:
    """(name, actor id) of every actor in ``namespace`` in ``state``, from Ray's GCS actor table.

    That table is what ``ray.util.state.list_actors`` serves, but that API goes through the dashboard,
    which the session's Ray runs without (tests/conftest.py), so the table is read directly.
    """
    from ray._private.state import state as global_state
    from ray.core.generated import gcs_pb2

    accessor = global_state._connect_and_get_accessor()  # noqa: SLF001
    rows = [gcs_pb2.ActorTableData.FromString(raw) for raw in accessor.get_actor_table(None, state)]
    return sorted((r.name, r.actor_id.hex()) for r in rows if r.ray_namespace == namespace)


def ledger(system: System, strategy: str) -> dict[str, Any]:
    return system.get(system.actor(f"strategy:{strategy}").ledger.remote(), timeout=30)


def server_matches_registry(system: System, sim: Any) -> bool:
    reg = system.registry()
    sets = sim_sets(sim)
    return reg.in_sync and set().union(*sets.values()) == set(reg.union)


class TickWatch:
    """Samples the collector's tick count every 50 ms in a thread: the longest stretch without a new tick."""

    def __init__(self, system: System) -> None:
        self._system = system
        self._stop = threading.Event()
        self.samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            seen = ledger(self._system, "collector")["seen"]
            self.samples.append((time.monotonic(), seen))
            self._stop.wait(0.05)

    def longest_gap(self) -> float:
        self._stop.set()
        self._thread.join(timeout=30)
        changes = [t for (t, n), (_, before) in zip(self.samples[1:], self.samples, strict=False) if n > before]
        return max((b - a for a, b in zip(changes, changes[1:], strict=False)), default=float("inf"))


@pytest.mark.usefixtures("ray_session")
def test_sigkill_of_the_supervisor_loses_nothing(sim: Any) -> None:  # noqa: PLR0915
    import ray
    from ray.experimental import internal_kv

    system = start_system(sim, collector_toml("collector", CODES))
    ns = system.namespace
    stopped = False
    try:
        system.get(system.sup.add_strategy.remote("late", "tests.collector:Collector", ADDED_CODES, {}))
        wait_for(lambda: server_matches_registry(system, sim), 20, what="server sets == registry union")
        assert set(system.registry().union) == set(CODES + ADDED_CODES)
        before = actors_in(ns)
        names = [name for name, _ in before]
        assert sorted(set(names)) == names, f"a name twice: {names}"
        assert "supervisor" in names and "strategy:late" in names
        sets_before = sim_sets(sim)
        run_id = system.status()["run_id"]
        sup_pid = system.pids()["supervisor"]
        last_before = {s: ledger(system, s)["last"] for s in ("collector", "late")}

        watch = TickWatch(system)
        wait_for(lambda: len(watch.samples) > 20, 10, what="a second of samples before the kill")
        def fresh(strategy: str, codes: list[str]) -> bool:
            last = ledger(system, strategy)["last"]
            return all(last.get(c, -1) > last_before[strategy].get(c, -1) for c in codes)

        os.kill(sup_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # Liveness, with a wide margin over the 3 s the issue asks for: the data path does not go
        # through the Supervisor, so the ticks should not even pause.
        wait_for(lambda: fresh("collector", CODES) and fresh("late", ADDED_CODES), 20, every=0.05, what="new ticks")
        flowing_s = time.monotonic() - killed_at
        # pids() is a call to the Supervisor: Ray holds it until the new process runs.
        wait_for(lambda: system.pids().get("supervisor") not in (None, sup_pid), 30, what="supervisor restarted")
        answered_s = time.monotonic() - killed_at
        sampled = len(watch.samples)
        wait_for(lambda: len(watch.samples) >= sampled + 10, 10, what="half a second more of samples")
        gap_s = watch.longest_gap()
        print(  # noqa: T201 - the figures, shown with -s or -rP
            f"SIGKILL supervisor: every code ticked again after {flowing_s:.2f} s; the supervisor answered "
            f"again after {answered_s:.2f} s; longest stretch without a new tick at the collector around the "
            f"kill {gap_s:.2f} s (sampled every 50 ms; the simulator sends 20 ticks/s per code)"
        )

        # Nothing lost, re-created or duplicated: the same actors (ids survive a restart), each name once.
        assert actors_in(ns) == before
        wait_for(lambda: sim_sets(sim) == sets_before, 20, what="the server's sets as before the kill")
        assert set(system.registry().union) == set(CODES + ADDED_CODES), "a subscription was lost"

        # The restart is an event; the history before it is kept.
        events = system.status()["events"]
        restarts = [e for e in events if e["child"] == "supervisor" and e["event"] == "restarted"]
        assert len(restarts) == 1, events
        assert f"process {sup_pid} died" in restarts[0]["reason"]
        assert "not found" not in restarts[0]["reason"]
        started = {e["child"] for e in events if e["event"] == "started"}
        assert {"registry", "heartbeat", "strategy:collector", "strategy:late"} <= started, events

        # The new Supervisor still supervises: a stalled socket is noticed and replaced through it.
        restarted_at = restarts[0]["at"]
        last_fx = ledger(system, "collector")["last"]["EURUSD"]
        sim.inject("stall", path=FX_PATH)

        def replaced() -> bool:
            evs = system.status()["events"]
            return any(
                e["child"] == "connection:forex_crypto-0" and e["event"] == "restart" and e["at"] > restarted_at
                for e in evs
            )

        wait_for(replaced, 20, what="a restart of the stalled connection by the new supervisor")
        wait_for(lambda: ledger(system, "collector")["last"]["EURUSD"] > last_fx, 20, what="EURUSD again")
        sim.inject("clear")
        for strategy in ("collector", "late"):
            got = system.get(system.actor(f"strategy:{strategy}").collected.remote())
            assert got["violations"] == [], strategy
        assert system.get(system.sup.failure.remote()) is None

        # A clean stop leaves no actor of the job, and no saved state.
        system.stop()
        stopped = True
        wait_for(lambda: actors_in(ns) == [], 20, what=f"no actor alive in {ns}")
        for key in (f"tickvisor/{run_id}/supervisor", f"tickvisor/{run_id}/registry"):
            assert internal_kv._internal_kv_get(key.encode()) is None, key  # noqa: SLF001
    finally:
        if not stopped:
            system.stop()
        for name, _ in actors_in(ns):  # a failed test must not leave the detached strategy behind
            ray.kill(ray.get_actor(name, namespace=ns), no_restart=True)


@pytest.mark.usefixtures("ray_session")
def test_a_supervisor_killed_too_often_gives_up(sim: Any) -> None:
    """Its restarts count under restart.max_restarts, and the count survives its restarts (saved state)."""
    from actors.core.errors import ChildFailed

    system = start_system(sim, collector_toml("collector", ["EURUSD"]), restart="max_restarts = 1")
    try:
        for _ in range(2):
            pid = system.pids()["supervisor"]
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda p=pid: system.pids().get("supervisor") not in (None, p), 30, what="supervisor back")
        failure = system.get(system.sup.failure.remote())
        assert isinstance(failure, ChildFailed), failure
        assert failure.child == "supervisor"
        assert "restarted 2 times within 60 s" in str(failure)
        kinds = [e["event"] for e in system.status()["events"] if e["child"] == "supervisor"]
        assert kinds == ["restarted", "restarted", "gave up"]
    finally:
        system.stop()
    wait_for(lambda: actors_in(system.namespace) == [], 20, what=f"no actor alive in {system.namespace}")


def test_main_job_survives_a_sigkill_of_its_supervisor(jobs: Callable[..., Job]) -> None:  # noqa: F811
    job = jobs(["--status-every", "1"], job_env())
    job.wait_stdout(STATUS_UP.format(codes=6), 90, "2/2 connections up")
    sups = [p for p in job.snapshot() if p.cmd.startswith("ray::Supervisor")]
    assert len(sups) == 1, [p.cmd for p in job.snapshot()]
    lines_before = len(job.stdout().splitlines())
    os.kill(sups[0].pid, signal.SIGKILL)
    killed_at = time.monotonic()

    up_after_restart = re.compile(STATUS_UP.format(codes=6) + r" \(\d+/s\), restarts [1-9]")

    def status_after_kill() -> str | None:
        if job.proc.poll() is not None:
            pytest.fail(f"the job exited ({job.proc.returncode}) after the SIGKILL\n{job.tail()}")
        new = job.stdout().splitlines()[lines_before:]
        return next((line for line in new if up_after_restart.search(line)), None)

    line = wait_for(status_after_kill, 60, every=0.2, what="a status line counting the supervisor's restart")
    print(f"SIGKILL supervisor of the main job: status again after {time.monotonic() - killed_at:.2f} s: {line}")  # noqa: T201
    new_sups = [p for p in job.snapshot() if p.cmd.startswith("ray::Supervisor")]
    assert [p.pid for p in new_sups] != [sups[0].pid] and len(new_sups) == 1, [p.cmd for p in new_sups]

    code, took = job.stop(signal.SIGINT)
    print(f"SIGINT after the restart: exit {code} after {took:.2f} s")  # noqa: T201
    assert code == 0, job.tail()
    assert "the supervisor did not answer" not in job.stderr()
    assert job.stdout().rstrip().endswith("tickvisor: stopped"), job.tail()
    left = job.leftovers()
    assert left == [], "processes outlived the job:\n" + "\n".join(left)
