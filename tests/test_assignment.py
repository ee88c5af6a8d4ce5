"""Tests of actors.core.assignment: which connection carries which code. Pure: no Ray, no sockets, no sleeps.

Plain pytest classes, one per topic (pyproject's ``python_classes`` collects ``*Tests``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.assignment import Assignment, assign
from actors.core.codes import Endpoint, endpoint_of
from actors.core.errors import InvalidCode

STOCK, FX = Endpoint.STOCK, Endpoint.FOREX_CRYPTO
# Sorted within each endpoint: S1 < S2 < ... and X1 < X2 < ...
S1, S2, S3, S4, S5, S6 = "1288.HK", "700.HK", "AAPL.US", "MSFT.US", "NVDA.US", "TSLA.US"
X1, X2, X3, X4 = "BTCUSDT", "ETHUSDT", "EURUSD", "XAUUSD"
STOCKS = [S1, S2, S3, S4, S5, S6, "600519.SH", "000627.SZ", "GOOGL.US", "9988.HK"]
FOREX = [X1, X2, X3, X4, "USDJPY", "USOIL", "GBPUSD", "AUDUSD"]


def fs(*codes: str) -> frozenset[str]:
    return frozenset(codes)


def check_invariants(
    result: Assignment,
    wanted: set[str],
    connections: Mapping[Endpoint, Sequence[str]],
    max_codes: int,
) -> None:
    """What must hold for any input: a partition of ``wanted``, limits, endpoints, no needless overflow."""
    conn_endpoint = {c: e for e, conns in connections.items() for c in conns}
    assert set(result.by_connection) == set(conn_endpoint), "every connection listed, no other"
    placed = [code for codes in result.by_connection.values() for code in codes]
    assert len(placed) == len(set(placed)), "a code on two connections"
    assert (set(placed) | result.unplaced) == wanted
    assert not (set(placed) & result.unplaced)
    for conn, codes in result.by_connection.items():
        assert len(codes) <= max_codes, conn
        for code in codes:
            assert endpoint_of(code) is conn_endpoint[conn], f"{code} on {conn}"
    for code in result.unplaced:
        conns = connections.get(endpoint_of(code), ())
        assert all(len(result.by_connection[c]) >= max_codes for c in conns), (
            f"{code} unplaced although a connection had room"
        )


class AssignmentTests:
    """PROTOCOL.md "Limits" and "Endpoints": codes per connection, stocks and forex/crypto apart."""

    def test_least_loaded_placement_exactly(self) -> None:
        result = assign([S4, S1, S3, S2, S5], {STOCK: ["s0", "s1", "s2"]}, 10)
        # Sorted codes, each to the least-loaded connection, ties to the first.
        assert result == Assignment({"s0": fs(S1, S4), "s1": fs(S2, S5), "s2": fs(S3)}, fs())

    def test_deterministic_whatever_the_input_order(self) -> None:
        wanted = [S1, S2, S3, S4, X1, X2, X3]
        connections = {STOCK: ["s0", "s1"], FX: ["f0"]}
        first = assign(wanted, connections, 3)
        assert assign(list(reversed(wanted)), connections, 3) == first
        assert assign(set(wanted), {FX: ["f0"], STOCK: ["s0", "s1"]}, 3) == first
        assert assign(iter(wanted + wanted), connections, 3) == first, "duplicates and a one-shot iterator"
        assert first == Assignment({"s0": fs(S1, S3), "s1": fs(S2, S4), "f0": fs(X1, X2, X3)}, fs())

    def test_sticky_adding_a_code_moves_nothing(self) -> None:
        connections = {STOCK: ["s0", "s1"]}
        before = assign([S1, S2, S3], connections, 5)
        assert before.by_connection == {"s0": fs(S1, S3), "s1": fs(S2)}
        after = assign([S1, S2, S3, "0001.HK"], connections, 5, before.by_connection)
        # "0001.HK" sorts first: without stickiness it would push every code along.
        assert after == Assignment({"s0": fs(S1, S3), "s1": fs(S2, "0001.HK")}, fs())

    def test_sticky_even_when_unbalanced(self) -> None:
        previous = {"s0": [S1, S2, S3, S4], "s1": []}
        result = assign([S1, S2, S3, S4, S5], {STOCK: ["s0", "s1"]}, 5, previous)
        assert result == Assignment({"s0": fs(S1, S2, S3, S4), "s1": fs(S5)}, fs())

    def test_removing_a_code_moves_nothing(self) -> None:
        previous = {"s0": fs(S1, S3), "s1": fs(S2, S4)}
        result = assign([S2, S3, S4], {STOCK: ["s0", "s1"]}, 5, previous)
        assert result == Assignment({"s0": fs(S3), "s1": fs(S2, S4)}, fs())

    def test_a_vanished_connection_gives_its_codes_to_the_others(self) -> None:
        previous = {"s0": fs(S1, S3), "s1": fs(S2, S4), "gone": fs(S5, S6)}
        result = assign([S1, S2, S3, S4, S5, S6], {STOCK: ["s0", "s1"]}, 5, previous)
        assert result == Assignment({"s0": fs(S1, S3, S5), "s1": fs(S2, S4, S6)}, fs())

    def test_max_codes_is_never_exceeded_and_overflow_is_unplaced(self) -> None:
        result = assign([S1, S2, S3, S4, S5], {STOCK: ["s0", "s1"]}, 2)
        assert result == Assignment({"s0": fs(S1, S3), "s1": fs(S2, S4)}, fs(S5))

    def test_a_previous_set_over_the_limit_is_cut(self) -> None:
        # The plan shrank: s0 keeps the first max_codes of its codes; the rest move or wait.
        previous = {"s0": [S1, S2, S3, S4, S5], "s1": [S6]}
        result = assign([S1, S2, S3, S4, S5, S6], {STOCK: ["s0", "s1"]}, 3, previous)
        assert result == Assignment({"s0": fs(S1, S2, S3), "s1": fs(S4, S5, S6)}, fs())
        result = assign([S1, S2, S3, S4, S5, S6], {STOCK: ["s0", "s1"]}, 2, previous)
        assert result == Assignment({"s0": fs(S1, S2), "s1": fs(S3, S6)}, fs(S4, S5))

    def test_a_code_listed_twice_in_previous_is_placed_once(self) -> None:
        result = assign([S1], {STOCK: ["s0", "s1"]}, 5, {"s0": [S1], "s1": [S1]})
        assert result == Assignment({"s0": fs(S1), "s1": fs()}, fs())

    def test_endpoints_are_kept_apart(self) -> None:
        result = assign([S1, X1, S2, X2], {STOCK: ["s0"], FX: ["f0", "f1"]}, 5)
        assert result == Assignment({"s0": fs(S1, S2), "f0": fs(X1), "f1": fs(X2)}, fs())

    def test_a_code_previously_on_the_wrong_endpoint_moves(self) -> None:
        result = assign([S1, X1], {STOCK: ["s0"], FX: ["f0"]}, 5, {"f0": [S1, X1]})
        assert result == Assignment({"s0": fs(S1), "f0": fs(X1)}, fs())

    def test_an_endpoint_without_connections_leaves_its_codes_unplaced(self) -> None:
        for connections in ({FX: ["f0"]}, {FX: ["f0"], STOCK: []}):
            result = assign([S1, S2, X1], connections, 5)
            assert result == Assignment({"f0": fs(X1)}, fs(S1, S2))
        assert assign([S1], {}, 5) == Assignment({}, fs(S1))

    def test_idle_connections_are_listed_with_nothing(self) -> None:
        assert assign([], {STOCK: ["s0"], FX: ["f0"]}, 5) == Assignment({"s0": fs(), "f0": fs()}, fs())

    def test_config_strings_work_as_endpoint_keys(self) -> None:
        # On purpose outside the declared Endpoint keys: plain config strings (a StrEnum equals them).
        config_keys = {"stock": ["s0"], "forex_crypto": ["f0"]}
        assert assign([S1, X1], config_keys, 5) == assign(  # type: ignore[arg-type]
            [S1, X1], {STOCK: ["s0"], FX: ["f0"]}, 5
        )

    def test_an_invalid_code_is_refused(self) -> None:
        with pytest.raises(InvalidCode):
            assign(["aapl.us"], {STOCK: ["s0"]}, 5)


CONNECTIONS = st.fixed_dictionaries(
    {
        STOCK: st.integers(0, 3).map(lambda n: [f"s{i}" for i in range(n)]),
        FX: st.integers(0, 3).map(lambda n: [f"f{i}" for i in range(n)]),
    }
)
WANTED = st.frozensets(st.sampled_from(STOCKS + FOREX))


class AssignmentPropertyTests:
    """Invariants over random codes, connections and limits."""

    @settings(max_examples=200, deadline=None)
    @given(wanted=WANTED, more=WANTED, connections=CONNECTIONS, max_codes=st.integers(1, 5))
    def test_invariants_and_stickiness(
        self,
        wanted: frozenset[str],
        more: frozenset[str],
        connections: dict[Endpoint, list[str]],
        max_codes: int,
    ) -> None:
        first = assign(wanted, connections, max_codes)
        check_invariants(first, set(wanted), connections, max_codes)
        assert assign(sorted(wanted, reverse=True), connections, max_codes) == first, "deterministic"
        # Without a previous assignment the load is balanced within each endpoint.
        for conns in connections.values():
            loads = [len(first.by_connection[c]) for c in conns]
            if loads:
                assert (max(loads) - min(loads)) <= 1, loads

        grown = assign(wanted | more, connections, max_codes, first.by_connection)
        check_invariants(grown, set(wanted | more), connections, max_codes)
        for conn, codes in first.by_connection.items():
            assert codes <= grown.by_connection[conn], f"adding codes moved some off {conn}"

        shrunk = assign(wanted - more, connections, max_codes, first.by_connection)
        check_invariants(shrunk, set(wanted - more), connections, max_codes)
        for conn, codes in first.by_connection.items():
            assert (codes - more) <= shrunk.by_connection[conn], f"removing codes moved some off {conn}"

    @settings(max_examples=200, deadline=None)
    @given(
        wanted=WANTED,
        connections=CONNECTIONS,
        max_codes=st.integers(1, 5),
        previous=st.dictionaries(
            st.sampled_from(["s0", "s1", "s2", "f0", "f1", "gone"]),
            st.frozensets(st.sampled_from(STOCKS + FOREX)),
            max_size=4,
        ),
    )
    def test_invariants_with_any_previous(
        self,
        wanted: frozenset[str],
        connections: dict[Endpoint, list[str]],
        max_codes: int,
        previous: dict[str, frozenset[str]],
    ) -> None:
        result = assign(wanted, connections, max_codes, previous)
        check_invariants(result, set(wanted), connections, max_codes)
        assert assign(sorted(wanted, reverse=True), connections, max_codes, previous) == result
