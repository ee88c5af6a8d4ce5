"""Trading sessions through the whole system: real Ray, the real simulator on 127.0.0.1.

Two stock codes follow explicit windows computed from the test's own start time: open, then closed
for CLOSED_S seconds after each of a few closes OPEN_S apart; the test takes the first close still ahead
once the system runs (a fast start waits less, a slow one takes a later close). The simulator stops pushing
both at the close (its ``mute`` fault, as a closed market does) and pushes one again at the open. A
code with the session ``always`` goes stale as it always did.
The pure rules are tested in test_codeliveness_sessions.py; the status document in test_status.py.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest

from actors.core.settings import parse_settings
from scripts.bench.soak_sessions import Schedule
from tests.conftest import TEST_TOKEN, S, System, system_toml, wait_for

# The first close is FIRST_CLOSE_S after the module's start (the system starts meanwhile, in about 15 s),
# then one every CLOSED_S + OPEN_S; the test needs LEAD_S before its close. OPEN_S leaves the checks
# after an open time to finish before the next close.
FIRST_CLOSE_S = 20.0
CLOSED_S = 8.0
OPEN_S = 25.0
CLOSES = 4
LEAD_S = 3.0
pytestmark = [
    pytest.mark.ray,
    pytest.mark.usefixtures("ray_session"),
    pytest.mark.timeout(int(300 + 100 * S)),
]

MUTED, TICKING = "AAPL.US", "TSLA.US"  # both follow the window; at the open only TICKING ticks again
ALWAYS = "BTCUSDT"
STALE_AFTER_S = 3.0
OPEN_GRACE_S = 2.0


@pytest.fixture(scope="module")
def schedule() -> Schedule:
    """The closed stretches (close, open), wall-clock epoch seconds."""
    first = float(math.ceil(time.time() + FIRST_CLOSE_S))  # windows name whole seconds
    period = CLOSED_S + OPEN_S
    return Schedule(tuple((first + k * period, first + k * period + CLOSED_S) for k in range(CLOSES)))


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    from scripts.simulator import SimulatorThread

    simulator = SimulatorThread(token=TEST_TOKEN, tick_rate=20.0, heartbeat_timeout=10.0)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture(scope="module")
def system(sim: Any, schedule: Schedule) -> Iterator[System]:
    # Open every day outside the closed stretches: open now (since yesterday's last open).
    spec = schedule.spec()
    strategies = f"""
[[strategies]]
name = "watcher"
kind = "tests.collector:Collector"
symbols = {json.dumps([MUTED, TICKING, ALWAYS])}
"""
    text = system_toml(
        sim.port,
        strategies,
        stale_after_s=STALE_AFTER_S,
        open_grace_s=OPEN_GRACE_S,
        silence_deadline_s=5.0,
        ping_deadline_s=3.0,
        sessions={"*": "always", MUTED: spec, TICKING: spec},
    )
    settings = parse_settings(text)
    assert settings.feed.sessions[MUTED] == spec
    sys_ = cast("System", System.start(settings, TEST_TOKEN, timeout=120 * S))
    wait_for(lambda: sys_.registry().in_sync, 20, what="first subscription in sync")
    yield sys_
    sys_.stop()


def collected(system: System) -> dict[str, Any]:
    return system.get(system.actor("strategy:watcher").collected.remote())


def health_of(system: System, code: str) -> Any:
    return system.registry().codes.get(code)


def state_of(system: System, code: str) -> str:
    health = health_of(system, code)
    return "" if health is None else health.state


def told(system: System, event: str, code: str) -> list[float]:
    return [s for e, c, s in collected(system)["health"] if (e, c) == (event, code)]


def sessions_told(system: System, code: str, since: float) -> list[tuple[bool, float]]:
    return [(is_open, at) for c, is_open, at in collected(system)["sessions"] if c == code and at >= since]


def told_twice(system: System, code: str, since: float) -> bool:
    return len(sessions_told(system, code, since)) == 2


def test_a_code_with_session_always_goes_stale_as_before(system: System, sim: Any) -> None:
    wait_for(lambda: state_of(system, ALWAYS) == "ok", 20, what=f"{ALWAYS} ok")
    assert health_of(system, ALWAYS).session == "always"
    sim.inject("mute", code=ALWAYS)
    [silent] = wait_for(lambda: told(system, "stale", ALWAYS), 4 * STALE_AFTER_S, what=f"on_stale({ALWAYS})")
    assert silent >= STALE_AFTER_S
    sim.inject("clear", code=ALWAYS)
    wait_for(lambda: state_of(system, ALWAYS) == "ok", 20, what=f"{ALWAYS} ok again")


def test_a_held_code_through_the_close_is_closed_then_at_the_open_muted_is_stale_and_ticking_ok(
    system: System, sim: Any, schedule: Schedule
) -> None:
    ahead = [(c, o) for c, o in schedule.closed if c - time.time() >= LEAD_S]
    assert ahead, f"the system took longer to start than the last close ({CLOSES} closes)"
    close, opens = ahead[0]
    wait_for(lambda: all(state_of(system, c) == "ok" for c in (MUTED, TICKING)), 20, what="both codes ok")
    assert health_of(system, MUTED).session.startswith("Mon-Sun ")
    # The market closes: the simulator stops pushing both codes (a second early: no tick after the close).
    wait_for(lambda: time.time() >= close - 1.0, close - time.time() + 10, what="a second before the close")
    for code in (MUTED, TICKING):
        sim.inject("mute", code=code)
    for code in (MUTED, TICKING):
        told_close = functools.partial(sessions_told, system, code, close)
        wait_for(told_close, 30, what=f"on_session({code}, open=False)")
        assert told_close() == [(False, close)]
    wait_for(lambda: all(state_of(system, c) == "closed" for c in (MUTED, TICKING)), 10, what="both closed")
    assert health_of(system, MUTED).opens_at == opens
    # CLOSED_S seconds without ticks while closed (longer than stale_after_s): nobody is told it is stale.
    wait_for(lambda: time.time() >= opens, opens - time.time() + 10, what="the open")
    assert told(system, "stale", MUTED) == []
    assert told(system, "stale", TICKING) == []
    sim.inject("clear", code=TICKING)  # the market opens: one code ticks again
    for code in (MUTED, TICKING):
        wait_for(
            functools.partial(told_twice, system, code, close), 30, what=f"on_session({code}, open=True)"
        )
        assert sessions_told(system, code, close)[1] == (True, opens)
    [silent] = wait_for(
        lambda: told(system, "stale", MUTED), 6 * (STALE_AFTER_S + OPEN_GRACE_S), what=f"on_stale({MUTED})"
    )
    # Its last tick came before the close: stale only at the open + open_grace_s + stale_after_s.
    assert silent >= (opens - close) + OPEN_GRACE_S + STALE_AFTER_S - 1.0
    health = health_of(system, MUTED)
    assert (health.state, health.reason) == ("stale", "quiet")
    wait_for(lambda: state_of(system, TICKING) == "ok", 20, what=f"{TICKING} ok after the open")
    assert told(system, "stale", TICKING) == []
