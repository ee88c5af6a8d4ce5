"""Tests of actors.core.holdings: who holds which code, per-strategy refcounts.

Pure: no Ray, no sockets, no sleeps.

Plain pytest classes, one per topic (pyproject's ``python_classes`` collects ``*Tests``).
"""

from __future__ import annotations

import pickle
from collections import Counter
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.errors import SubscriptionRefused
from actors.core.holdings import Holdings

A, B, C, D = "AAPL.US", "BTCUSDT", "700.HK", "EURUSD"


def state(h: Holdings) -> dict[str, Any]:
    """The whole observable state."""
    return {
        "snapshot": h.snapshot(),
        "union": sorted(h.union()),
        "routes": h.routes(),
        "strategies": h.strategies(),
    }


def held(**strategies: dict[str, int]) -> Holdings:
    h = Holdings()
    for name, counts in strategies.items():
        h.subscribe(name, [code for code, n in counts.items() for _ in range(n)])
    return h


class HoldingsTests:
    """Per-strategy refcounts; the feed carries the union, once."""

    def test_empty(self) -> None:
        assert state(Holdings()) == {"snapshot": {}, "union": [], "routes": {}, "strategies": []}
        assert Holdings().holders(A) == frozenset()
        assert Holdings().codes_of("s1") == {}

    def test_subscribe_returns_only_codes_nobody_held(self) -> None:
        h = Holdings()
        assert h.subscribe("s1", [A, B]) == {A, B}
        assert h.subscribe("s1", [A]) == frozenset()
        assert h.subscribe("s2", [B, C]) == {C}
        assert h.subscribe("s2", [D, D]) == {D}, "a duplicate in one call is new once"
        assert state(h) == {
            "snapshot": {"s1": {A: 2, B: 1}, "s2": {B: 1, C: 1, D: 2}},
            "union": sorted({A, B, C, D}),
            "routes": {A: ("s1",), B: ("s1", "s2"), C: ("s2",), D: ("s2",)},
            "strategies": ["s1", "s2"],
        }

    def test_subscribing_twice_needs_two_unsubscribes(self) -> None:
        h = Holdings()
        h.subscribe("s1", [A])
        h.subscribe("s1", [A])
        assert h.codes_of("s1") == {A: 2}
        assert h.unsubscribe("s1", [A]) == frozenset(), "still held once"
        assert state(h) == {
            "snapshot": {"s1": {A: 1}},
            "union": [A],
            "routes": {A: ("s1",)},
            "strategies": ["s1"],
        }
        assert h.unsubscribe("s1", [A]) == {A}
        assert state(h) == state(Holdings())

    def test_one_call_can_drop_several_references(self) -> None:
        h = held(s1={A: 3, B: 1})
        assert h.unsubscribe("s1", [A, A, B]) == {B}
        assert h.snapshot() == {"s1": {A: 1}}

    def test_union_is_every_code_any_strategy_holds_once(self) -> None:
        h = held(s1={A: 2, B: 1}, s2={B: 5, C: 1})
        assert h.union() == {A, B, C}
        assert h.unsubscribe("s2", [B] * 5) == frozenset(), "s1 still holds B"
        assert h.union() == {A, B, C}
        assert h.unsubscribe("s1", [B]) == {B}
        assert h.union() == {A, C}

    def test_holders_and_routes(self) -> None:
        h = held(zeta={A: 1}, alpha={A: 2, B: 1}, mid={B: 1})
        assert h.holders(A) == {"zeta", "alpha"}
        assert h.holders(B) == {"alpha", "mid"}
        assert h.holders(C) == frozenset()
        assert h.routes() == {A: ("alpha", "zeta"), B: ("alpha", "mid")}, "strategies sorted"
        assert h.strategies() == ["alpha", "mid", "zeta"]

    def test_unsubscribe_of_an_unheld_code_refuses_the_whole_call(self) -> None:
        h = held(s1={A: 1, B: 1}, s2={C: 1})
        before = state(h)
        cases = {
            "a code nobody holds": ("s1", [A, D], {D}),
            "another strategy's code": ("s1", [A, C], {C}),
            "more references than held": ("s1", [A, A, B], {A}),
            "an unknown strategy": ("ghost", [A], {A}),
            "two bad codes": ("s2", [C, A, B], {A, B}),
        }
        for strategy, codes, bad in cases.values():
            with pytest.raises(SubscriptionRefused) as caught:
                h.unsubscribe(strategy, codes)
            assert caught.value.problems.keys() == bad
            for code in bad:
                assert repr(code) in str(caught.value)
            assert "nothing changed" in str(caught.value)
            assert state(h) == before, "all or nothing"
        assert "holds it 1 time(s), cannot drop 2" in str(caught_for(h, "s1", [A, A]))

    def test_the_refusal_survives_pickling(self) -> None:
        # Ray ships exceptions by pickle: the problems must arrive intact.
        error = caught_for(held(s1={A: 1}), "s1", [B])
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
        assert copy.problems == error.problems

    def test_a_bare_string_is_refused(self) -> None:
        h = held(s1={A: 1})
        with pytest.raises(TypeError):
            h.subscribe("s1", A)
        with pytest.raises(TypeError):
            h.unsubscribe("s1", A)
        assert h.snapshot() == {"s1": {A: 1}}

    def test_empty_calls_change_nothing(self) -> None:
        h = held(s1={A: 1})
        assert h.subscribe("s2", []) == frozenset()
        assert h.unsubscribe("s3", []) == frozenset()
        assert state(h) == {
            "snapshot": {"s1": {A: 1}},
            "union": [A],
            "routes": {A: ("s1",)},
            "strategies": ["s1"],
        }, "no empty entry for s2 or s3"

    def test_drop_strategy(self) -> None:
        h = held(s1={A: 2, B: 1}, s2={B: 1, C: 3})
        assert h.drop_strategy("s1") == {A}, "B is still held by s2"
        assert state(h) == {
            "snapshot": {"s2": {B: 1, C: 3}},
            "union": [C, B],
            "routes": {B: ("s2",), C: ("s2",)},
            "strategies": ["s2"],
        }
        assert h.drop_strategy("s1") == frozenset(), "dropping twice is harmless"
        assert h.drop_strategy("s2") == {B, C}
        assert state(h) == state(Holdings())

    def test_drop_code_returns_its_holders(self) -> None:
        h = held(s1={A: 2, B: 1}, s2={B: 4}, s3={C: 1})
        assert h.drop_code(B) == {"s1", "s2"}
        assert state(h) == {
            "snapshot": {"s1": {A: 2}, "s3": {C: 1}},
            "union": [C, A],
            "routes": {A: ("s1",), C: ("s3",)},
            "strategies": ["s1", "s3"],
        }, "s2 held only B: gone"
        assert h.drop_code(B) == frozenset()
        assert h.drop_code(D) == frozenset()

    def test_snapshot_round_trip(self) -> None:
        h = held(s1={A: 2, B: 1}, s2={B: 1, C: 3})
        snapshot = h.snapshot()
        assert snapshot == {"s1": {A: 2, B: 1}, "s2": {B: 1, C: 3}}
        assert state(Holdings.from_snapshot(snapshot)) == state(h)
        wire = msgspec.json.encode(snapshot)
        back = msgspec.json.decode(wire, type=dict[str, dict[str, int]])
        assert state(Holdings.from_snapshot(back)) == state(h)
        assert state(Holdings.from_snapshot(msgspec.json.decode(wire))) == state(h)

    def test_snapshot_is_a_copy(self) -> None:
        h = held(s1={A: 1})
        snapshot = h.snapshot()
        snapshot["s1"][A] = 99
        snapshot["s2"] = {B: 1}
        codes = h.codes_of("s1")
        codes[A] = 7
        assert h.snapshot() == {"s1": {A: 1}}

    def test_from_snapshot_skips_empty_counts(self) -> None:
        h = Holdings.from_snapshot({"s1": {A: 0, B: 1}, "s2": {}, "s3": {C: -1}})
        assert state(h) == {
            "snapshot": {"s1": {B: 1}},
            "union": [B],
            "routes": {B: ("s1",)},
            "strategies": ["s1"],
        }


def caught_for(h: Holdings, strategy: str, codes: list[str]) -> SubscriptionRefused:
    try:
        h.unsubscribe(strategy, codes)
    except SubscriptionRefused as exc:
        return exc
    raise AssertionError("unsubscribe did not refuse")


STRATEGIES = ["s1", "s2", "s3"]
CODES = [A, B, C, D]
OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("subscribe"), st.sampled_from(STRATEGIES), st.lists(st.sampled_from(CODES), max_size=4)
        ),
        st.tuples(
            st.just("unsubscribe"), st.sampled_from(STRATEGIES), st.lists(st.sampled_from(CODES), max_size=4)
        ),
        st.tuples(st.just("drop_strategy"), st.sampled_from(STRATEGIES), st.just([])),
        st.tuples(
            st.just("drop_code"), st.just(""), st.lists(st.sampled_from(CODES), min_size=1, max_size=1)
        ),
    ),
    max_size=40,
)


class HoldingsPropertyTests:
    """A model of plain Counters agrees with Holdings after any sequence of calls."""

    @settings(max_examples=200, deadline=None)
    @given(OPS)
    def test_matches_a_model_of_counters(self, ops: list[tuple[str, str, list[str]]]) -> None:
        h = Holdings()
        model: dict[str, Counter[str]] = {s: Counter() for s in STRATEGIES}

        def union() -> set[str]:
            return {code for counts in model.values() for code, n in counts.items() if n > 0}

        for op, strategy, codes in ops:
            before = union()
            if op == "subscribe":
                result = h.subscribe(strategy, codes)
                model[strategy].update(codes)
                assert result == (union() - before)
            elif op == "unsubscribe":
                wanted = Counter(codes)
                short = {c for c, n in wanted.items() if model[strategy][c] < n}
                if short:
                    snapshot = h.snapshot()
                    with pytest.raises(SubscriptionRefused) as caught:
                        h.unsubscribe(strategy, codes)
                    assert caught.value.problems.keys() == short
                    assert h.snapshot() == snapshot
                    continue
                result = h.unsubscribe(strategy, codes)
                model[strategy].subtract(wanted)
                assert result == (before - union())
            elif op == "drop_strategy":
                result = h.drop_strategy(strategy)
                model[strategy].clear()
                assert result == (before - union())
            else:
                (code,) = codes
                holders = {s for s, counts in model.items() if counts[code] > 0}
                assert h.drop_code(code) == holders
                for counts in model.values():
                    counts.pop(code, None)
            expected = {s: {c: n for c, n in counts.items() if n > 0} for s, counts in model.items()}
            expected = {s: counts for s, counts in expected.items() if counts}
            assert h.snapshot() == expected
            assert h.union() == union()
            assert h.strategies() == sorted(expected)
            assert h.routes() == {c: tuple(sorted(s for s in expected if c in expected[s])) for c in union()}
            assert state(
                Holdings.from_snapshot(msgspec.json.decode(msgspec.json.encode(h.snapshot())))
            ) == state(h)
