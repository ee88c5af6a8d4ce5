"""The whole actor system against the real simulator on 127.0.0.1, with real Ray: no mocks.

One system runs for the module (start-up costs seconds); each test injects one fault, checks the
recovery, and leaves the system healthy for the next. What one shell does alone is tested in that
shell's module: test_registry, test_decoder, test_heartbeat (the stall and the heartbeat cadence).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.core.settings import parse_settings
from tests.conftest import TEST_TOKEN, S, System, sim_sets, system_toml, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

STOCK = ["AAPL.US", "TSLA.US", "700.HK", "600519.SH"]
FX = ["EURUSD", "XAUUSD", "BTCUSDT"]
STOCK_PATH = "/quote-stock-b-ws-api"
FX_PATH = "/quote-b-ws-api"
DECIMAL = re.compile(r"-?\d+(\.\d+)?")


@pytest.fixture(scope="module")
def tape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tape") / "ticks.jsonl"


@pytest.fixture(scope="module")
def system(sim: Any, tape: Path) -> Iterator[System]:
    strategies = f"""
[[strategies]]
name = "tape"
kind = "recorder"
path = "{tape}"
symbols = {json.dumps(STOCK[:2] + FX[:2])}

[[strategies]]
name = "collector"
kind = "tests.collector:Collector"
symbols = {json.dumps(STOCK + FX)}
"""
    # A deep strategy queue: these tests check that the pipeline loses nothing even when a loaded
    # machine slows the collector; dropping for a slow strategy is tested in test_strategy.py.
    settings = parse_settings(system_toml(sim.port, strategies, strategy_queue_batches=100000))
    sys_ = System.start(settings, TEST_TOKEN, timeout=120 * S)
    wait_for(lambda: sys_.registry().in_sync, 20, what="first subscription in sync")
    yield sys_
    sys_.stop()


@pytest.fixture(autouse=True)
def _healthy_after(sim: Any, request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "system" in request.fixturenames:
        sim.inject("clear")


def pushes_read_up_to(since_ms: int, system: System, sim: Any) -> bool:
    """Every open connection has brought the collector a tick stamped after ``since_ms`` (the
    simulator's clock is this process's): a connection's frames go through one decoder in order, so
    every push before it was read (and counted, a ghost or not).
    """
    times = collected(system)["times"]
    conns = [c for c in sim.state()["connections"] if c["open"] and c["trades"]]
    return bool(conns) and all(any(times.get(code, 0) > since_ms for code in c["trades"]) for c in conns)


def collected(system: System, name: str = "collector") -> dict[str, Any]:
    return system.get(system.actor(f"strategy:{name}").collected.remote())


def in_sync_with_server(system: System, sim: Any) -> bool:
    reg = system.registry()
    sets = sim_sets(sim)
    return (
        reg.in_sync
        and sets.get(STOCK_PATH, set()) == {c for c in reg.union if c.endswith((".US", ".HK", ".SH", ".SZ"))}
        and sets.get(FX_PATH, set()) == {c for c in reg.union if not c.endswith((".US", ".HK", ".SH", ".SZ"))}
    )


def ticks_after(system: System, code: str, seq: int, timeout: float = 10.0) -> int:
    """Wait until the collector has a tick of ``code`` newer than ``seq``; returns the newest seq."""

    def newer() -> int:
        seqs = collected(system)["seen"].get(code, [])
        return seqs[-1] if seqs and seqs[-1] > seq else 0

    return wait_for(newer, timeout, what=f"a tick of {code} after seq {seq}")


def last_seq(system: System, code: str) -> int:
    seqs = collected(system)["seen"].get(code, [])
    return seqs[-1] if seqs else -1


class TestWholeJob:
    def test_both_endpoints_hold_the_full_sets(self, system: System, sim: Any) -> None:
        wait_for(lambda: in_sync_with_server(system, sim), 10, what="server sets == registry union")
        sets = sim_sets(sim)
        assert sets[STOCK_PATH] == set(STOCK)
        assert sets[FX_PATH] == set(FX)

    def test_ticks_reach_strategies_in_order_with_exact_prices(self, system: System) -> None:
        wait_for(
            lambda: all(len(collected(system)["seen"].get(c, [])) >= 5 for c in STOCK + FX),
            15,
            what="5 ticks of every code",
        )
        got = collected(system)
        assert got["violations"] == []
        for code, seqs in got["seen"].items():
            assert seqs == sorted(set(seqs)), code
        for code, price in got["prices"].items():
            assert DECIMAL.fullmatch(price), (code, price)

    def test_recorder_writes_every_field_in_order(self, system: System, tape: Path) -> None:
        def lines() -> list[dict[str, Any]]:
            if not tape.exists():
                return []
            return [json.loads(x) for x in tape.read_text().splitlines() if x]

        rows = wait_for(
            lambda: len(lines()) >= 20 and lines(), 10, what="20 recorded ticks (flushed each second)"
        )
        assert set(rows[0]) == {
            "code",
            "seq",
            "tick_time",
            "price",
            "volume",
            "turnover",
            "trade_direction",
            "received_ns",
        }
        last: dict[str, int] = {}
        for row in rows:
            assert row["code"] in STOCK[:2] + FX[:2]
            assert row["seq"] > last.get(row["code"], -1)
            last[row["code"]] = row["seq"]
            assert isinstance(row["price"], str)
            assert DECIMAL.fullmatch(row["price"])
            assert row["tick_time"] > 10**12  # milliseconds


class TestLoad:
    def test_a_burst_arrives_whole_in_order_without_a_false_restart(self, system: System, sim: Any) -> None:
        restarts_before = [e for e in system.status()["events"] if e["event"] in {"restart", "restarted"}]
        start = {c: last_seq(system, c) for c in FX}
        fx_conn = next(c for c in sim.state()["connections"] if c["open"] and c["path"] == FX_PATH)
        sim.inject("burst", conn=fx_conn["id"], count=60000)

        def caught_up() -> bool:
            seen = collected(system)["seen"]
            return sum(len([s for s in seen.get(c, []) if s > start[c]]) for c in FX) >= 60000

        wait_for(caught_up, 60, every=0.5, what="60000 burst ticks at the collector")
        stats = system.get(system.actor("strategy:collector").statistics.remote())
        assert (stats.missed, stats.out_of_order) == (0, 0)
        got = collected(system)
        assert got["violations"] == []
        for code in FX:
            seqs = [s for s in got["seen"][code] if s > start[code]]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{code}: a tick was lost in the burst"
        restarts = [e for e in system.status()["events"] if e["event"] in {"restart", "restarted"}]
        assert restarts == restarts_before, "the watchdog restarted a busy, healthy connection"


class TestOrderBooks:
    def test_book_subscriptions_are_their_own_full_sets(self, system: System, sim: Any) -> None:
        collector = system.actor("strategy:collector")
        assert isinstance(system.get(collector.do_subscribe.remote(["700.HK", "BTCUSDT"], "book")), dict)

        def book_sets() -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for conn in sim.state()["connections"]:
                if conn["open"]:
                    out.setdefault(conn["path"], set()).update(conn["books"])
            return out

        wait_for(lambda: book_sets() == {STOCK_PATH: {"700.HK"}, FX_PATH: {"BTCUSDT"}}, 15, what="book sets")
        wait_for(lambda: set(collected(system)["books"]) == {"700.HK", "BTCUSDT"}, 15, what="book snapshots")
        assert sim_sets(sim)[STOCK_PATH] == set(STOCK)  # the trade set is untouched by 22002
        system.get(system.actor("registry").unsubscribe.remote("collector", ["700.HK", "BTCUSDT"], "book"))
        wait_for(lambda: not any(book_sets().values()), 15, what="books cancelled (22006 type 1)")
        wait_for(lambda: system.registry().in_sync, 10, what="in sync")


class TestFaults:
    def _recovered(self, system: System, sim: Any, code: str = "EURUSD", timeout: float = 15.0) -> None:
        seq = last_seq(system, code)
        ticks_after(system, code, seq, timeout)
        wait_for(lambda: in_sync_with_server(system, sim), timeout, what="resubscribed full sets")

    def test_blackhole_is_detected_and_replaced(self, system: System, sim: Any) -> None:
        conn = next(c for c in sim.state()["connections"] if c["open"] and c["path"] == STOCK_PATH)
        sim.inject("blackhole", conn=conn["id"])
        self._recovered(system, sim, "AAPL.US")

    def test_drop_reconnects_and_resubscribes(self, system: System, sim: Any) -> None:
        sim.inject("drop", path=FX_PATH)
        self._recovered(system, sim)

    def test_606_on_reconnect_backs_off_and_retries(self, system: System, sim: Any) -> None:
        refused_before = sim.state()["totals"].get("refused_606", 0)
        sim.inject("refuse", path=FX_PATH, count=2)
        sim.inject("drop", path=FX_PATH)
        wait_for(
            lambda: sim.state()["totals"].get("refused_606", 0) >= refused_before + 2,
            15,
            what="two refused reconnects",
        )
        self._recovered(system, sim)

    def test_429_is_retried(self, system: System, sim: Any) -> None:
        sim.inject("reply", path=STOCK_PATH, ret=429)
        collector = system.actor("strategy:collector")
        assert isinstance(system.get(collector.do_subscribe.remote(["MSFT.US"])), dict)
        wait_for(lambda: "MSFT.US" in sim_sets(sim).get(STOCK_PATH, set()), 15, what="MSFT.US after a 429")
        system.get(system.actor("registry").unsubscribe.remote("collector", ["MSFT.US"]))
        wait_for(lambda: in_sync_with_server(system, sim), 10, what="back in sync")

    def test_603_tells_the_holders_the_plan_is_wrong(self, system: System, sim: Any) -> None:
        sim.inject("reply", path=STOCK_PATH, ret=603)
        collector = system.actor("strategy:collector")
        assert isinstance(system.get(collector.do_subscribe.remote(["META.US"])), dict)

        def told() -> list[Any]:
            return [p for p in collected(system)["problems"] if "603" in p[1]]

        problems = wait_for(told, 15, what="the 603 reported to the holder")
        assert "feed.plan" in problems[0][1]
        assert any("603" in e for e in system.registry().vendor_errors)
        # The reply fault answers one request; the retry after the back-off succeeds.
        wait_for(lambda: "META.US" in sim_sets(sim).get(STOCK_PATH, set()), 20, what="META.US after the 603")
        system.get(system.actor("registry").unsubscribe.remote("collector", ["META.US"]))

    def test_a_new_code_is_asked_for_once_its_decoder_has_the_route(self, system: System, sim: Any) -> None:
        """A decoder slow to take new routes (here the stock one, stopped with SIGSTOP for longer than the
        registry once waited) holds back its connection's request for a new code until it has them, or
        the code's first ticks would be dropped as ghosts (before: 9 here); the other connection's
        requests go on.
        """
        stock, fx = "MSFT.US", "GBPUSD"
        # In step with the server first: an earlier test's unsubscribed code pushes until its set is acked.
        wait_for(lambda: in_sync_with_server(system, sim), 20, what="the server's sets as desired")
        since_ms = time.time_ns() // 1_000_000
        wait_for(lambda: pushes_read_up_to(since_ms, system, sim), 20, what="its last pushes read")
        decoders = system.status()["decoders"]
        ghosts = sum(d["ghosts"] for d in decoders.values())
        key = next(key for key, d in decoders.items() if STOCK[0] in d["tick_ages"])
        pid = system.pids()[f"decoder:{key}"]
        collector = system.actor("strategy:collector")
        os.kill(pid, signal.SIGSTOP)
        try:
            assert isinstance(system.get(collector.do_subscribe.remote([stock, fx])), dict)
            wait_for(lambda: fx in sim_sets(sim).get(FX_PATH, set()), 20, what=f"{fx}, its decoder running")
            # The registry holds the request while it awaits the route, however long that takes: wait
            # until it says it has waited 3 s, longer than the 2 s it once gave a decoder.
            wait_for(
                lambda: system.registry().routes_awaited.get(f"decoder:{key}", 0.0) >= 3.0,
                20,
                what="the registry awaiting the route for 3 s",
            )
            early = stock in sim_sets(sim).get(STOCK_PATH, set())
            assert not early, "asked for before its decoder had the route"
            assert list(system.registry().routes_awaited) == [f"decoder:{key}"]  # the status names it
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: stock in sim_sets(sim).get(STOCK_PATH, set()), 20, what=f"{stock} subscribed")
        wait_for(lambda: collected(system)["seen"].get(stock), 20, what=f"ticks of {stock}")
        assert sum(d["ghosts"] for d in system.status()["decoders"].values()) == ghosts
        system.get(system.actor("registry").unsubscribe.remote("collector", [stock, fx]))

    def test_600_finds_the_bad_code_and_keeps_the_good_ones(self, system: System, sim: Any) -> None:
        collector = system.actor("strategy:collector")
        good = ["NVDA.US", "AMZN.US", "GOOGL.US"]
        result = system.get(collector.do_subscribe.remote([*good, "ZZZZ.US"]))
        assert isinstance(result, dict)  # accepted locally: ZZZZ.US is well-formed, only the vendor knows
        wait_for(lambda: "ZZZZ.US" in system.registry().refused, 20, what="ZZZZ.US quarantined")
        wait_for(lambda: set(good) <= sim_sets(sim).get(STOCK_PATH, set()), 15, what="good codes subscribed")
        assert set(STOCK) <= sim_sets(sim)[STOCK_PATH]  # the previous set stayed in force
        told = wait_for(
            lambda: [p for p in collected(system)["problems"] if p[0] == "ZZZZ.US"],
            10,
            what="the strategy told",
        )
        assert "600" in told[0][1]
        # A second attempt is refused at once, naming the vendor's reason.
        again = system.get(collector.do_subscribe.remote(["ZZZZ.US"]))
        assert "ZZZZ.US" in again
        assert "600" in again
        system.get(system.actor("registry").unsubscribe.remote("collector", good))
