"""Per-code liveness, corrupt ticks and sequence anomalies: the whole system against the simulator.

One system and one simulator for the module (real Ray, real sockets on 127.0.0.1), with the simulator's
per-code faults: ``mute``, ``corrupt``, ``seq_reset``, ``tick_time_skew``, and ``drop`` of a connection.
The simulator serves 3 codes per connection while the job's plan allows more: the 4th stock code is
ignored by the server, silently, as the vendor does beyond a plan's limit, and never starts.
The last test holds a code as an order book only: its book pushes are its sign of life.
The pure rules are tested in test_tickcheck.py and test_codeliveness.py; the decoder's share in
test_decoder.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from actors.core.settings import parse_settings
from tests.conftest import TEST_TOKEN, S, System, sim_sets, system_toml, wait_for

# The first test also waits for the module's system to start, which takes minutes on a loaded machine.
pytestmark = [
    pytest.mark.ray,
    pytest.mark.usefixtures("ray_session"),
    pytest.mark.timeout(int(120 + 100 * S)),
]

STOCK = ["AAPL.US", "TSLA.US", "MSFT.US", "NVDA.US"]  # 4 codes, the server serves 3
FX = ["EURUSD", "XAUUSD", "BTCUSDT"]
STOCK_PATH = "/quote-stock-b-ws-api"
BOOK_ONLY = "AMZN.US"  # held as an order book only, by the last test
STALE_AFTER_S = 3.0
#: The forex/crypto endpoint's own stale_after_s ([endpoints.forex_crypto]): longer than its silence
#: deadline, so a stalled forex socket is found dead before any of its codes could be merely quiet.
FX_STALE_AFTER_S = 12.0


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    from scripts.simulator import SimulatorThread

    simulator = SimulatorThread(token=TEST_TOKEN, tick_rate=20.0, heartbeat_timeout=10.0, max_codes=3)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture(scope="module")
def system(sim: Any) -> Iterator[System]:
    strategies = f"""
[[strategies]]
name = "watcher"
kind = "tests.collector:Collector"
symbols = {json.dumps(STOCK + FX)}
"""
    # A longer silence deadline than the other modules': a loaded machine must not drop sockets on its own
    # here, since every drop makes every code of it stale.
    text = system_toml(
        sim.port,
        strategies,
        stale_after_s=STALE_AFTER_S,
        strategy_queue_batches=100000,
        silence_deadline_s=5.0,
        ping_deadline_s=3.0,
    )
    fx_url = f'url = "ws://127.0.0.1:{sim.port}/quote-b-ws-api"'
    text = text.replace(fx_url, f"{fx_url}\nstale_after_s = {FX_STALE_AFTER_S}")
    sys_ = System.start(parse_settings(text), TEST_TOKEN, timeout=120 * S)
    wait_for(lambda: sys_.registry().in_sync, 20, what="first subscription in sync")
    yield sys_
    sys_.stop()


@pytest.fixture(autouse=True)
def _healthy_after(sim: Any) -> Iterator[None]:
    yield
    sim.inject("clear")


def collected(system: System) -> dict[str, Any]:
    return system.get(system.actor("strategy:watcher").collected.remote())


def codes(system: System) -> dict[str, Any]:
    return system.registry().codes


def state_of(system: System, code: str) -> str:
    health_ = codes(system).get(code)  # absent for a moment while a new socket is being subscribed
    return "" if health_ is None else health_.state


def held(sim: Any, code: str) -> bool:
    return any(code in trades for trades in sim_sets(sim).values())


def incarnations(system: System) -> int:
    """1 + the decoder restarts seen: a restarted decoder starts a new episode of each anomaly."""
    events = system.status()["events"]
    return 1 + sum(1 for e in events if e["child"].startswith("decoder") and e["event"] == "restarted")


def health(system: System, event: str, code: str) -> list[float]:
    return [s for e, c, s in collected(system)["health"] if (e, c) == (event, code)]


def problems(system: System, code: str, words: str) -> list[str]:
    return [reason for c, reason in collected(system)["problems"] if c == code and words in reason]


def anomalies(system: System, code: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in ("decoder:0", "decoder:1"):
        stats = system.get(system.actor(name).statistics.remote())
        for anomaly, n in stats.anomalies.get(code, {}).items():
            out[anomaly] = out.get(anomaly, 0) + n
    return out


def ignored_stock_code(sim: Any) -> str:
    """The stock code the server ignores (it serves 3 of the 4), once its set is complete."""

    def missing() -> list[str]:
        served = sim_sets(sim).get(STOCK_PATH, set())
        return [c for c in STOCK if c not in served]

    [code] = wait_for(lambda: len(missing()) == 1 and missing(), 20, what="the server serving 3 stock codes")
    return code


def test_a_code_beyond_the_plan_limit_is_resubscribed_once_then_reported_never_started(
    system: System, sim: Any
) -> None:
    code = ignored_stock_code(sim)
    state = wait_for(
        lambda: state_of(system, code) == "never_started" and codes(system)[code],
        8 * STALE_AFTER_S,
        what=f"{code} never_started",
    )
    assert (state.reason, state.connection, state.last_tick_age_s) == ("never_started", "stock-0", -1.0)
    events = [e for e in system.registry().code_events if e.startswith(code)]
    resubscribed = [i for i, e in enumerate(events) if "resubscribing it once" in e]
    never = [i for i, e in enumerate(events) if "never started" in e]
    assert len(resubscribed) == 1, events
    assert len(never) == 1, events
    assert resubscribed < never, events
    assert "beyond the plan's per-connection limit" in events[never[0]]
    [reason] = wait_for(lambda: problems(system, code, "never started"), 10, what="on_problem for it")
    assert "also after one resubscribe" in reason
    served = [c for c in STOCK if c != code]
    wait_for(lambda: all(state_of(system, c) == "ok" for c in served + FX), 10, what="the served codes ok")


def test_a_muted_code_goes_stale_and_recovers_after_clear(system: System, sim: Any) -> None:
    served = [c for c in STOCK if c != ignored_stock_code(sim)]
    code = served[-1]
    assert sim.inject("mute", code=code)
    [silent] = wait_for(lambda: health(system, "stale", code), 4 * STALE_AFTER_S, what=f"on_stale({code})")
    assert silent >= STALE_AFTER_S
    state = codes(system)[code]
    assert (state.state, state.reason, state.connection) == ("stale", "quiet", "stock-0")
    assert any(e.startswith(f"{code} quiet: no tick") for e in system.registry().code_events)
    quiet = [e for e in system.registry().code_events if " quiet: " in e]
    assert [e.split()[0] for e in quiet] == [code], quiet  # only the muted code went quiet
    sim.inject("clear", code=code)
    [back] = wait_for(lambda: health(system, "recovered", code), 10, what=f"on_recovered({code})")
    assert back >= silent
    wait_for(lambda: state_of(system, code) == "ok", 10, what=f"{code} ok in the status")


def told_stale_then_recovered(  # noqa: PLR0917
    system: System, sim: Any, fault: str, path: str, conn_id: str, codes_: list[str], timeout: float
) -> None:
    """Inject ``fault`` on ``path``: every code of ``codes_`` is told ``on_stale`` (its connection
    ``conn_id`` is dead: the reason in the registry's events), then ``on_recovered``, and is ``ok``.
    """
    stale = {c: len(health(system, "stale", c)) for c in codes_}
    recovered = {c: len(health(system, "recovered", c)) for c in codes_}
    assert sim.inject(fault, path=path)

    def told(event: str, before: dict[str, int]) -> bool:
        return all(len(health(system, event, c)) > before[c] for c in codes_)

    wait_for(lambda: told("stale", stale), timeout, what="on_stale for each")
    events = system.registry().code_events
    dead = f" stale: its connection {conn_id} is dead"
    assert all(any(e.startswith(c + dead) for e in events) for c in codes_), events
    wait_for(lambda: told("recovered", recovered), 20, what="on_recovered for each")
    wait_for(lambda: all(state_of(system, c) == "ok" for c in codes_), 10, what=f"the codes of {conn_id} ok")


def test_a_dropped_connection_makes_all_its_codes_stale_at_once_then_they_recover(
    system: System, sim: Any
) -> None:
    never = ignored_stock_code(sim)
    never_started = state_of(system, never) == "never_started"
    told = len(health(system, "stale", never))
    told_stale_then_recovered(system, sim, "drop", "stock", "stock-0", [c for c in STOCK if c != never], 10)
    if never_started:  # (reached in the first test, unless a loaded machine dropped the socket first)
        assert len(health(system, "stale", never)) == told  # never started: not told again


def test_a_connection_declared_silent_makes_all_its_codes_stale_then_they_recover(
    system: System, sim: Any
) -> None:
    """The false-alive socket (the simulator's ``stall``): the heartbeat declares it silent and it is
    replaced; every code of it is stale at once (reason: the connection), then recovers.
    """
    told_stale_then_recovered(system, sim, "stall", "forex_crypto", "forex_crypto-0", FX, 20)


def test_corrupt_prices_are_not_delivered_and_reported_once(system: System, sim: Any) -> None:
    code = "AAPL.US"
    wait_for(lambda: held(sim, code), 10, what=f"{code} subscribed at the server")
    assert sim.inject("corrupt", code=code, price="0", count=2)
    assert sim.inject("corrupt", code=code, price="-1")
    wait_for(
        lambda: anomalies(system, code).get("price_not_positive") == 3, 10, what="3 corrupt ticks counted"
    )
    reasons = wait_for(lambda: problems(system, code, "not positive"), 10, what="on_problem for the price")
    assert "price 0 is not positive; not delivered" in reasons[0]
    assert len(reasons) <= incarnations(system), reasons  # once per episode (and decoder process)
    got = collected(system)
    assert got["prices"][code] not in ("0", "-1")
    assert got["violations"] == []


def test_a_seq_reset_keeps_ticks_flowing_and_is_reported_once(system: System, sim: Any) -> None:
    code = "BTCUSDT"
    wait_for(lambda: held(sim, code), 10, what=f"{code} subscribed at the server")
    last = max(collected(system)["seen"][code])
    assert sim.inject("seq_reset", code=code)

    def after_reset() -> list[int]:
        seqs = collected(system)["seen"][code]
        start = len(seqs) - 1 - seqs[::-1].index(1) if 1 in seqs[1:] else None
        return seqs[start:] if start is not None and len(seqs) - start >= 5 else []

    fresh = wait_for(after_reset, 10, what=f"{code} ticks from seq 1 on")
    assert fresh[:5] == [1, 2, 3, 4, 5]
    assert last > 5
    reasons = problems(system, code, "seq restarted")
    assert 1 <= len(reasons) <= incarnations(system), reasons
    assert "seq 1 after" in reasons[0]
    assert anomalies(system, code)["seq_reset"] >= 1
    assert collected(system)["violations"] == []


def test_tick_time_far_in_the_future_is_reported_and_delivered(system: System, sim: Any) -> None:
    code = "TSLA.US" if ignored_stock_code(sim) != "TSLA.US" else "MSFT.US"
    count = len(collected(system)["seen"][code])
    assert sim.inject("tick_time_skew", code=code, skew_s=7200)
    reasons = wait_for(
        lambda: problems(system, code, "far in the future"), 10, what="on_problem for the clock"
    )
    assert "ahead of the receive time" in reasons[0]
    assert len(reasons) <= incarnations(system), reasons
    wait_for(lambda: len(collected(system)["seen"][code]) > count + 5, 10, what=f"{code} still delivered")
    sim.inject("clear", code=code)
    wait_for(lambda: len(collected(system)["seen"][code]) > count + 15, 10, what=f"{code} after the clear")
    # The skewed ticks never became the mark: back to normal time is not "tick_time went backwards".
    assert "tick_time_backwards" not in anomalies(system, code)


def test_tick_time_far_in_the_past_is_reported_and_delivered(system: System, sim: Any) -> None:
    code = "XAUUSD"
    count = len(collected(system)["seen"][code])
    assert sim.inject("tick_time_skew", code=code, skew_s=-7200)
    reasons = wait_for(lambda: problems(system, code, "far in the past"), 10, what="on_problem for the clock")
    assert "7200 s behind the receive time" in reasons[0]
    wait_for(lambda: len(collected(system)["seen"][code]) > count + 5, 10, what=f"{code} still delivered")
    assert anomalies(system, code)["tick_time_past"] >= 1


def test_a_code_held_only_as_a_book_goes_stale_when_muted_and_recovers(system: System, sim: Any) -> None:
    # (Last in the module: its quiet event must not meet the muted trade code's test above.)
    registry = system.actor("registry")
    system.get(registry.subscribe.remote("watcher", [BOOK_ONLY], "book"))
    try:
        wait_for(lambda: collected(system)["books"].get(BOOK_ONLY), 20, what=f"{BOOK_ONLY} book pushes")
        assert BOOK_ONLY not in collected(system)["seen"]  # no trade of it: the books alone keep it ok
        wait_for(lambda: state_of(system, BOOK_ONLY) == "ok", 10, what=f"{BOOK_ONLY} ok on its books")
        assert sim.inject("mute", code=BOOK_ONLY)  # the simulator's mute silences books too
        [silent] = wait_for(
            lambda: health(system, "stale", BOOK_ONLY), 4 * STALE_AFTER_S, what=f"on_stale({BOOK_ONLY})"
        )
        assert silent >= STALE_AFTER_S
        state = codes(system)[BOOK_ONLY]
        assert (state.state, state.reason, state.connection) == ("stale", "quiet", "stock-0")
        books = len(collected(system)["books"][BOOK_ONLY])
        sim.inject("clear", code=BOOK_ONLY)
        [back] = wait_for(
            lambda: health(system, "recovered", BOOK_ONLY), 10, what=f"on_recovered({BOOK_ONLY})"
        )
        assert back >= silent
        assert len(collected(system)["books"][BOOK_ONLY]) > books  # the books came back
        wait_for(lambda: state_of(system, BOOK_ONLY) == "ok", 10, what=f"{BOOK_ONLY} ok in the status")
    finally:
        system.get(registry.unsubscribe.remote("watcher", [BOOK_ONLY], "book"))
    wait_for(lambda: BOOK_ONLY not in codes(system), 20, what=f"{BOOK_ONLY} forgotten once unheld")
