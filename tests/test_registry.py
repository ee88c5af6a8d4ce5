"""The Registry shell (actors/registry.py): validation, refcounts, routes, and its state across a SIGKILL.

A real Registry actor on the session's Ray, in a namespace of this module's own, configured for one
stock connection of 5 codes (the free plan) and no forex/crypto endpoint. No connection actor exists,
so it sends no request to any server: these tests are about what it accepts, counts and keeps. How it
talks to the server (full sets, 429, 600, 603, order books) is tested in test_system.py against the
simulator.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from actors.core.errors import QuotaExhausted, SubscriptionRefused
from actors.core.naming import REGISTRY, decoder_name
from actors.decoder import Decoder
from actors.registry import Registry
from tests.conftest import S, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

MAX_CODES = 5  # per connection; one stock connection, as the free plan allows


class Handle:
    """The module's registry actor, restarted by Ray when killed, and a decoder that takes its routes."""

    def __init__(self) -> None:
        self.namespace = f"test-registry-{uuid.uuid4().hex[:8]}"
        self.state_key = f"tickvisor-test/{self.namespace}/registry"
        self.actor: Any = (  # a handle: Ray types it as the class, whose methods lack .remote
            ray.remote(Registry)
            .options(name=REGISTRY, namespace=self.namespace, num_cpus=0, max_restarts=-1, max_task_retries=3)
            .remote({"stock": ["stock-0"]}, MAX_CODES, self.namespace, self.state_key, plan="free")
        )
        self.decoder: Any = (  # a handle: Ray types it as the class, whose methods lack .remote
            ray.remote(Decoder)
            .options(name=decoder_name(0), namespace=self.namespace, num_cpus=0)
            .remote(0, self.actor, self.namespace)
        )

    def get(self, ref: Any, timeout: float = 30.0) -> Any:
        return ray.get(ref, timeout=timeout * S)

    def call(self, method: str, *args: Any) -> Any:
        return self.get(getattr(self.actor, method).remote(*args))

    def refused(self, method: str, *args: Any) -> SubscriptionRefused:
        """The refusal of a call that must be refused (it arrives as RayTaskError(SubscriptionRefused))."""
        with pytest.raises(SubscriptionRefused) as caught:
            self.call(method, *args)
        return caught.value

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("clear_state")
        for actor in (self.decoder, self.actor):
            ray.kill(actor, no_restart=True)


@pytest.fixture(scope="module")
def registry() -> Iterator[Handle]:
    handle = Handle()
    yield handle
    handle.close()


@pytest.fixture
def strategies(registry: Handle) -> Iterator[list[str]]:
    """Fresh strategy names for one test; what they hold is released after it."""
    names = [f"s{uuid.uuid4().hex[:6]}" for _ in range(2)]
    yield names
    for name in names:
        registry.call("drop_strategy", name)


class TestRefusals:
    """Every refusal is all-or-nothing and names each bad code with a reason."""

    def test_empty_lists_are_refused(self, registry: Handle, strategies: list[str]) -> None:
        a = strategies[0]
        assert "empty" in str(registry.refused("subscribe", a, []))
        registry.call("subscribe", a, ["AAPL.US"])
        assert "empty" in str(registry.refused("unsubscribe", a, []))
        assert registry.call("holdings_of", a) == {"AAPL.US": 1}

    def test_invalid_codes_are_refused_with_hints_and_nothing_changes(
        self, registry: Handle, strategies: list[str]
    ) -> None:
        a = strategies[0]
        registry.call("subscribe", a, ["AAPL.US"])
        exc = registry.refused("subscribe", a, ["NASDAQ:TSLA", "HKEX:0700", "BTC/USDT", "", "TSLA.US"])
        assert set(exc.problems) == {"NASDAQ:TSLA", "HKEX:0700", "BTC/USDT", ""}  # TSLA.US: fine, not taken
        assert "did you mean 'TSLA.US'?" in exc.problems["NASDAQ:TSLA"]
        assert "did you mean 'BTCUSDT'?" in exc.problems["BTC/USDT"]
        assert "did you mean '700.HK'?" in exc.problems["HKEX:0700"]
        assert "empty code" in exc.problems[""]
        assert registry.call("holdings_of", a) == {"AAPL.US": 1}

    def test_a_code_whose_endpoint_is_not_configured_is_refused(
        self, registry: Handle, strategies: list[str]
    ) -> None:
        exc = registry.refused("subscribe", strategies[0], ["EURUSD", "AAPL.US"])
        assert exc.problems == {"EURUSD": "its endpoint 'forex_crypto' is not configured in [endpoints]"}
        assert registry.call("holdings_of", strategies[0]) == {}

    def test_codes_beyond_the_plan_are_refused_for_no_room(
        self, registry: Handle, strategies: list[str]
    ) -> None:
        a, b = strategies
        held = set(registry.call("status").union)
        fill = [c for c in ("S0001.US", "S0002.US", "S0003.US", "S0004.US", "S0005.US") if c not in held]
        registry.call("subscribe", a, fill[: MAX_CODES - len(held)])
        assert len(registry.call("status").union) == MAX_CODES
        exc = registry.refused("subscribe", b, ["S0008.US", "S0009.US"])
        no_room = (
            "quota exhausted: plan 'free' allows 1 connection(s) per token x 5 codes on the stock endpoint; "
            "1 live token(s) give 1 connection(s), 5 codes, all taken; "
            "unsubscribe others, add a token to feed.token_envs or raise the plan"
        )
        assert exc.problems == {"S0008.US": no_room, "S0009.US": no_room}
        assert isinstance(exc, QuotaExhausted)
        assert (exc.plan, exc.connections_per_token, exc.codes_per_connection, exc.tokens) == (
            "free",
            1,
            5,
            1,
        )
        assert registry.call("holdings_of", b) == {}
        # A code already carried takes no room: another strategy may hold it too.
        carried = fill[0] if fill else min(held)
        assert registry.call("subscribe", b, [carried]) == {carried: 1}

    def test_unsubscribe_of_an_unheld_code_is_refused(self, registry: Handle, strategies: list[str]) -> None:
        a, b = strategies
        registry.call("subscribe", a, ["AAPL.US"])
        exc = registry.refused("unsubscribe", b, ["AAPL.US"])
        assert exc.problems == {"AAPL.US": f"strategy {b!r} holds it 0 time(s), cannot drop 1"}
        exc = registry.refused("unsubscribe", a, ["AAPL.US", "AAPL.US"])
        assert "holds it 1 time(s), cannot drop 2" in exc.problems["AAPL.US"]
        assert registry.call("holdings_of", a) == {"AAPL.US": 1}

    def test_a_kind_other_than_trades_or_book_is_refused(
        self, registry: Handle, strategies: list[str]
    ) -> None:
        exc = registry.refused("subscribe", strategies[0], ["AAPL.US"], "ticks")
        assert exc.problems == {"kind": "'ticks' is not 'trades' or 'book'"}


class TestRefcounts:
    def test_refcounts_across_two_strategies_and_two_kinds(
        self, registry: Handle, strategies: list[str]
    ) -> None:
        a, b = strategies

        def held() -> tuple[dict[str, int], dict[str, int], set[str], set[str]]:
            status = registry.call("status")
            return (
                registry.call("holdings_of", a),
                registry.call("holdings_of", b),
                {"AAPL.US", "TSLA.US"} & set(status.union),
                {"AAPL.US", "TSLA.US"} & set(status.book_union),
            )

        assert registry.call("subscribe", a, ["AAPL.US", "TSLA.US"]) == {"AAPL.US": 1, "TSLA.US": 1}
        assert registry.call("subscribe", a, ["AAPL.US"]) == {"AAPL.US": 2, "TSLA.US": 1}
        assert registry.call("subscribe", b, ["AAPL.US"]) == {"AAPL.US": 1}
        assert registry.call("subscribe", b, ["AAPL.US"], "book") == {"AAPL.US": 1}  # a kind of its own
        assert held() == ({"AAPL.US": 2, "TSLA.US": 1}, {"AAPL.US": 1}, {"AAPL.US", "TSLA.US"}, {"AAPL.US"})
        assert registry.call("unsubscribe", a, ["AAPL.US", "TSLA.US"]) == {"AAPL.US": 1}
        assert held() == ({"AAPL.US": 1}, {"AAPL.US": 1}, {"AAPL.US"}, {"AAPL.US"})
        assert registry.call("unsubscribe", a, ["AAPL.US"]) == {}
        assert held() == ({}, {"AAPL.US": 1}, {"AAPL.US"}, {"AAPL.US"})  # b still holds it: still carried
        assert registry.call("unsubscribe", b, ["AAPL.US"]) == {}
        assert held() == ({}, {}, set(), {"AAPL.US"})  # the order book is held apart from the trades
        assert registry.call("holdings_of", b, "book") == {"AAPL.US": 1}

    def test_the_decoders_get_the_routes_of_every_held_code(
        self, registry: Handle, strategies: list[str]
    ) -> None:
        a, b = strategies
        registry.call("subscribe", a, ["AAPL.US", "TSLA.US"])
        registry.call("subscribe", b, ["TSLA.US"])

        def routes() -> int:
            return registry.get(registry.decoder.statistics.remote()).routes

        union = registry.call("status").union
        assert {"AAPL.US", "TSLA.US"} <= set(union)
        wait_for(lambda: routes() == len(union), 10, what=f"the decoder routing {len(union)} codes")
        registry.call("drop_strategy", a)
        wait_for(lambda: routes() == len(union) - 1, 10, what="AAPL.US no longer routed")


class TestPersistence:
    def test_holdings_survive_a_sigkill_of_the_registry_actor(
        self, registry: Handle, strategies: list[str]
    ) -> None:
        """Saved after every change: Ray's restart of a killed registry reads every refcount back."""
        a, b = strategies
        registry.call("subscribe", a, ["AAPL.US", "AAPL.US", "TSLA.US"])
        registry.call("subscribe", b, ["TSLA.US"])
        registry.call("subscribe", b, ["700.HK"], "book")
        before = registry.call("status")
        os.kill(before.pid, signal.SIGKILL)

        def restarted() -> Any:
            status = registry.call("status")
            return status if status.pid != before.pid else None

        after = wait_for(restarted, 30, what="the registry restarted by Ray")
        assert (after.strategies, after.book_strategies) == (before.strategies, before.book_strategies)
        assert (after.union, after.book_union) == (before.union, before.book_union)
        assert registry.call("holdings_of", a) == {"AAPL.US": 2, "TSLA.US": 1}
        # The restarted registry goes on counting from there.
        assert registry.call("unsubscribe", a, ["AAPL.US"]) == {"AAPL.US": 1, "TSLA.US": 1}
