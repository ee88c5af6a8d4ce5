"""Tests of actors.core.growth (connections that follow the subscriptions) and of the pacing the
registry keeps with actors.core.subscriptions. Pure: no Ray, no sockets, no sleeps.

Plain pytest classes, one per topic (pyproject's ``python_classes`` collects ``*Tests``).
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core import wire
from actors.core.codes import Endpoint, endpoint_of
from actors.core.growth import Fit, Pool, PoolState, Quota, Slot, startup_lower_bound_s
from actors.core.subscriptions import Kind, RateGate, SubscriptionBook

STOCK, FX = Endpoint.STOCK, Endpoint.FOREX_CRYPTO
STOCKS = [f"S{i:03d}.US" for i in range(40)]
FOREX = [f"X{i:02d}USD" for i in range(20)]
T1, T2 = "ALLTICK_TOKEN", "ALLTICK_TOKEN_2"


def quota(conns: int = 3, codes: int = 2, tokens: tuple[str, ...] = (T1,), plan: str = "premium") -> Quota:
    return Quota(plan, conns, codes, tokens)


def pinned(pool: Pool, *endpoints: Endpoint) -> None:
    for i, endpoint in enumerate(endpoints):
        pool.add(Slot(f"{endpoint.value}-0", endpoint, pool.quota.tokens[0], i, pinned=True))


def fs(*codes: str) -> frozenset[str]:
    return frozenset(codes)


class GrowthTests:
    """A subscribe beyond the start-up sizing opens connections while the plan allows."""

    def test_codes_fill_the_room_before_a_connection_opens(self) -> None:
        pool = Pool(quota())
        pinned(pool, STOCK)
        fit = pool.fit({"trades": STOCKS[:2]}, endpoints=[STOCK])
        assert fit == Fit({"trades": {"stock-0": fs(*STOCKS[:2])}}, (), {})
        fit = pool.fit({"trades": STOCKS[:3]}, fit.by_kind, endpoints=[STOCK])
        assert fit.opened == (Slot("stock-1", STOCK, T1, 1),)
        assert fit.by_kind["trades"] == {"stock-0": fs(*STOCKS[:2]), "stock-1": fs(STOCKS[2])}
        assert pool.slots.keys() == {"stock-0"}, "fit changes nothing"
        pool.commit(fit, 0.0)
        assert pool.slots.keys() == {"stock-0", "stock-1"}

    def test_the_quota_refuses_what_does_not_fit_naming_plan_and_limits(self) -> None:
        pool = Pool(quota(conns=2, codes=2))
        pinned(pool, STOCK)
        fit = pool.fit({"trades": STOCKS[:5]}, endpoints=[STOCK])
        assert len(fit.opened) == 1
        assert set(fit.refused) == {STOCKS[4]}
        why = fit.refused[STOCKS[4]]
        assert "quota exhausted: plan 'premium' allows 2 connection(s) per token x 2 codes" in why
        assert "on the stock endpoint" in why
        assert "1 live token(s) give 2 connection(s), 4 codes" in why

    def test_kinds_count_apart_and_the_larger_need_decides(self) -> None:
        pool = Pool(quota(codes=2))
        pinned(pool, STOCK)
        fit = pool.fit({"trades": STOCKS[:2], "book": STOCKS[:4]}, endpoints=[STOCK])
        assert [s.conn_id for s in fit.opened] == ["stock-1"]
        # New codes go to the least-loaded connection (actors.core.assignment): spread, never beyond 2.
        assert fit.by_kind["trades"] == {"stock-0": fs(STOCKS[0]), "stock-1": fs(STOCKS[1])}
        assert fit.refused == {}

    def test_endpoints_have_their_own_quota(self) -> None:
        pool = Pool(quota(conns=1, codes=2))
        pinned(pool, STOCK, FX)
        fit = pool.fit({"trades": STOCKS[:2] + FOREX[:3]}, endpoints=[STOCK, FX])
        assert fit.opened == ()
        assert set(fit.refused) == {FOREX[2]}
        assert "forex_crypto endpoint" in fit.refused[FOREX[2]]

    def test_a_code_of_an_unconfigured_endpoint_is_refused(self) -> None:
        pool = Pool(quota())
        pinned(pool, STOCK)
        fit = pool.fit({"trades": [FOREX[0]]}, endpoints=[STOCK])
        assert fit.refused == {FOREX[0]: "its endpoint 'forex_crypto' is not configured"}

    def test_ids_are_never_reused(self) -> None:
        pool = Pool(quota(codes=1), close_after_s=5.0)
        pinned(pool, STOCK)
        fit = pool.fit({"trades": STOCKS[:2]}, endpoints=[STOCK])
        pool.commit(fit, 0.0)
        pool.commit(pool.fit({"trades": STOCKS[:1]}, fit.by_kind, endpoints=[STOCK]), 1.0)
        assert [s.conn_id for s in pool.to_close(6.0)] == ["stock-1"]
        again = pool.fit({"trades": STOCKS[:2]}, endpoints=[STOCK])
        assert again.opened == (Slot("stock-2", STOCK, T1, 2),)


class ShrinkTests:
    """A connection that held nothing for the grace period is closed; pinned ones never."""

    def test_grace_period_and_next_wakeup(self) -> None:
        pool = Pool(quota(codes=1), close_after_s=30.0)
        pinned(pool, STOCK)
        grown = pool.fit({"trades": STOCKS[:2]}, endpoints=[STOCK])
        pool.commit(grown, 0.0)
        assert pool.next_wakeup() is None
        shrunk = pool.fit({"trades": STOCKS[1:2]}, grown.by_kind, endpoints=[STOCK])
        assert shrunk.by_kind["trades"] == {"stock-0": fs(), "stock-1": fs(STOCKS[1])}, "nothing moved"
        pool.commit(shrunk, 10.0)
        assert pool.next_wakeup() is None, "the pinned connection is never closed"
        pool.commit(pool.fit({"trades": []}, shrunk.by_kind, endpoints=[STOCK]), 20.0)
        assert pool.next_wakeup() == 50.0
        assert pool.to_close(49.9) == []
        pool.commit(pool.fit({"trades": []}, endpoints=[STOCK]), 45.0)  # still empty: the clock is not reset
        assert [s.conn_id for s in pool.to_close(50.0)] == ["stock-1"]
        assert pool.slots.keys() == {"stock-0"}
        assert pool.next_wakeup() is None

    def test_a_code_coming_back_within_the_grace_keeps_the_connection(self) -> None:
        pool = Pool(quota(codes=1), close_after_s=30.0)
        pinned(pool, STOCK)
        grown = pool.fit({"trades": STOCKS[:2]}, endpoints=[STOCK])
        pool.commit(grown, 0.0)
        pool.commit(pool.fit({"trades": STOCKS[:1]}, grown.by_kind, endpoints=[STOCK]), 1.0)
        pool.commit(pool.fit({"trades": STOCKS[:2]}, grown.by_kind, endpoints=[STOCK]), 2.0)
        assert pool.next_wakeup() is None
        assert pool.to_close(100.0) == []


class TokenTests:
    """Several tokens: quotas add up, each connection belongs to one token, a 401 takes one out."""

    def test_quotas_add_up_and_new_connections_alternate_tokens(self) -> None:
        pool = Pool(quota(conns=2, codes=1, tokens=(T1, T2)))
        pinned(pool, STOCK)
        fit = pool.fit({"trades": STOCKS[:4]}, endpoints=[STOCK])
        assert [(s.conn_id, s.token) for s in fit.opened] == [
            ("stock-1", T2),
            ("stock-2", T1),
            ("stock-3", T2),
        ]
        assert fit.refused == {}
        assert set(pool.fit({"trades": STOCKS[:5]}, endpoints=[STOCK]).refused) == {STOCKS[4]}

    def test_a_token_taken_out_moves_its_codes_to_the_room_left(self) -> None:
        pool = Pool(quota(conns=2, codes=2, tokens=(T1, T2)))
        pinned(pool, STOCK)
        fit = pool.fit({"trades": STOCKS[:4]}, endpoints=[STOCK])
        pool.commit(fit, 0.0)
        assert fit.by_kind["trades"] == {"stock-0": fs(*STOCKS[0:4:2]), "stock-1": fs(*STOCKS[1:4:2])}
        gone = pool.take_out(T2)
        assert [s.conn_id for s in gone] == ["stock-1"]
        assert pool.live_tokens == (T1,)
        after = pool.fit({"trades": STOCKS[:4]}, fit.by_kind, endpoints=[STOCK])
        assert [(s.conn_id, s.token) for s in after.opened] == [("stock-2", T1)]
        assert after.by_kind["trades"]["stock-0"] == fs(*STOCKS[0:4:2]), "stock-0's codes stay"
        assert after.by_kind["trades"]["stock-2"] == fs(*STOCKS[1:4:2])
        assert after.refused == {}
        full = pool.fit({"trades": STOCKS[:5]}, after.by_kind, endpoints=[STOCK])
        assert "1 of 2 token(s) taken out, 1 live token(s) give 2 connection(s)" in full.refused[STOCKS[4]]

    def test_snapshot_and_restore(self) -> None:
        pool = Pool(quota(conns=2, codes=1, tokens=(T1, T2)))
        pinned(pool, STOCK)
        pool.commit(pool.fit({"trades": STOCKS[:3]}, endpoints=[STOCK]), 0.0)
        pool.take_out(T2)
        state = pool.snapshot()
        import msgspec

        again = Pool.restore(pool.quota, msgspec.json.decode(msgspec.json.encode(state), type=PoolState))
        assert again.slots == pool.slots
        assert again.live_tokens == (T1,)
        assert again.fit({"trades": STOCKS[:2]}, endpoints=[STOCK]) == pool.fit(
            {"trades": STOCKS[:2]}, endpoints=[STOCK]
        )


class LowerBoundTests:
    def test_the_busiest_token_sets_the_bound(self) -> None:
        assert startup_lower_bound_s([10], token_gap_s=3.0) == 27.0
        assert startup_lower_bound_s([5, 5], token_gap_s=3.0) == 12.0
        assert startup_lower_bound_s([1], token_gap_s=3.0, first_at_s=0.5) == 0.5
        assert startup_lower_bound_s([], token_gap_s=3.0) == 0.0


# --- properties ------------------------------------------------------------------------------------

CODES = STOCKS[:25] + FOREX[:10]
OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("want"), st.sampled_from(["trades", "book"]), st.frozensets(st.sampled_from(CODES))
        ),
        st.tuples(st.just("wait"), st.floats(0.0, 40.0)),
        st.tuples(st.just("take_out"), st.sampled_from([T1, T2])),
    ),
    max_size=12,
)


class PoolPropertyTests:
    """Over random sequences of wanted sets, waits and 401s: the limits hold, nothing moves needlessly,
    and the union is covered whenever the quota allows.
    """

    @settings(max_examples=300, deadline=None)
    @given(ops=OPS, conns=st.integers(1, 3), codes=st.integers(1, 6), two_tokens=st.booleans())
    def test_invariants(self, ops: list[tuple], conns: int, codes: int, two_tokens: bool) -> None:
        tokens = (T1, T2) if two_tokens else (T1,)
        pool = Pool(quota(conns=conns, codes=codes, tokens=tokens), close_after_s=30.0)
        pinned(pool, STOCK, FX)
        now = 0.0
        wanted: dict[str, frozenset[str]] = {"trades": frozenset(), "book": frozenset()}
        current: dict[str, dict[str, frozenset[str]]] = {"trades": {}, "book": {}}
        for op in ops:
            if op[0] == "want":
                wanted[op[1]] = op[2]
            elif op[0] == "wait":
                now += op[1]
                for slot in pool.to_close(now):
                    assert not slot.pinned
                    for held in current.values():
                        assert not held.get(slot.conn_id), f"closed {slot.conn_id} while it held codes"
                        held.pop(slot.conn_id, None)
                continue
            else:
                pool.take_out(op[1])
            before = dict(pool.slots)
            fit = pool.fit(wanted, current, endpoints=[STOCK, FX])
            self.check(pool, fit, wanted, current, before)
            pool.commit(fit, now)
            current = {kind: dict(fit.by_kind[kind]) for kind in current}

    def check(
        self,
        pool: Pool,
        fit: Fit,
        wanted: dict[str, frozenset[str]],
        current: dict[str, dict[str, frozenset[str]]],
        before: dict[str, Slot],
    ) -> None:
        q = pool.quota
        live = pool.live_tokens
        slots = {**pool.slots, **{s.conn_id: s for s in fit.opened}}
        assert not (set(before) & {s.conn_id for s in fit.opened}), "an id reused"
        for endpoint in (STOCK, FX):
            for token in q.tokens:
                n = sum(1 for s in slots.values() if s.endpoint is endpoint and s.token == token)
                if token in live:
                    assert n <= q.connections_per_token, f"{token} over its quota on {endpoint}"
                else:
                    assert n == 0, f"a connection of the taken-out {token}"
        for kind, by_conn in fit.by_kind.items():
            assert set(by_conn) == set(slots), "every connection listed, no other"
            placed = [c for codes in by_conn.values() for c in codes]
            assert len(placed) == len(set(placed)), "a code on two connections"
            for conn_id, codes in by_conn.items():
                assert len(codes) <= q.codes_per_connection, conn_id
                assert all(endpoint_of(c) is slots[conn_id].endpoint for c in codes)
                # No needless move: a code stays on its connection while that connection lives.
                for code in current[kind].get(conn_id, frozenset()) & wanted[kind]:
                    assert code in codes, f"{code} moved off {conn_id}"
            unplaced = wanted[kind] - set(placed)
            assert unplaced <= set(fit.refused)
            for endpoint in (STOCK, FX):
                n = sum(1 for c in wanted[kind] if endpoint_of(c) is endpoint)
                capacity = q.connections_per_token * len(live) * q.codes_per_connection
                lost = sum(1 for c in unplaced if endpoint_of(c) is endpoint)
                # Covered whenever the quota allows; exactly the excess refused otherwise.
                assert lost == max(0, n - capacity), f"{kind} on {endpoint}"
        # A connection opens only when the room of those that exist is too small.
        for endpoint in (STOCK, FX):
            have = sum(1 for c in before if slots[c].endpoint is endpoint)
            need = max(
                math.ceil(sum(1 for c in codes if endpoint_of(c) is endpoint) / q.codes_per_connection)
                for codes in wanted.values()
            )
            opened = sum(1 for s in fit.opened if s.endpoint is endpoint)
            assert opened <= max(0, need - have)


class PacingPropertyTests:
    """The registry's books sharing one RateGate per token and endpoint: however wanted sets change and
    whenever the server answers, requests keep 1 s per connection and 3 s per token (PROTOCOL.md
    "Limits"), and every book reaches its set. Time jumps from one ``next_wakeup`` to the next, as the
    registry's timer does.
    """

    @settings(max_examples=150, deadline=None)
    @given(
        layout=st.lists(st.sampled_from([T1, T2]), min_size=1, max_size=5),
        changes=st.lists(
            st.tuples(
                st.integers(0, 4), st.frozensets(st.sampled_from(STOCKS[:8]), min_size=1), st.floats(0.0, 5.0)
            ),
            max_size=8,
        ),
        ack_delay=st.floats(0.01, 2.0),
    )
    def test_pacing_is_never_violated(
        self, layout: list[str], changes: list[tuple[int, frozenset[str], float]], ack_delay: float
    ) -> None:
        gates = {t: RateGate(conn_gap_s=1.0, token_gap_s=3.0) for t in (T1, T2)}
        books = [SubscriptionBook(f"c{i}", Kind.TRADES, gate=gates[t]) for i, t in enumerate(layout)]
        ids = wire.RequestIds("t")
        for i, book in enumerate(books):
            book.want([STOCKS[i]])
            book.connection_up()
        sent: list[tuple[float, int]] = []  # (time, book index)
        pending: list[tuple[float, int, int]] = []  # (answer time, book index, seq_id)
        now = 0.0
        schedule = sorted((at, i % len(books), codes) for i, codes, at in changes)
        for _ in range(500):
            while schedule and schedule[0][0] <= now:
                _, i, codes = schedule.pop(0)
                books[i].want(codes)
            for at, i, seq in [p for p in pending if p[0] <= now]:
                pending.remove((at, i, seq))
                books[i].receive_response(wire.SubscribeTradesAck(ret=200, msg="ok", seq_id=seq), now)
            for i, book in enumerate(books):
                request = book.request_to_send(now, ids)
                if request is not None:
                    sent.append((now, i))
                    pending.append((now + ack_delay, i, request.seq_id))
            wakeups = [w for b in books if (w := b.next_wakeup(now)) is not None]
            wakeups += [p[0] for p in pending] + [s[0] for s in schedule[:1]]
            if not wakeups:
                break
            now = max(now, min(wakeups))
        assert all(b.in_sync for b in books), "every book reached its set"
        for k, (at, i) in enumerate(sent):
            for at2, j in sent[k + 1 :]:
                if j == i:
                    assert (at2 - at) >= (1.0 - 1e-9), f"two requests on c{i} closer than 1 s"
                elif layout[j] == layout[i]:
                    assert (at2 - at) >= (3.0 - 1e-9), f"c{i}, c{j} of one token closer than 3 s"
