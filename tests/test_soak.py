"""scripts/soak.py: its checks on made-up ticks (fast, no Ray), and a 24-second soak as users run it.

The 24-second run (short pauses between faults) is a subprocess that joins the session's Ray
(``--address``); it must exit 0 (every invariant held) and print the table and the ``SOAK {json}``
line. The figures are printed, not asserted (shared machine).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import zoneinfo

import pytest

from actors.core.sessions import build
from scripts.bench.soak import SESSION_CODE, Fault, Gap, Ledger, Soak, parse_args
from scripts.bench.soak_sessions import Schedule
from tests.conftest import ROOT, S

HELD = {"AAPL.US", "EURUSD"}


def ledger_of(*ticks: tuple[str, int, int]) -> Ledger:
    led = Ledger()
    led.add(list(ticks), HELD)
    return led


class TestLedger:
    def test_an_unbroken_stream_is_clean(self) -> None:
        led = ledger_of(("AAPL.US", 1, 1000), ("EURUSD", 7, 1000), ("AAPL.US", 2, 1100), ("EURUSD", 8, 1100))
        assert (led.delivered, led.duplicates, led.out_of_order, led.gaps, led.unexpected) == (
            4,
            0,
            0,
            [],
            {},
        )

    def test_a_tick_delivered_twice_is_counted(self) -> None:
        led = ledger_of(("AAPL.US", 1, 1000), ("AAPL.US", 2, 1100), ("AAPL.US", 1, 1000))
        assert led.duplicates == 1
        assert led.examples == ["AAPL.US seq 1 delivered twice"]

    def test_a_tick_below_the_last_one_is_out_of_order(self) -> None:
        led = ledger_of(("AAPL.US", 1, 1000), ("AAPL.US", 3, 1200), ("AAPL.US", 2, 1100))
        assert (led.out_of_order, led.duplicates) == (1, 0)
        assert led.gaps == [Gap("AAPL.US", 1, 1000, 1200)]  # seen before 2 came late

    def test_a_gap_records_its_span_in_tick_time(self) -> None:
        led = ledger_of(("EURUSD", 10, 5000), ("EURUSD", 14, 5400))
        assert led.gaps == [Gap("EURUSD", 3, 5000, 5400)]

    def test_a_code_never_held_is_unexpected(self) -> None:
        led = ledger_of(("MSFT.US", 1, 1000))
        assert led.unexpected == {"MSFT.US": 1}

    def test_fresh_needs_every_code_after_the_time(self) -> None:
        led = ledger_of(("AAPL.US", 1, 1000), ("EURUSD", 1, 3000))
        assert led.fresh({"EURUSD"}, 2000)
        assert not led.fresh({"AAPL.US", "EURUSD"}, 2000)
        assert not led.fresh({"XAUUSD"}, 0)


class TestWindows:
    def soak(self, gaps: list[Gap], faults: list[Fault]) -> Soak:
        soak = Soak(parse_args(["--minutes", "1"]))
        soak.ledger.gaps = gaps
        soak.faults = faults
        return soak

    def test_a_gap_inside_a_fault_window_is_excused(self) -> None:
        fault = Fault("drop", "stock", injected=100.0, recovered=101.0)
        soak = self.soak([Gap("AAPL.US", 2, 100_100, 100_900)], [fault])
        assert soak.lost_outside_windows() == []

    def test_the_window_has_margins(self) -> None:
        fault = Fault("drop", "stock", injected=100.0, recovered=101.0)
        # just before the injection (0.5 s margin) and just after the recovery (1 s margin)
        gaps = [Gap("AAPL.US", 1, 99_000, 99_600), Gap("AAPL.US", 1, 101_900, 102_500)]
        assert self.soak(gaps, [fault]).lost_outside_windows() == []

    def test_a_gap_outside_every_window_is_a_loss(self) -> None:
        fault = Fault("drop", "stock", injected=100.0, recovered=101.0)
        late = Gap("AAPL.US", 1, 103_000, 103_100)
        soak = self.soak([late], [fault])
        assert soak.lost_outside_windows() == [late]
        result = soak.report()
        assert result["ok"] is False
        assert result["lost_outside"] == 1
        assert "1 ticks lost outside the fault windows" in result["violations"]

    def test_an_open_fault_window_lasts_until_now(self) -> None:
        fault = Fault("stall", "stock", injected=time.time() - 5)
        gap = Gap("AAPL.US", 4, int((time.time() - 3) * 1000), int((time.time() - 2) * 1000))
        assert self.soak([gap], [fault]).lost_outside_windows() == []


class TestSessionSchedule:
    @pytest.mark.parametrize(
        "start", [1_700_000_000.0, 1_700_006_390.4, 1_700_092_780.0]
    )  # around midnight too
    def test_the_windows_are_open_exactly_outside_the_closed_stretches(self, start: float) -> None:
        schedule = Schedule.draw(start, 300.0, random.Random(3))
        session = build(schedule.spec(), zoneinfo.ZoneInfo, None)
        assert len(schedule.closed) >= 4
        assert schedule.closed[0][0] - start >= 20
        for close, opens in schedule.closed:
            assert 20 <= opens - close <= 40
        first, last = schedule.closed[0][0], schedule.closed[-1][1]
        for t in [start, *(start + i * 0.5 for i in range(int(last - start) * 2 + 200))]:
            assert session.is_open(t) == schedule.is_open(t), t
        assert [t for t, _ in schedule.changes()] == [x for pair in schedule.closed for x in pair]
        assert session.next_change(start) == first

    def test_a_session_change_is_a_fault_window_of_kind_session(self) -> None:
        soak = Soak(parse_args(["--minutes", "1"]))
        soak.schedule = Schedule(((100.0, 130.0),))
        [window] = soak.session_faults(now=200.0)
        assert (window.kind, window.target) == ("session", SESSION_CODE)
        soak.ledger.gaps = [Gap(SESSION_CODE, 3, 110_000, 120_000)]
        assert soak.lost_outside_windows() == []

    def test_a_stale_report_while_closed_breaks_an_invariant(self) -> None:
        soak = Soak(parse_args(["--minutes", "1"]))
        soak.schedule = Schedule(((100.0, 130.0),))
        soak.began_wall, soak.ended_wall = 90.0, 145.0
        soak.sessions_told = [(False, 100.0), (True, 130.0)]
        soak.session_ticks = [131_000]
        soak.stale_told = [(SESSION_CODE, 9.0, 120.0), ("EURUSD", 9.0, 120.0)]
        sessions = soak.check_sessions()
        assert sessions["stale_while_closed"] == 1
        assert (sessions["changes"], sessions["told"], sessions["ticked_after_open"]) == (2, 2, 1)
        assert soak.violations == [f"on_stale({SESSION_CODE}, 9.0) arrived at 120.0, its session closed"]

    def test_a_change_not_told_and_no_tick_after_the_open_break_invariants(self) -> None:
        soak = Soak(parse_args(["--minutes", "1"]))
        soak.schedule = Schedule(((100.0, 130.0),))
        soak.began_wall, soak.ended_wall = 90.0, 145.0
        soak.sessions_told = [(False, 100.0)]
        soak.check_sessions()
        assert soak.violations == [
            f"no on_session({SESSION_CODE}, True, 130)",
            f"{SESSION_CODE} did not tick within 10 s of its open at 130",
        ]


def test_bad_arguments_exit_2_naming_the_argument() -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/soak.py", "--minutes", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "--minutes 0" in proc.stderr


@pytest.mark.ray
@pytest.mark.timeout(600 * S + 60)  # half a minute of faults, plus the job's start and stop on a busy machine
@pytest.mark.usefixtures("ray_session")
def test_a_24_second_soak_holds_every_invariant() -> None:
    import ray

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    # It joins the session's Ray: a local Ray of its own would cost seconds to start and stop.
    address = ray.get_runtime_context().gcs_address
    started = time.monotonic()
    proc = subprocess.run(  # noqa: S603 - our own script
        [
            sys.executable,
            "scripts/soak.py",
            "--minutes",
            "0.4",
            "--seed",
            "1",
            "--pause",
            "0.2",
            "1.0",
            "--address",
            address,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600 * S,
        check=False,
    )
    took = time.monotonic() - started
    lines = proc.stdout.strip().splitlines()
    print("\n".join(line for line in lines if not line.startswith("SOAK ")))
    print(f"the 24-second soak took {took:.0f} s in all")
    assert lines, proc.stderr[-3000:]
    assert lines[-1].startswith("SOAK "), proc.stderr[-3000:]
    result = json.loads(lines[-1][len("SOAK ") :])
    assert result["violations"] == [], "\n".join(lines[-40:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(line.startswith("soak ") and " faults, " in line for line in lines), "no progress line"
    faults = result["faults"]
    injected = sum(row["injected"] for row in faults.values())
    # Seed 1 injects about 8 in 24 s here (a kill among the first three); fewer on a loaded machine.
    assert injected >= 4, faults
    assert all(row["recovered"] == row["injected"] for row in faults.values()), faults
    assert any(kind.startswith("kill:") for kind in faults), faults
    assert result["delivered"] > 0
    sessions = result["sessions"]
    # The session of 700.HK closes or opens at least once in the 24 s (stretches of 10-20 s here).
    assert sessions["changes"] >= 1, sessions
    assert sessions["told"] + sessions["excused"] == sessions["changes"], sessions
    assert sessions["stale_while_closed"] == 0, sessions
    usage = result["usage"]
    assert {"supervisor", "registry", "heartbeat", "strategy:soak"} <= usage.keys(), usage
