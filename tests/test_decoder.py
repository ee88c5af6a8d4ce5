"""The Decoder shell (actors/decoder.py): dedupe, ghosts, malformed frames, per-strategy drops.

A Decoder instance is driven directly in the test process with raw frames in the vendor's form
(built from the recorded frames in tests/frames), so each ``decode`` call is synchronous and every
count is exact. What it talks to is real, on the session's Ray: a Registry actor (it forwards
responses there) and Collector strategies, named in a namespace of this module's own, which is where
the decoder looks its strategies up. No system, no socket: the decoder's own tests need neither.
(The ghost and malformed-frame tests were system tests in test_system.py, driven by the simulator's
``ghost`` and ``malformed`` faults; the frames here are the same quirks, with exact counts.)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.core.naming import REGISTRY, strategy_name
from actors.decoder import Decoder
from actors.registry import Registry
from actors.strategy import strategy_actor
from tests.collector import Collector
from tests.conftest import S, frozen, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

FRAMES = Path(__file__).resolve().parent / "frames"
CONN = "stock-0"


def recorded(name: str) -> bytes:
    """A recorded vendor frame, as read from the socket."""
    return (FRAMES / f"{name}.json").read_bytes().strip()


def push(name: str, **data: Any) -> bytes:
    """A recorded vendor push with some ``data`` fields replaced."""
    frame = json.loads(recorded(name))
    frame["data"].update(data)
    return json.dumps(frame, separators=(",", ":")).encode()


def trade(code: str, seq: int) -> bytes:
    """A 22998 trade push as the vendor sends it."""
    return push("push_trade_int_seq_ms", code=code, seq=seq)


def book(code: str, seq: int) -> bytes:
    """A 22999 order-book push (ten levels a side) as the vendor sends it."""
    return push("push_book_hk_ten_levels", code=code, seq=seq)


class DecoderProxy:
    """A Decoder actor, called as if it were here: each call waits for its answer, so counts are exact.

    (It must be an actor: it sends to its strategies over channels from its own event loop.)
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def set_routes(self, routes: dict[str, Any], book_routes: dict[str, Any], version: int = 0) -> int:
        return ray.get(self._handle.set_routes.remote(routes, book_routes, version), timeout=30 * S)

    def decode(self, conn_id: str, epoch: int, frames: list[bytes], received_ns: int) -> int:
        return ray.get(self._handle.decode.remote(conn_id, epoch, frames, received_ns), timeout=30 * S)

    def statistics(self) -> Any:
        return ray.get(self._handle.statistics.remote(), timeout=30 * S)


class World:
    """The real actors a decoder talks to, in a namespace of their own."""

    def __init__(self) -> None:
        self.namespace = f"test-decoder-{uuid.uuid4().hex[:8]}"
        self.state_key = f"tickvisor-test/{self.namespace}/registry"
        registry: Any = (  # a handle: Ray types it as the class, whose methods lack .remote
            ray.remote(Registry)
            .options(name=REGISTRY, namespace=self.namespace, num_cpus=0)
            .remote({"stock": [CONN]}, 3000, self.namespace, self.state_key)
        )
        self.registry = registry
        self.strategies = {
            name: strategy_actor(Collector)
            .options(name=strategy_name(name), namespace=self.namespace, max_concurrency=64)
            .remote(name)
            for name in ("a", "b", "slow")
        }
        # Each test gets a decoder of its own, numbered apart: a strategy orders batches per decoder.
        self._ids = itertools.count()
        self._decoders: list[Any] = []
        ray.get([s.statistics.remote() for s in self.strategies.values()], timeout=60 * S)
        ray.get(self.registry.status.remote(), timeout=60 * S)

    def decoder(
        self, max_pending: int = 64, *, deliver_corrupt: bool = False, max_pending_ticks: int = 50_000
    ) -> DecoderProxy:
        handle = (
            ray.remote(Decoder)
            .options(namespace=self.namespace, num_cpus=0)
            .remote(
                next(self._ids),
                self.registry,
                self.namespace,
                max_pending,
                deliver_corrupt=deliver_corrupt,
                max_pending_ticks=max_pending_ticks,
            )
        )
        self._decoders.append(handle)
        return DecoderProxy(handle)

    def collected(self, name: str) -> dict[str, Any]:
        return ray.get(self.strategies[name].collected.remote(), timeout=30 * S)

    def seen(self, name: str, code: str) -> list[int]:
        """The trade seqs of ``code`` that strategy ``name`` got in ``on_ticks``, in order."""
        return self.collected(name)["seen"].get(code, [])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            ray.get(self.registry.clear_state.remote(), timeout=10 * S)
        for handle in [self.registry, *self.strategies.values(), *self._decoders]:
            ray.kill(handle, no_restart=True)


@pytest.fixture(scope="module")
def world(ray_session: None) -> Iterator[World]:
    w = World()
    yield w
    w.close()


class TestDedupe:
    @pytest.mark.parametrize("kind", ["trades", "book"])
    def test_a_code_that_loses_its_last_holder_starts_afresh(self, world: World, kind: str) -> None:
        """The dedupe mark of a code goes with its last holder, for trades and order books alike: when
        the code is held again, the vendor's pushes are delivered from whatever seq it sends.
        """
        code, make, seen = {
            "trades": ("AMD.US", trade, "seen"),
            "book": ("9988.HK", book, "book_seqs"),
        }[kind]

        def routes(*holders: str) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
            table = {code: holders} if holders else {}
            return (table, {}) if kind == "trades" else ({}, table)

        decoder = world.decoder()
        decoder.set_routes(*routes("a"))
        assert decoder.decode(CONN, 1, [make(code, 500)], 0) == 1
        decoder.set_routes(*routes())  # a let go: nobody holds the code
        decoder.set_routes(*routes("b"))  # b takes it up later
        assert decoder.decode(CONN, 1, [make(code, 400)], 0) == 1, "taken for a duplicate of seq 500"
        stats = decoder.statistics()
        assert (stats.delivered, stats.duplicates, stats.ghosts) == (2, 0, 0)
        wait_for(lambda: world.collected("b")[seen].get(code) == [400], 10, what=f"b to get {code} seq 400")
        assert world.collected("a")[seen][code] == [500]

    def test_routes_older_than_those_in_force_are_ignored(self, world: World) -> None:
        """Ray runs an async actor's calls in no guaranteed order: the registry's empty tables sent at
        the decoder's start can run after the next ones, which hold the code. They must not win.
        """
        code = "CRM.US"
        decoder = world.decoder()
        assert decoder.set_routes({code: ("a",)}, {}, version=200) == 1
        assert decoder.set_routes({}, {}, version=100) == 1  # older: ignored
        assert decoder.decode(CONN, 1, [trade(code, 3)], 0) == 1
        assert decoder.statistics().ghosts == 0
        wait_for(lambda: world.seen("a", code) == [3], 10, what=f"a to get {code} seq 3")

    def test_the_tick_pushed_again_after_a_reconnect_is_dropped_as_a_duplicate(self, world: World) -> None:
        code = "TSLA.US"
        decoder = world.decoder()
        decoder.set_routes({code: ("a",)}, {})
        assert decoder.decode(CONN, 1, [trade(code, seq) for seq in (7, 8, 9)], 0) == 3
        # A new socket (epoch 2): on subscribe the vendor pushes the latest tick again, then goes on.
        assert decoder.decode(CONN, 2, [trade(code, 9), trade(code, 10)], 0) == 1
        stats = decoder.statistics()
        assert (stats.ticks, stats.delivered, stats.duplicates) == (5, 4, 1)
        wait_for(lambda: world.seen("a", code) == [7, 8, 9, 10], 10, what=f"{code} 7..10, each once")


class TestTickAges:
    def test_a_book_push_is_a_sign_of_life_like_a_trade(self, world: World) -> None:
        """The ages the registry's per-code liveness and the status read: a code held only as a book
        has one from its book pushes, and for a code held both ways the newer push of either kind counts.
        """
        now_ns = time.time_ns()
        decoder = world.decoder()
        decoder.set_routes({"AMD.US": ("a",)}, {"9988.HK": ("a",), "AMD.US": ("a",)})
        assert decoder.decode(CONN, 1, [trade("AMD.US", 1)], now_ns - 1000 * 10**9) == 1
        assert decoder.decode(CONN, 1, [book("9988.HK", 1), book("AMD.US", 1)], now_ns - 5 * 10**9) == 2
        ages = decoder.statistics().tick_ages
        assert set(ages) == {"AMD.US", "9988.HK"}
        assert 5.0 <= ages["9988.HK"] < 1000.0  # received 5 s ago (its book)
        assert 5.0 <= ages["AMD.US"] < 1000.0  # the book 5 s ago is newer than the trade 1000 s ago


class TestWhatIsNotDelivered:
    def test_ghost_pushes_are_dropped_and_counted(self, world: World) -> None:
        """Pushes for a code nobody holds (the simulator's ``ghost`` fault) reach no strategy."""
        decoder = world.decoder()
        decoder.set_routes({"META.US": ("a", "b")}, {})
        frames = [trade("USDJPY", seq) for seq in range(1, 8)] + [trade("META.US", 1)]
        assert decoder.decode(CONN, 1, frames, 0) == 2  # META.US, to a and to b
        stats = decoder.statistics()
        assert (stats.ticks, stats.ghosts, stats.duplicates, stats.delivered) == (8, 7, 0, 2)
        wait_for(lambda: world.seen("b", "META.US") == [1], 10, what="META.US at b")
        assert "USDJPY" not in world.collected("a")["seen"]
        assert "USDJPY" not in world.collected("b")["seen"]

    def test_malformed_frames_are_counted_and_the_rest_of_the_batch_is_delivered(self, world: World) -> None:
        code = "MSFT.US"
        malformed = sorted(FRAMES.glob("malformed_*.json"))
        assert len(malformed) == 6
        decoder = world.decoder()
        decoder.set_routes({code: ("a",)}, {})
        frames = [trade(code, 1), *(f.read_bytes().strip() for f in malformed[:3]), trade(code, 2)]
        frames += [*(f.read_bytes().strip() for f in malformed[3:]), trade(code, 3)]
        assert decoder.decode(CONN, 1, frames, 0) == 3
        stats = decoder.statistics()
        assert (stats.frames, stats.malformed, stats.ticks, stats.delivered) == (9, 6, 3, 3)
        wait_for(lambda: world.seen("a", code) == [1, 2, 3], 10, what=f"{code} 1, 2, 3 in order")

    def test_trades_in_the_other_forms_are_decoded_alike_batch_after_batch(self, world: World) -> None:
        """A batch with a numeric-string seq or a tick_time in seconds (the vendor's example) is decoded
        the general way, and the next batches skip the usual form for a while: every tick arrives.
        """
        code = "NFLX.US"
        decoder = world.decoder()
        decoder.set_routes({code: ("a",)}, {})
        batches = [
            [trade(code, 1)],
            [push("push_trade_int_seq_ms", code=code, seq="2"), trade(code, 3)],
            [trade(code, 4)],
            [push("push_trade_int_seq_ms", code=code, seq=5, tick_time=1732550401)],  # seconds
            [push("push_trade_int_seq_ms", code=code, seq=seq, tick_time=1732550401500) for seq in (6, 7)],
        ]
        for frames in batches:
            assert decoder.decode(CONN, 1, frames, 0) == len(frames)
        wait_for(lambda: world.seen("a", code) == [1, 2, 3, 4, 5, 6, 7], 10, what=f"{code} 1-7 in order")
        stats = decoder.statistics()
        assert (stats.malformed, stats.anomalies) == (0, {})  # nothing odd: time only went forward

    def test_responses_go_to_the_registry_and_the_ticks_to_the_strategies(self, world: World) -> None:
        code = "GOOGL.US"
        decoder = world.decoder()
        decoder.set_routes({code: ("a",)}, {})
        frames = [recorded("response_ack_heartbeat_22001"), recorded("response_error_606_unsolicited")]
        frames.append(trade(code, 1))
        assert decoder.decode(CONN, 0, frames, 0) == 1  # epoch 0: the registry's current one for stock-0

        def vendor_errors() -> list[str]:
            return ray.get(world.registry.status.remote(), timeout=30 * S).vendor_errors

        errors = wait_for(vendor_errors, 10, what="the 606 at the registry")
        assert len(errors) == 1, errors
        assert errors[0].startswith(f"{CONN}: 606 "), errors
        assert (decoder.statistics().malformed, decoder.statistics().ghosts) == (0, 0)


class TestSlowStrategies:
    def test_beyond_the_window_a_strategy_that_takes_no_deliveries_gets_one_joined_batch(
        self, world: World, tmp_path: Path
    ) -> None:
        """With ``max_pending`` batches not taken by a strategy, the next batches wait joined as one:
        once it takes deliveries again it gets every tick, in order, none missed.
        """
        code = "AMD.US"
        decoder = world.decoder(max_pending=2)
        decoder.set_routes({code: ("slow",)}, {})

        def batch(k: int) -> list[bytes]:
            return [trade(code, 3 * k + i) for i in (1, 2, 3)]

        assert decoder.decode(CONN, 1, batch(0), 0) == 3  # the channel open before the strategy stops
        wait_for(lambda: len(world.seen("slow", code)) == 3, 10, what="the first batch at slow")
        with frozen(world.strategies["slow"], tmp_path, "the slow strategy") as release:
            assert [decoder.decode(CONN, 1, batch(k), 0) for k in range(1, 6)] == [3] * 5
            stats = decoder.statistics()
            assert (stats.pending["slow"], stats.pending_ticks["slow"]) == (3, 15)  # 2 written, 1 waiting
            assert stats.joined == {"slow": 2}
            assert stats.dropped_for_slow == {}
            release()
        wait_for(lambda: len(world.seen("slow", code)) == 18, 10, what="every tick at slow")
        assert world.seen("slow", code) == list(range(1, 19))
        assert world.collected("slow")["missed_reports"] == 0
        wait_for(lambda: decoder.statistics().pending_ticks["slow"] == 0, 10, what="all acknowledged")

    def test_a_strategy_that_takes_no_deliveries_loses_ticks_alone_and_is_told(
        self, world: World, tmp_path: Path
    ) -> None:
        """Beyond ``max_pending_ticks`` ticks not taken by a strategy, further ticks are dropped for it
        alone, counted, and the count travels with its next batch to ``on_missed``.
        """
        code = "NVDA.US"
        with frozen(world.strategies["slow"], tmp_path, "the slow strategy") as release:
            decoder = world.decoder(max_pending=2, max_pending_ticks=6)
            decoder.set_routes({code: ("a", "slow")}, {})

            def batch(k: int) -> list[bytes]:
                # a takes each batch before the next one comes: only the frozen strategy falls behind
                wait_for(lambda: not decoder.statistics().pending.get("a"), 10, what="a took its batches")
                return [trade(code, 3 * k + i) for i in (1, 2, 3)]

            # Batches 0 and 1 wait for the frozen strategy (6 ticks); 2 and 3 go to a alone.
            assert [decoder.decode(CONN, 1, batch(k), 0) for k in range(4)] == [6, 6, 3, 3]
            stats = decoder.statistics()
            assert stats.dropped_for_slow == {"slow": 6}
            assert stats.pending_ticks["slow"] == 6
            release()
            wait_for(lambda: decoder.statistics().pending["slow"] == 0, 10, what="slow took its batches")
            assert decoder.decode(CONN, 1, batch(4), 0) == 6  # to both again, carrying the count
            assert decoder.statistics().dropped_for_slow == {"slow": 6}
            wait_for(lambda: len(world.seen("slow", code)) == 9, 10, what="3 batches at slow")
        slow = world.collected("slow")
        assert slow["seen"][code] == [1, 2, 3, 4, 5, 6, 13, 14, 15]
        assert slow["missed_reports"] == 6
        assert ray.get(world.strategies["slow"].statistics.remote(), timeout=30 * S).missed == 6
        wait_for(lambda: len(world.seen("a", code)) == 15, 10, what="every batch at a")
        assert world.seen("a", code) == list(range(1, 16))
        assert world.collected("a")["missed_reports"] == 0


class TestTickCheck:
    """The per-tick check in the decoder's route loop (actors.core.tickcheck.TickCheck)."""

    def test_a_seq_reset_keeps_ticks_flowing_and_is_reported_once(self, world: World) -> None:
        """A restarted vendor (or simulator) counts seq from 1 again: the ticks are delivered, not
        dropped as duplicates until seq passes the old mark.
        """
        code = "ORCL.US"
        decoder = world.decoder()
        decoder.set_routes({code: ("a",)}, {})
        t0 = 1_732_550_400_000
        frames = [push("push_trade_int_seq_ms", code=code, seq=s, tick_time=t0 + s) for s in (500, 501)]
        frames += [
            push("push_trade_int_seq_ms", code=code, seq=s, tick_time=t0 + 1000 + s) for s in (1, 2, 3)
        ]
        assert decoder.decode(CONN, 1, frames, (t0 + 2000) * 1_000_000) == 5
        stats = decoder.statistics()
        assert stats.anomalies[code] == {"seq_reset": 1}
        assert stats.duplicates == 0
        problems = wait_for(
            lambda: [p for p in world.collected("a")["problems"] if p[0] == code],
            10,
            what="the reset reported",
        )
        assert len(problems) == 1, problems
        assert "seq restarted: seq 1 after 501" in problems[0][1], problems
        # A stale tick (lower seq, older tick_time) is dropped and counted, never delivered.
        old = push("push_trade_int_seq_ms", code=code, seq=2, tick_time=t0 + 1)
        assert decoder.decode(CONN, 1, [old], (t0 + 2000) * 1_000_000) == 0
        assert decoder.statistics().anomalies[code] == {"seq_reset": 1, "seq_backwards": 1}
        wait_for(
            lambda: world.seen("a", code)[-5:] == [500, 501, 1, 2, 3], 10, what=f"{code} after the reset"
        )

    def test_a_price_of_zero_or_below_is_not_delivered_and_reported_once(self, world: World) -> None:
        code = "IBM.US"
        decoder = world.decoder()
        decoder.set_routes({code: ("b",)}, {})
        frames = [
            push("push_trade_int_seq_ms", code=code, seq=1),
            push("push_trade_int_seq_ms", code=code, seq=2, price="0"),
        ]
        frames += [
            push("push_trade_int_seq_ms", code=code, seq=3, price="-1"),
            push("push_trade_int_seq_ms", code=code, seq=4),
        ]
        assert decoder.decode(CONN, 1, frames, 0) == 2
        assert decoder.statistics().anomalies[code] == {"price_not_positive": 2}
        wait_for(lambda: world.seen("b", code) == [1, 4], 10, what=f"{code} 1 and 4 only")
        problems = wait_for(
            lambda: [p for p in world.collected("b")["problems"] if p[0] == code],
            10,
            what="the corrupt price reported",
        )
        assert len(problems) == 1
        assert "price 0 is not positive" in problems[0][1]

    def test_deliver_corrupt_passes_them(self, world: World) -> None:
        code = "INTC.US"
        decoder = world.decoder(deliver_corrupt=True)
        decoder.set_routes({code: ("b",)}, {})
        assert (
            decoder.decode(CONN, 1, [push("push_trade_int_seq_ms", code=code, seq=1, price="-0.5")], 0) == 1
        )
        wait_for(lambda: world.seen("b", code) == [1], 10, what=f"{code} delivered")
        assert world.collected("b")["prices"][code] == "-0.5"
