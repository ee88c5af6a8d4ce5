"""The Heartbeat shell (actors/heartbeat.py): it drives the vendor heartbeat and finds dead connections.

One system for the module against the real simulator on 127.0.0.1 (no mocks). The collector holds
stock codes only, so the stock socket is busy (20 ticks/s per code) and the forex/crypto socket is
idle: heartbeat answers are all it receives. Each test leaves the system healthy for the next.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from actors.core.errors import Unresponsive
from actors.heartbeat import MISSES_BEFORE_KILL
from tests.conftest import System, collector_toml, sim_sets, start_system, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

CODES = ["AAPL.US", "TSLA.US"]
STOCK_PATH = "/quote-stock-b-ws-api"
FX_PATH = "/quote-b-ws-api"
# system_toml's feed settings
HEARTBEAT_INTERVAL_S, SILENCE_DEADLINE_S, PING_DEADLINE_S = 0.5, 1.5, 1.0
#: The heartbeat actor's round period, as Supervisor.start sets it.
CHECK_EVERY_S = min(HEARTBEAT_INTERVAL_S / 2, SILENCE_DEADLINE_S / 4, 1.0)


@pytest.fixture(scope="module")
def system(sim: Any) -> Iterator[System]:
    sys_ = start_system(sim, collector_toml("collector", CODES))
    yield sys_
    sys_.stop()


@pytest.fixture(autouse=True)
def _healthy_after(sim: Any) -> Iterator[None]:
    yield
    sim.inject("clear")


def collected(system: System) -> dict[str, Any]:
    return system.get(system.actor("strategy:collector").collected.remote(), timeout=30)


def open_conn(sim: Any, path: str) -> dict[str, Any] | None:
    """The simulator's view of the open socket on ``path``; None between a close and the next open."""
    return next((c for c in sim.state()["connections"] if c["open"] and c["path"] == path), None)


def the_open_conn(sim: Any, path: str) -> dict[str, Any]:
    """The open socket on ``path``, which the test knows is there."""
    conn = open_conn(sim, path)
    assert conn is not None, f"no open socket on {path}: {sim.state()['connections']}"
    return conn


def restarts_since(status: dict[str, Any], child: str, since: float) -> list[dict[str, Any]]:
    """The supervisor's restart events of ``child`` recorded at or after ``since`` (time.time())."""
    events = status["events"]
    return [e for e in events if e["child"] == child and e["event"] == "restart" and e["at"] >= since]


def flowing_after(system: System, since: float, timeout: float = 20.0) -> float:
    """Wait for a new tick on every code; returns seconds from ``since`` (time.monotonic())."""
    before = {c: s[-1] for c, s in collected(system)["seen"].items() if s}

    def fresh() -> bool:
        seen = collected(system)["seen"]
        return all(seen.get(c) and seen[c][-1] > before.get(c, -1) for c in CODES)

    wait_for(fresh, timeout, every=0.05, what="ticks flowing on every code again")
    return time.monotonic() - since


def server_matches_registry(system: System, sim: Any) -> bool:
    reg = system.registry()
    return reg.in_sync and sim_sets(sim).get(STOCK_PATH, set()) == set(reg.union) == set(CODES)


class TestHeartbeats:
    def test_heartbeats_on_cadence_and_no_refusals(self, system: System, sim: Any) -> None:
        before = {c["id"]: c["heartbeats"] for c in sim.state()["connections"] if c["open"]}
        assert len(before) == 2

        def three_more_each() -> dict[int, int]:
            # heartbeat_interval_s 0.5: every open socket keeps getting 22000s (a socket that closed
            # meanwhile has nothing more to send and is left out)
            now = {c["id"]: c["heartbeats"] for c in sim.state()["connections"] if c["open"]}
            done = all(conn_id not in now or now[conn_id] - n >= 3 for conn_id, n in before.items())
            return now if done else {}

        wait_for(three_more_each, 10, what="3 more heartbeats received on every open socket")
        totals = sim.state()["totals"]
        assert totals.get("400", 0) == 0
        assert totals.get("429", 0) == 0

    def test_an_idle_socket_is_kept_by_the_answers_to_its_heartbeats(self, system: System, sim: Any) -> None:
        """The server sends nothing unasked: an idle socket's only frames are 22001 answers, and they keep
        it alive well past the silence deadline.
        """
        since = time.time()
        idle = the_open_conn(sim, FX_PATH)
        assert (idle["trades"], idle["books"]) == ([], [])
        # Heartbeats are the clock here: 3 silence deadlines' worth of them
        enough = idle["heartbeats"] + round(3 * SILENCE_DEADLINE_S / HEARTBEAT_INTERVAL_S)
        wait_for(
            lambda: (open_conn(sim, FX_PATH) or {"heartbeats": 0})["heartbeats"] >= enough,
            20,
            what=f"{enough} heartbeats",
        )
        now = the_open_conn(sim, FX_PATH)
        assert (now["id"], now["pushes"]) == (idle["id"], 0), "the idle socket was replaced"
        assert restarts_since(system.status(), "connection:forex_crypto-0", since) == []


class TestDeadConnections:
    def test_stall_is_detected_within_the_deadline_and_resubscribed(self, system: System, sim: Any) -> None:
        """The false-alive socket (open, answers WebSocket pings, sends nothing) is found by its silence."""
        child = "connection:stock-0"
        missed_before = system.status()["heartbeat"]["ping_missed"]
        stalled = the_open_conn(sim, STOCK_PATH)
        stalled_at = time.time()
        sim.inject("stall", conn=stalled["id"])

        def replaced() -> bool:
            conn = open_conn(
                sim, STOCK_PATH
            )  # None while the stalled socket is closed, the new one not yet open
            return conn is not None and conn["id"] != stalled["id"] and set(CODES) <= set(conn["trades"])

        wait_for(replaced, 15, every=0.05, what="a new stock socket holding the full set")
        status = system.status()
        restarts = restarts_since(status, child, stalled_at)
        assert restarts, status["events"]
        # The watchdog records how long the socket had been silent when its beat found it.
        # The reason is the ConnectionSilent the watchdog raised, rendered: its silence and deadline.
        found = re.fullmatch(
            rf"connection silent for (\d+\.\d+) s \(deadline {SILENCE_DEADLINE_S:.2f} s\)",
            restarts[0]["reason"],
        )
        assert found, restarts[0]
        silent_for = float(found.group(1))
        # Not before the deadline (liveness: SILENT once the silence is strictly longer), and by the first
        # ping after it: the heartbeat arms that ping for the deadline itself (the connection's
        # Liveness.next_wakeup) or at most max(check_every, ping_deadline) later, and its beat answers
        # within ping_deadline; each ping miss meanwhile costs one more. The reason shows the silence
        # rounded to 0.01 s: a silence just past 1.5 s reads "1.50", so the rendered value may equal
        # the deadline, never fall below it.
        misses = status["heartbeat"]["ping_missed"] - missed_before
        margin = (1 + misses) * max(CHECK_EVERY_S, PING_DEADLINE_S) + PING_DEADLINE_S
        print(f"stall: found silent for {silent_for:.2f} s (deadline {SILENCE_DEADLINE_S} s)")
        assert SILENCE_DEADLINE_S <= silent_for <= SILENCE_DEADLINE_S + margin, (silent_for, misses)
        flowing_after(system, time.monotonic())
        wait_for(lambda: server_matches_registry(system, sim), 15, what="server sets == registry union")

    def test_a_hung_connection_actor_misses_the_ping_deadline_and_is_replaced(
        self, system: System, sim: Any
    ) -> None:
        """SIGSTOP freezes the actor: its socket stays open, but it answers no ping. The heartbeat actor
        must notice after two missed ping deadlines in a row and have the supervisor kill it for Ray to
        restart.
        """
        child = "connection:stock-0"
        pid = system.pids()[child]
        frozen_at, frozen_wall = time.monotonic(), time.time()
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: system.pids().get(child) not in (None, pid), 30, what="the frozen actor gone")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        took = flowing_after(system, frozen_at)
        reasons = [e["reason"] for e in restarts_since(system.status(), child, frozen_wall)]
        expected = str(Unresponsive(child, MISSES_BEFORE_KILL, PING_DEADLINE_S))  # the watchdog's typed cause
        assert reasons[:1] == [expected], reasons
        wait_for(lambda: server_matches_registry(system, sim), 20, what="server sets == registry union")
        assert collected(system)["violations"] == []
        print(f"SIGSTOP {child}: replaced and ticks flowing again after {took:.2f} s")
