"""Tests of actors.core.routing: dedupe, ghosts, fan-out and the outbox of one receiver. Pure."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.core.codehealth import Anomaly
from actors.core.routing import Outbox, Router
from actors.core.wire import Tick

T0 = 1_700_000_000_000  # ms since the epoch
NOW = T0 + 30_000  # the receive time of every batch here: within the check's limits


def Rec(code: str, seq: int, tick_time: int | None = None) -> Tick:  # noqa: N802 - reads as a record
    """A trade tick whose tick_time moves on with its seq (a second per seq), unless given."""
    t = T0 + seq * 1000 if tick_time is None else tick_time
    return Tick(code=code, seq=seq, tick_time=t, price="1.5", volume="10", turnover="", trade_direction=0)


def dropped(router: Router) -> int:
    """Records the check dropped: duplicates and older ticks."""
    totals = router.trades.totals()
    return totals.get(Anomaly.DUPLICATE.value, 0) + totals.get(Anomaly.SEQ_BACKWARDS.value, 0)


class TestDedupe:
    def test_a_repeated_seq_is_dropped_and_counted_per_kind(self) -> None:
        router = Router()
        router.set_routes({"A": ("s",)}, {"A": ("s",)})
        assert router.route([Rec("A", 1), Rec("A", 2)], NOW) == {"s": [Rec("A", 1), Rec("A", 2)]}
        assert router.route([Rec("A", 2), Rec("A", 3)], NOW) == {"s": [Rec("A", 3)]}
        # order books keep marks of their own
        assert router.route([Rec("A", 2)], NOW, books=True) == {"s": [Rec("A", 2)]}
        assert router.duplicates == 1
        assert router.reports() == [], "the re-push after a subscribe is not an anomaly to report"

    def test_an_older_tick_is_dropped_and_a_counter_reset_delivered_and_reported(self) -> None:
        router = Router()
        router.set_routes({"A": ("s",)}, {})
        router.route([Rec("A", 7)], NOW)
        # lower seq, older tick_time: stale, dropped
        assert router.route([Rec("A", 6)], NOW) == {}
        # lower seq, later tick_time: the vendor's counter restarted (a vendor restart): delivered
        reset = Rec("A", 1, tick_time=T0 + 8000)
        assert router.route([reset, Rec("A", 2, tick_time=T0 + 9000)], NOW) == {"s": [reset, Rec("A", 2, tick_time=T0 + 9000)]}
        kinds = sorted(report.anomaly.value for report, holders in router.reports() if holders == ("s",))
        assert kinds == [Anomaly.SEQ_BACKWARDS.value, Anomaly.SEQ_RESET.value]

    def test_a_code_without_holder_loses_its_mark(self) -> None:
        router = Router()
        router.set_routes({"A": ("s",)}, {})
        router.route([Rec("A", 500)], NOW)
        router.set_routes({}, {})
        router.set_routes({"A": ("t",)}, {})
        assert router.route([Rec("A", 400)], NOW) == {"t": [Rec("A", 400)]}


class TestGhostsAndFanOut:
    def test_ghosts_are_counted_and_held_codes_go_to_every_holder(self) -> None:
        router = Router()
        assert router.set_routes({"A": ("s", "t"), "B": ("t",)}, {}) == 2
        out = router.route([Rec("A", 1), Rec("X", 1), Rec("B", 1), Rec("A", 2)], NOW)
        assert out == {"s": [Rec("A", 1), Rec("A", 2)], "t": [Rec("A", 1), Rec("B", 1), Rec("A", 2)]}
        assert (router.ghosts, router.duplicates) == (1, 0)

    @given(
        holders=st.dictionaries(st.sampled_from("ABCD"), st.sets(st.sampled_from("stu"), min_size=1)),
        records=st.lists(st.tuples(st.sampled_from("ABCDE"), st.integers(0, 20)), max_size=60),
    )
    def test_every_record_is_routed_once_per_holder_or_counted(
        self, holders: dict[str, set[str]], records: list[tuple[str, int]]
    ) -> None:
        router = Router()
        router.set_routes({c: tuple(sorted(names)) for c, names in holders.items()}, {})
        out = router.route([Rec(c, s) for c, s in records], NOW)
        passed = [r for r in out.values() for r in r]  # noqa: PLW2901 - flattening
        unique = {}
        for name, recs in out.items():
            for code in {r.code for r in recs}:
                seqs = [r.seq for r in recs if r.code == code]
                assert seqs == sorted(set(seqs)), "per code strictly increasing"
                assert name in holders[code]
                unique[code] = seqs
        # each record routed once counts once per holder; the rest are ghosts, duplicates or older ticks
        routed = sum(len(seqs) for seqs in unique.values())
        assert routed + router.ghosts + dropped(router) == len(records)
        assert len(passed) == sum(len(unique[c]) * len(holders[c]) for c in unique)
        assert router.ghosts == sum(1 for c, _ in records if c not in holders)


class TestOutbox:
    def test_full_drops_and_the_count_travels_with_the_next_batch(self) -> None:
        box: Outbox[str] = Outbox(max_batches=2, replay=False)
        assert box.put("a", 3) and box.put("b", 3)
        assert not box.put("c", 5)
        assert (box.dropped, box.missed, box.pending) == (5, 5, 2)
        written = box.take()
        assert [(o.number, o.missed, o.body) for o in written] == [(1, 5, "a"), (2, 0, "b")]
        assert box.missed == 0 and box.in_flight == 2
        box.acked(2)
        assert box.pending == 0

    def test_a_break_counts_what_was_not_acknowledged_as_missed(self) -> None:
        box: Outbox[str] = Outbox(max_batches=8, replay=False)
        box.put("a", 2)
        box.put("b", 3)
        box.take()
        box.acked(1)
        box.put("c", 4)  # queued, not yet written: it survives the break
        assert box.broken() == 3
        assert (box.lost, box.missed, box.in_flight, box.queued) == (3, 3, 0, 1)
        assert [(o.number, o.missed, o.body) for o in box.take()] == [(1, 3, "c")]

    def test_a_break_with_replay_writes_again_in_order(self) -> None:
        box: Outbox[str] = Outbox(max_batches=8, replay=True)
        for body in "abc":
            box.put(body, 1)
        box.take()
        box.acked(1)
        box.put("d", 1)
        assert box.broken() == 0
        assert [o.body for o in box.take()] == ["b", "c", "d"]
        assert (box.lost, box.missed, box.replayed) == (0, 0, 2)

    def test_bad_bound(self) -> None:
        with pytest.raises(ValueError, match="max_batches must be >= 1, got 0"):
            Outbox(max_batches=0, replay=False)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(1, 5)),
        st.tuples(st.just("take"), st.just(0)),
        st.tuples(st.just("ack"), st.integers(0, 3)),
        st.tuples(st.just("break"), st.just(0)),
    ),
    max_size=80,
)


def _in_outbox(box: Outbox[Any]) -> int:
    """Records and carried missed counts still inside the outbox (read through its own entries)."""
    entries = list(box._queued) + [e for _, e in box._in_flight]  # noqa: SLF001 - the test's view
    return sum(e.count + e.missed for e in entries) + box.missed


class TestOutboxProperties:
    @given(ops=OPS, bound=st.integers(1, 6))
    def test_no_record_vanishes_uncounted(self, ops: list[tuple[str, int]], bound: int) -> None:
        """Offered == delivered + told as missed to the receiver + still inside the outbox."""
        box: Outbox[int] = Outbox(max_batches=bound, replay=False)
        counts: dict[int, int] = {}
        written: list[tuple[int, int, int]] = []  # number, missed, body of the current channel
        offered = delivered = told = 0
        for op, arg in ops:
            if op == "put":
                offered += arg
                body = len(counts)
                counts[body] = arg
                box.put(body, arg)
            elif op == "take":
                written += [(o.number, o.missed, o.body) for o in box.take()]
            elif op == "ack" and written:
                upto = written[min(arg, len(written) - 1)][0]
                for number, missed, body in [w for w in written if w[0] <= upto]:
                    delivered += counts[body]
                    told += missed
                written = [w for w in written if w[0] > upto]
                box.acked(upto)
            elif op == "break":
                written = []
                box.broken()
            assert offered == delivered + told + _in_outbox(box)
            assert box.pending <= bound

    @given(ops=OPS, bound=st.integers(1, 6))
    def test_replay_delivers_every_accepted_batch_once_in_order(
        self, ops: list[tuple[str, int]], bound: int
    ) -> None:
        box: Outbox[int] = Outbox(max_batches=bound, replay=True)
        accepted: list[int] = []
        got: list[int] = []
        written: list[tuple[int, int]] = []
        for op, arg in ops + [("take", 0), ("ack", 10**6)]:
            if op == "put":
                body = len(accepted) + box.dropped * 1000
                if box.put(body, arg):
                    accepted.append(body)
            elif op == "take":
                written += [(o.number, o.body) for o in box.take()]
            elif op == "ack" and written:
                upto = written[min(arg, len(written) - 1)][0]
                got += [b for n, b in written if n <= upto]
                written = [w for w in written if w[0] > upto]
                box.acked(upto)
            elif op == "break":
                written = []
                box.broken()
        assert box.lost == 0
        assert got == accepted[: len(got)]
        assert len(got) + box.pending == len(accepted)
