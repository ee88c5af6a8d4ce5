"""Tests of actors.core.routing: dedupe, ghosts, fan-out and the outbox of one receiver. Pure."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.core.normalise import Tick
from actors.core.routing import Outbox, Router, join_tick_batches
from actors.core.tickcheck import Anomaly

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
        assert router.route([reset, Rec("A", 2, tick_time=T0 + 9000)], NOW) == {
            "s": [reset, Rec("A", 2, tick_time=T0 + 9000)]
        }
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
        assert router.set_routes({"A": ("s", "t"), "B": ("t",)}, {})
        assert router.routed_codes == 2
        out = router.route([Rec("A", 1), Rec("X", 1), Rec("B", 1), Rec("A", 2)], NOW)
        assert out == {"s": [Rec("A", 1), Rec("A", 2)], "t": [Rec("A", 1), Rec("B", 1), Rec("A", 2)]}
        assert (router.ghosts, router.duplicates) == (1, 0)

    def test_tables_older_than_those_in_force_are_ignored(self) -> None:
        # The registry sends version 10 (nothing held yet), then 11 (A held); the decoder runs them the
        # other way round: A must stay routed.
        router = Router()
        assert router.set_routes({"A": ("s",)}, {}, version=11)
        assert not router.set_routes({}, {}, version=10)
        assert router.route([Rec("A", 1)], NOW) == {"s": [Rec("A", 1)]}
        assert (router.routes_version, router.ghosts) == (11, 0)
        assert router.set_routes({}, {}, version=12)  # a newer one replaces them
        assert router.route([Rec("A", 2)], NOW) == {}
        assert router.ghosts == 1
        assert router.set_routes({"B": ("s",)}, {})  # unversioned (tests, tools): always replaces
        assert router.holders("B") == ("s",)

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
        passed = [r for r in out.values() for r in r]
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
        assert box.put("a", 3)
        assert box.put("b", 3)
        assert not box.put("c", 5)
        assert (box.dropped, box.missed, box.pending) == (5, 5, 2)
        written = box.take()
        assert [(o.number, o.missed, o.body) for o in written] == [(1, 5, "a"), (2, 0, "b")]
        assert box.missed == 0
        assert box.in_flight == 2
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
        with pytest.raises(ValueError, match="max_records must be >= 1 or None, got 0"):
            Outbox(max_batches=1, replay=False, max_records=0)


class TestJoiningOutbox:
    """An outbox with a merge rule (tick batches to a strategy): a full window joins, it does not drop."""

    def box(self, window: int = 2, max_records: int = 100) -> Outbox[list[Any]]:
        return Outbox(max_batches=window, replay=False, max_records=max_records, merge=join_tick_batches)

    def test_beyond_the_window_batches_of_a_kind_join_one_waiting_batch(self) -> None:
        box = self.box()
        for k in range(2):  # each written before the next comes (as the channel does when connected)
            assert box.put(["on_ticks", 1, [f"p{k}"]], 1)
            assert [o.number for o in box.take()] == [k + 1]
        for k in range(2, 5):  # the window is full: they wait, joined
            assert box.put(["on_ticks", 2, [f"p{k}"]], 2)
        assert box.put(["on_books", 1, ["b"]], 1)  # another kind: a batch of its own
        assert box.put(["on_books", 1, ["b2"]], 1)
        assert box.take() == []  # nothing fits before an acknowledgement
        assert (box.queued, box.in_flight, box.records, box.merged, box.dropped) == (2, 2, 10, 3, 0)
        box.acked(1)
        assert [(o.number, o.body) for o in box.take()] == [(3, ["on_ticks", 6, ["p2", "p3", "p4"]])]
        box.acked(3)
        assert [o.body for o in box.take()] == [["on_books", 2, ["b", "b2"]]]
        assert box.records == 2

    def test_only_the_record_bound_drops_and_the_count_travels(self) -> None:
        box = self.box(window=1, max_records=5)
        assert box.put(["on_ticks", 3, ["a"]], 3)
        box.take()
        assert box.put(["on_ticks", 2, ["b"]], 2)  # 3 + 2: at the bound now
        assert not box.put(["on_ticks", 4, ["c"]], 4)
        assert (box.dropped, box.missed, box.records) == (4, 4, 5)
        box.acked(1)
        assert [(o.missed, o.body) for o in box.take()] == [(4, ["on_ticks", 2, ["b"]])]

    def test_falling_behind_and_catching_up_are_news_once_each(self) -> None:
        box = self.box(window=1, max_records=10)
        box.put(["on_ticks", 4, ["a"]], 4)
        box.take()
        assert box.behind_news() is None  # 4 of 10
        box.put(["on_ticks", 1, ["b"]], 1)
        assert box.behind_news() is True  # 5 of 10: half the bound, drops are near
        box.put(["on_ticks", 3, ["c"]], 3)
        assert box.behind_news() is None  # still behind: told once
        box.acked(1)
        assert box.behind_news() is None  # 4 left: not yet under a tenth
        box.take()
        box.acked(2)
        assert box.behind_news() is False  # caught up
        assert box.behind_news() is None
        assert Outbox(max_batches=1, replay=False).behind_news() is None  # no record bound: no news

    def test_a_break_loses_what_was_written_and_keeps_what_waits(self) -> None:
        box = self.box(window=1)
        box.put(["on_ticks", 2, ["a"]], 2)
        box.take()
        box.put(["on_ticks", 3, ["b"]], 3)
        box.put(["on_ticks", 1, ["c"]], 1)
        assert box.broken() == 2
        assert box.records == 4
        assert [(o.number, o.missed, o.body) for o in box.take()] == [(1, 2, ["on_ticks", 4, ["b", "c"]])]


JOIN_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(["on_ticks", "on_books"]), st.integers(1, 5)),
        st.tuples(st.just("take"), st.just(""), st.just(0)),
        st.tuples(st.just("ack"), st.just(""), st.integers(0, 3)),
        st.tuples(st.just("break"), st.just(""), st.just(0)),
    ),
    max_size=80,
)


@given(ops=JOIN_OPS, window=st.integers(1, 4), max_records=st.integers(1, 20))
def test_a_joining_outbox_loses_nothing_uncounted_and_keeps_each_kinds_order(
    ops: list[tuple[str, str, int]], window: int, max_records: int
) -> None:
    box: Outbox[list[Any]] = Outbox(
        max_batches=window, replay=False, max_records=max_records, merge=join_tick_batches
    )
    counts: dict[int, int] = {}  # batch id -> records
    written: list[tuple[int, int, list[Any]]] = []
    offered = delivered = told = 0
    seen: dict[str, list[int]] = {"on_ticks": [], "on_books": []}
    for op, kind, arg in ops:
        if op == "put":
            offered += arg
            ident = len(counts)
            counts[ident] = arg
            box.put([kind, arg, [ident]], arg)
        elif op == "take":
            for o in box.take():
                assert o.body[1] == sum(counts[i] for i in o.body[2])  # a joined batch counts its parts
                written.append((o.number, o.missed, o.body))
        elif op == "ack" and written:
            done, written = _acknowledge(box, written, arg)
            for _, missed, body in done:
                delivered += body[1]
                told += missed
                seen[body[0]] += body[2]
        elif op == "break":
            written = []
            box.broken()
        assert offered == delivered + told + _in_outbox(box)
        assert box.in_flight <= window
        assert box.queued <= window
        assert box.records == sum(e.count for e in _entries(box))
        assert box.records < max_records + 5  # admitted while below the bound, a batch holds <= 5
    for ids in seen.values():
        assert ids == sorted(ids)  # batches of one kind reach the receiver in the order they were put


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(1, 5)),
        st.tuples(st.just("take"), st.just(0)),
        st.tuples(st.just("ack"), st.integers(0, 3)),
        st.tuples(st.just("break"), st.just(0)),
    ),
    max_size=80,
)


def _acknowledge(box: Outbox[Any], written: list[Any], arg: int) -> tuple[list[Any], list[Any]]:
    """The receiver acknowledges up to the ``arg``-th written batch: (those done, those still written)."""
    upto = written[min(arg, len(written) - 1)][0]
    box.acked(upto)
    return [w for w in written if w[0] <= upto], [w for w in written if w[0] > upto]


def _entries(box: Outbox[Any]) -> list[Any]:
    """The outbox's entries, queued and written (the test's view of its insides)."""
    return [*box._queued, *(e for _, e in box._in_flight)]


def _in_outbox(box: Outbox[Any]) -> int:
    """Records and carried missed counts still inside the outbox (read through its own entries)."""
    return sum(e.count + e.missed for e in _entries(box)) + box.missed


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
                done, written = _acknowledge(box, written, arg)
                for _, missed, body in done:
                    delivered += counts[body]
                    told += missed
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
        for op, arg in [*ops, ("take", 0), ("ack", 10**6)]:
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
