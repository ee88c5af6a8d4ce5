"""The Decoder shell (actors/decoder.py): dedupe, ghosts, malformed frames, per-strategy drops.

A Decoder instance is driven directly in the test process with raw frames in the vendor's form
(built from the recorded frames in tests/frames), so each ``decode`` call is synchronous and every
count is exact. What it talks to is real, on the session's Ray: a Registry actor (it forwards
responses there) and Collector strategies, named in a namespace of this module's own, which is where
the decoder looks its strategies up. No system, no socket: the decoder's own tests need neither.
"""

from __future__ import annotations

import contextlib
import itertools
import json
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
from tests.conftest import S, wait_for

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


class World:
    """The real actors a decoder talks to, in a namespace of their own."""

    def __init__(self) -> None:
        self.namespace = f"test-decoder-{uuid.uuid4().hex[:8]}"
        self.state_key = f"tickvisor-test/{self.namespace}/registry"
        self.registry = (
            ray.remote(Registry)
            .options(name=REGISTRY, namespace=self.namespace, num_cpus=0)
            .remote({"stock": [CONN]}, 3000, self.namespace, self.state_key)
        )
        self.strategies = {
            name: strategy_actor(Collector)
            .options(name=strategy_name(name), namespace=self.namespace, max_concurrency=64)
            .remote(name)
            for name in ("a", "b")
        }
        # Each test gets a decoder of its own, numbered apart: a strategy orders batches per decoder.
        self._ids = itertools.count()
        ray.get([s.statistics.remote() for s in self.strategies.values()], timeout=60 * S)
        ray.get(self.registry.status.remote(), timeout=60 * S)

    def decoder(self, max_pending: int = 64) -> Decoder:
        return Decoder(next(self._ids), self.registry, self.namespace, max_pending)

    def collected(self, name: str) -> dict[str, Any]:
        return ray.get(self.strategies[name].collected.remote(), timeout=30 * S)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            ray.get(self.registry.clear_state.remote(), timeout=10 * S)
        for handle in [self.registry, *self.strategies.values()]:
            ray.kill(handle, no_restart=True)


@pytest.fixture(scope="module")
def world(ray_session: None) -> Iterator[World]:  # noqa: ARG001 - needs Ray up first
    w = World()
    yield w
    w.close()


class TestDedupe:
    @pytest.mark.parametrize("kind", ["trades", "book"])
    def test_a_code_that_loses_its_last_holder_starts_afresh(self, world: World, kind: str) -> None:
        """The dedupe mark of a code goes with its last holder, for trades and order books alike: when
        the code is held again, the vendor's pushes are delivered from whatever seq it sends."""
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
