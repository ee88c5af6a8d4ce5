"""Connections that follow the subscriptions, in a running job, against the real simulator (no mocks).

The simulator enforces a premium plan cut to 2 codes per connection (3 connections per token and
path): a connection holding a third code would see it silently ignored, and a fourth connection would
get 606. The job is configured with the same limits, starts with the one stock connection its
configured symbols need, and must grow to three when a strategy subscribes more at runtime, refuse
with the plan named beyond that, and close the grown connections once they held nothing for
``feed.idle_connection_close_s``.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from tests.conftest import TEST_TOKEN, S, System, collector_toml, start_system, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

STOCK_PATH = "/quote-stock-b-ws-api"
FIRST = ["AAPL.US", "TSLA.US"]
MORE = ["700.HK", "MSFT.US", "NVDA.US"]
BEYOND = ["GOOGL.US", "9988.HK"]
CODES_PER_CONNECTION = 2


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    """A simulator that enforces the job's limits: premium, 2 codes per connection."""
    from scripts.simulator import SimulatorThread

    simulator = SimulatorThread(
        token=TEST_TOKEN,
        tick_rate=20.0,
        heartbeat_timeout=10.0,
        plan="premium",
        max_codes=CODES_PER_CONNECTION,
    )
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture(scope="module")
def system(sim: Any) -> Iterator[System]:
    sys_ = start_system(
        sim,
        collector_toml("grower", FIRST),
        plan="premium",
        max_codes_per_connection=CODES_PER_CONNECTION,
        idle_connection_close_s=2.0,
    )
    yield sys_
    sys_.stop()


def open_stock_sets(sim: Any) -> list[set[str]]:
    """The trade set of every open stock socket of the simulator."""
    return [set(c["trades"]) for c in sim.state()["connections"] if c["open"] and c["path"] == STOCK_PATH]


def stock_conns(system: System) -> set[str]:
    return {c.conn_id for c in system.registry().connections if c.endpoint == "stock"}


def seen(system: System) -> dict[str, Any]:
    return system.get(system.actor("strategy:grower").collected.remote())


@pytest.mark.timeout(600)  # a whole job grows and shrinks under the vendor's pacing
def test_subscribe_beyond_the_start_up_sizing_grows_then_the_quota_refuses_then_it_shrinks(
    sim: Any, system: System
) -> None:
    collector = system.actor("strategy:grower")
    assert stock_conns(system) == {"stock-0"}, "start-up: one stock connection for two codes"
    assert system.get(collector.do_subscribe.remote(MORE)) == dict.fromkeys(FIRST + MORE, 1)

    # Grown to three stock connections, none over the limit, every code served.
    def grown() -> bool:
        sets = open_stock_sets(sim)
        return len(sets) == 3 and set().union(*sets) == set(FIRST + MORE)

    wait_for(grown, 60, what="three open stock sockets carrying the five codes")
    assert all(len(s) <= CODES_PER_CONNECTION for s in open_stock_sets(sim))
    assert stock_conns(system) == {"stock-0", "stock-1", "stock-2"}
    wait_for(lambda: set(FIRST + MORE) <= set(seen(system)["seen"]), 30, what="ticks of every code")
    events = system.status()["events"]
    assert {e["child"] for e in events if e["event"] == "opened"} == {
        "connection:stock-1",
        "connection:stock-2",
    }
    # Each grown pair (connection and decoder) has a placement group of its own, beside the start-up one.
    run_id = system.status()["run_id"]
    assert live_groups(run_id) == {"startup", "stock-1", "stock-2"}

    # Beyond the quota (3 connections x 2 codes, 5 held): one of the two would fit, the other not. The
    # call is refused as a whole, naming the code that did not fit with the plan; nothing changed.
    refusal = system.get(collector.do_subscribe.remote(BEYOND))
    assert "QuotaExhausted" in refusal, refusal
    assert (
        "subscription refused, nothing changed: 'GOOGL.US': quota exhausted: plan 'premium' allows "
        "3 connection(s) per token x 2 codes on the stock endpoint" in refusal
    ), refusal
    assert "'9988.HK':" not in refusal
    assert set(system.registry().union) == set(FIRST + MORE)

    # Codes leave: nothing moves; the emptied connections close after the grace period.
    before = {frozenset(s) for s in open_stock_sets(sim)}
    assert system.get(collector.do_unsubscribe.remote(MORE)) == dict.fromkeys(FIRST, 1)
    wait_for(lambda: stock_conns(system) == {"stock-0"}, 30, what="the grown connections closed")
    wait_for(
        lambda: open_stock_sets(sim) == [set(FIRST)],
        30,
        what="one stock socket left, carrying the first codes",
    )
    assert frozenset(FIRST) in before, "the first codes stayed on their connection all along"
    for name in ("connection:stock-1", "connection:stock-2", "decoder:2", "decoder:3"):

        def killed(n: str = name) -> bool:
            return not _exists(n, system.namespace)

        wait_for(killed, 30, what=f"{name} killed")
    wait_for(lambda: live_groups(run_id) == {"startup"}, 30, what="the closed pairs' placement groups freed")
    assert "connection:stock-1" not in system.pids()
    assert seen(system)["violations"] == []


@pytest.mark.timeout(600)
def test_a_grown_connection_survives_a_supervisor_kill_and_dies_with_stop(sim: Any) -> None:
    """The Supervisor creates grown connections detached: its SIGKILL leaves them serving, its
    restarted self finds them by name, and a clean stop kills them.
    """
    system = start_system(
        sim,
        collector_toml("killer", FIRST),
        plan="premium",
        max_codes_per_connection=CODES_PER_CONNECTION,
        idle_connection_close_s=60.0,
    )
    try:
        collector = system.actor("strategy:killer")
        system.get(collector.do_subscribe.remote(MORE[:1]))
        wait_for(lambda: "stock-1" in stock_conns(system), 30, what="a second stock connection")
        wait_for(lambda: system.registry().in_sync, 30, what="in sync on two connections")
        run_id = system.status()["run_id"]
        assert live_groups(run_id) == {"startup", "stock-1"}
        before = system.pids()
        os.kill(before["supervisor"], signal.SIGKILL)
        wait_for(
            lambda: system.pids()["supervisor"] != before["supervisor"], 60, what="the Supervisor restarted"
        )
        # The grown connection kept its process, and the restarted Supervisor knows it.
        assert system.pids()["connection:stock-1"] == before["connection:stock-1"]
        count = len(seen_of(system, "killer").get(MORE[0], []))
        wait_for(
            lambda: len(seen_of(system, "killer").get(MORE[0], [])) > count, 30, what="ticks still flowing"
        )
        # The restarted Supervisor found the grown pair's placement group by name: still one.
        assert live_groups(run_id) == {"startup", "stock-1"}
    finally:
        system.stop()
    for name in ("connection:stock-1", "connection:stock-0", "decoder:2"):

        def gone(n: str = name) -> bool:
            return not _exists(n, system.namespace)

        wait_for(gone, 30, what=f"{name} gone after stop")
    wait_for(lambda: not live_groups(run_id), 30, what="every placement group of the job freed by stop")


def live_groups(run_id: str) -> set[str]:
    """The job's placement groups not removed, by what follows the run's prefix: "startup" (the
    start-up pairs) or a grown connection's id (actors.core.placement.group_name).
    """
    from ray.util.placement_group import placement_group_table

    from actors.core.placement import group_name

    prefix = group_name(run_id, "")
    return {
        info["name"][len(prefix) :]
        for info in placement_group_table().values()
        if info["name"].startswith(prefix) and info["state"] != "REMOVED"
    }


def seen_of(system: System, name: str) -> dict[str, list[int]]:
    return system.get(system.actor(f"strategy:{name}").collected.remote())["seen"]


def _exists(name: str, namespace: str) -> bool:
    try:
        ray.get_actor(name, namespace=namespace)
    except ValueError:
        return False
    return True


# --- several tokens -----------------------------------------------------------------------------------

SECOND_TOKEN = TEST_TOKEN + "-second"
TOKEN_NAMES = ["TICKVISOR_TEST_TOKEN", "TICKVISOR_TEST_TOKEN_2"]
FOUR = ["AAPL.US", "TSLA.US", "700.HK", "MSFT.US"]


@pytest.fixture
def sim2() -> Iterator[Any]:
    """A simulator that knows two tokens, each limited to 2 connections per path of 2 codes."""
    from scripts.simulator import SimulatorThread

    simulator = SimulatorThread(
        token=TEST_TOKEN,
        more_tokens=(SECOND_TOKEN,),
        tick_rate=20.0,
        heartbeat_timeout=10.0,
        plan="premium",
        max_connections=2,
        max_codes=CODES_PER_CONNECTION,
    )
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.mark.timeout(600)
def test_two_tokens_add_up_and_a_revoked_one_is_taken_out_while_the_other_serves(sim2: Any) -> None:
    from actors.core.settings import parse_settings
    from actors.core.tokens import Secret
    from tests.conftest import system_toml

    text = system_toml(
        sim2.port,
        collector_toml("pair", FOUR),
        plan="premium",
        max_connections=1,  # one connection per token: the second token's quota is what makes room
        max_codes_per_connection=CODES_PER_CONNECTION,
        token_envs=TOKEN_NAMES,
    )
    tokens = {TOKEN_NAMES[0]: Secret(TEST_TOKEN), TOKEN_NAMES[1]: Secret(SECOND_TOKEN)}
    system = System.start(parse_settings(text), tokens, timeout=120 * S)
    try:
        wait_for(lambda: system.registry().in_sync, 30, what="in sync")

        def stock_by_token() -> dict[int, set[str]]:
            out: dict[int, set[str]] = {}
            for c in sim2.state()["connections"]:
                if c["open"] and c["path"] == STOCK_PATH:
                    out.setdefault(c["token"], set()).update(c["trades"])
            return out

        # Quotas add up: one connection on each token carries two codes each.
        wait_for(
            lambda: (
                stock_by_token().keys() == {0, 1} and set().union(*stock_by_token().values()) == set(FOUR)
            ),
            30,
            what="the four codes on one connection of each token",
        )
        collector = system.actor("strategy:pair")
        refusal = system.get(collector.do_subscribe.remote(["NVDA.US"]))
        assert "2 live token(s) give 2 connection(s), 4 codes, all taken" in refusal, refusal

        # The second token expires: it is taken out, the job goes on with the first.
        moved = stock_by_token()[1]
        assert sim2.revoke(1) >= 1
        wait_for(
            lambda: any(e["event"] == "token out" for e in system.status()["events"]),
            30,
            what="a token-out event",
        )
        (event,) = [e for e in system.status()["events"] if e["event"] == "token out"]
        assert "token TICKVISOR_TEST_TOKEN_2 refused (401 token invalid" in event["reason"], event
        assert SECOND_TOKEN not in json.dumps(system.status()), "a token value in the status"
        assert system.get(system.sup.failure.remote()) is None, "the job goes on"
        # One connection per token: no room for the moved codes; their holder is told, the rest still flows.
        wait_for(
            lambda: stock_by_token() == {0: set(FOUR) - moved}, 30, what="only the first token's socket left"
        )
        problems = wait_for(lambda: seen_of_all(system, "pair")["problems"], 30, what="the holder told")
        assert {code for code, _ in problems} == moved
        assert all("quota exhausted" in why for _, why in problems)
        code = min(set(FOUR) - moved)
        count = len(seen_of_all(system, "pair")["seen"].get(code, []))
        wait_for(
            lambda: len(seen_of_all(system, "pair")["seen"].get(code, [])) > count,
            30,
            what="ticks still flowing",
        )
    finally:
        system.stop()


def seen_of_all(system: System, name: str) -> dict[str, Any]:
    return system.get(system.actor(f"strategy:{name}").collected.remote())
