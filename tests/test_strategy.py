"""Strategies: delivery guarantees with a slow strategy beside a fast one (real Ray, real simulator)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import ray

from actors.core.normalise import Tick
from actors.strategy import strategy_actor
from tests.collector import SlowHandler
from tests.conftest import S, System, collector_toml, frozen, start_system, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

CODES = ["AAPL.US", "TSLA.US", "EURUSD", "BTCUSDT"]


@pytest.fixture(scope="module")
def system(sim: Any) -> Iterator[System]:
    # Only the slow strategy holds CODES at start, so it holds them before the server pushes any tick of
    # them (routes reach the decoders before the request goes out): this module's simulator is fresh,
    # so the slow strategy is sent every tick of each code from seq 1. The others join at once after.
    strategies = collector_toml("fast", []) + collector_toml("slow", CODES, sleep_s=2.0)
    strategies += collector_toml("pausing", [])
    # 80 ticks/s over 4 codes, often one tick a batch. 16 batches on their way to a strategy, then its
    # ticks join one waiting batch, up to 150 ticks: about 2 s of a strategy that does not keep up. The
    # slow one (2 s per on_ticks) exceeds it for sure; the pausing one's 0.8 s stop does not (16 batches
    # alone would have dropped ticks there); a fast one is safe from a loaded machine's delays.
    sys_ = start_system(sim, strategies, in_sync=False, strategy_queue_batches=16, strategy_queue_ticks=150)
    for name in ("fast", "pausing"):
        sys_.get(sys_.actor("registry").subscribe.remote(name, CODES))
    yield sys_
    sys_.stop()


def got(system: System, name: str) -> dict[str, Any]:
    return system.get(system.actor(f"strategy:{name}").collected.remote(), timeout=30)


def stats(system: System, name: str) -> Any:
    return system.get(system.actor(f"strategy:{name}").statistics.remote(), timeout=30)


def test_a_slow_strategy_misses_counted_ticks_and_never_stalls_the_fast_one(system: System, sim: Any) -> None:
    # 4 codes x 20 ticks/s: the slow strategy (2 s per on_ticks, 150 ticks held for it) falls behind.
    wait_for(lambda: stats(system, "slow").missed > 0, 30, what="the slow strategy to miss ticks")
    wait_for(lambda: got(system, "slow")["missed_reports"] > 0, 30, what="on_missed called")
    fast = got(system, "fast")
    assert fast["violations"] == []
    for code in CODES:
        seqs = fast["seen"][code]
        # the fast strategy got every tick the server pushed: no gap in the per-code seq
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), code
    fast_stats = stats(system, "fast")
    assert (fast_stats.missed, fast_stats.out_of_order) == (0, 0)
    decoders = system.status()["decoders"].values()
    assert all(d["dropped_for_slow"].get("fast", 0) == 0 for d in decoders)
    assert got(system, "slow")["violations"] == []

    # Every tick of its codes was sent to the slow strategy from seq 1 on (see the fixture), so once it
    # keeps up again, the ticks up to the last one it saw of each code are exactly those it saw plus those
    # counted as missed, and on_missed was told of every one. (While it falls behind, the count runs
    # ahead of what it saw: a batch dropped from its queue is newer than the one inside on_ticks.)
    system.get(system.actor("strategy:slow").set_sleep.remote(0.0))

    ledger: dict[str, Any] = {}

    def balanced() -> bool:
        ledger.update(system.get(system.actor("strategy:slow").ledger.remote()))
        return (
            set(ledger["last"]) == set(CODES)
            and ledger["seen"] + ledger["missed"] == sum(ledger["last"].values())
            and ledger["missed_reports"] == ledger["missed"]
        )

    try:
        wait_for(balanced, 30, what="seen + missed == every tick sent, on_missed told of all")
    finally:
        print(f"the slow strategy's ledger: {ledger}")
    assert ledger["missed"] > 0
    assert ledger["out_of_order"] == 0


def test_a_strategy_that_pauses_gets_every_tick_in_bigger_batches(system: System, tmp_path: Path) -> None:
    """A strategy whose event loop stops for 0.8 s (a long computation, a collector pause) misses no
    tick: while it is behind, its decoder joins the new ticks into one waiting batch, and it catches up
    with a few big on_ticks calls. Before, every batch beyond 16 was dropped for it.
    """
    wait_for(lambda: set(got(system, "pausing")["seen"]) == set(CODES), 30, what="ticks of every code")
    with frozen(system.actor("strategy:pausing"), tmp_path, "the pausing strategy") as release:
        time.sleep(0.8)
        release()
    before = {code: seqs[-1] for code, seqs in got(system, "pausing")["seen"].items()}
    wait_for(
        lambda: all(got(system, "pausing")["seen"][c][-1] > before[c] + 10 for c in CODES),
        30,
        what="ticks flowing again after the pause",
    )
    pausing = got(system, "pausing")
    assert pausing["violations"] == []
    for code in CODES:
        seqs = pausing["seen"][code]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{code}: a tick is missing"
    assert pausing["missed_reports"] == 0
    assert stats(system, "pausing").missed == 0
    decoders = system.status()["decoders"].values()
    assert sum(d["joined"].get("pausing", 0) for d in decoders) > 0, "the decoder joined no batch"


def test_subscribe_refusals_name_each_code(system: System) -> None:
    fast = system.actor("strategy:fast")
    text = system.get(fast.do_subscribe.remote(["aapl", "", "EURUSD"]))
    assert "SubscriptionRefused" in text
    assert "'aapl'" in text
    assert "AAPL.US" in text
    assert "empty code" in text


def test_strategy_actor_refuses_a_non_strategy_class() -> None:
    for not_a_strategy_class in (dict, SlowHandler("an instance"), ticks_payload):
        with pytest.raises(TypeError, match=r"not a subclass of actors\.Strategy"):
            strategy_actor(not_a_strategy_class)  # type: ignore[arg-type]
    # A Strategy subclass is made a Ray actor class that reserves no CPU (strategies mostly wait).
    actor_class = strategy_actor(SlowHandler)
    assert isinstance(actor_class, ray.actor.ActorClass)
    # Ray sets _default_options on the ActorClass it builds in a classmethod: undeclared for mypy.
    assert actor_class._default_options == {"num_cpus": 0}  # type: ignore[attr-defined]


def ticks_payload(code: str, *seqs: int) -> bytes:
    """A batch as a decoder sends it to ``Strategy.deliver``: msgpack-encoded ``Tick``s."""
    ticks = [Tick(code, seq, 1732550400123, "189.25", "10", "1892.5", 1) for seq in seqs]
    return msgspec.msgpack.encode(ticks)


async def test_wait_idle_waits_for_the_batch_inside_on_ticks() -> None:
    """Idle means nothing queued AND no batch inside a hook: an empty queue alone is not idle."""
    strategy = SlowHandler("idle")  # in this process: wait_idle's answer is the property, no Ray needed
    await strategy.deliver("on_ticks", ticks_payload("AAPL.US", 1, 2))
    await asyncio.wait_for(strategy.begun.wait(), 10)
    assert not strategy._delivery.queued
    assert await strategy.wait_idle(0.05) is False
    await strategy.release()
    assert await strategy.wait_idle(10) is True
    assert strategy.log == ["on_ticks begun (2 ticks)", "on_ticks done"]
    await strategy.stop()


def test_stop_lets_the_batch_inside_on_ticks_finish_then_runs_on_stop() -> None:
    """The supervisor's clean stop: a batch still inside a slow on_ticks completes, on_stop comes after."""
    handle = strategy_actor(SlowHandler).options(max_concurrency=64).remote("stopper")
    try:
        ray.get(handle.deliver.remote("on_ticks", ticks_payload("AAPL.US", 1, 2, 3)), timeout=60 * S)

        def log() -> list[str]:
            return ray.get(handle.hook_log.remote(), timeout=30 * S)

        wait_for(log, 10, what="the batch inside on_ticks")
        ray.get(handle.stop.remote(), timeout=30 * S)
        assert log() == ["on_ticks begun (3 ticks)", "stop", "on_ticks done", "on_stop"]
        stats = ray.get(handle.statistics.remote(), timeout=30 * S)
        assert (stats.batches, stats.ticks, stats.queued_batches) == (1, 3, 0)
    finally:
        ray.kill(handle, no_restart=True)
