"""Tests of actors.core.delivery: the bounded queue of one strategy, per-code order, missed counts. Pure."""

from __future__ import annotations

from collections.abc import Hashable
from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.core.delivery import BOOKS, TICKS, Batch, Delivery, MissedReport
from actors.core.tickcheck import already_seen


class _Rec(NamedTuple):
    code: str
    seq: int
    tick_time: int


def Rec(code: str, seq: int, tick_time: int | None = None) -> _Rec:  # noqa: N802 - reads as a record
    """A record whose tick_time moves on with its seq (a second per seq), unless given."""
    return _Rec(code, seq, seq * 1000 if tick_time is None else tick_time)


class TestQueue:
    def test_full_drops_the_oldest_and_on_missed_hears_before_the_next_batch(self) -> None:
        d = Delivery(max_batches=2)
        for k in range(3):
            d.push(Batch(TICKS, k, 10, "dec", k + 1))
        assert d.missed == 10
        assert d.queued == 2
        assert d.next() == MissedReport(10)
        d.reported()
        assert d.take_acks() == {"dec": 1}  # the dropped batch is done with once it was told
        batch = d.next()
        assert isinstance(batch, Batch)
        assert batch.payload == 1
        d.finished(batch)
        assert d.take_acks() == {"dec": 2}
        assert d.next() == Batch(TICKS, 2, 10, "dec", 3)
        assert d.next() is None

    def test_each_sender_has_its_own_share_of_the_queue(self) -> None:
        d = Delivery(max_batches=1)
        d.push(Batch(TICKS, "x1", 2, "x", 1))
        assert d.push(Batch(TICKS, "y1", 3, "y", 1)) == 0  # another decoder: no room taken from x
        assert d.push(Batch(TICKS, "x2", 4, "x", 2)) == 2  # x's share is full: x's oldest goes
        assert d.next() == MissedReport(2)
        assert [b.payload for b in d.next_run()] == ["y1", "x2"]  # type: ignore[union-attr]

    def test_missed_counts_from_the_sender_come_first(self) -> None:
        d = Delivery(max_batches=4)
        d.push(Batch(TICKS, "p", 1), missed=7)
        d.missed_before(2)
        assert d.next() == MissedReport(9)
        assert d.next() == Batch(TICKS, "p", 1)

    def test_acks_are_cumulative_per_sender(self) -> None:
        d = Delivery(max_batches=4)
        d.finished(Batch(TICKS, 0, 1, "x", 5))
        d.finished(Batch(TICKS, 0, 1, "x", 3))
        d.finished(Batch(TICKS, 0, 1, "y", 1))
        assert d.take_acks() == {"x": 5, "y": 1}
        assert d.take_acks() == {}

    def test_bad_bound(self) -> None:
        with pytest.raises(ValueError, match="max_batches must be >= 1"):
            Delivery(max_batches=0)

    def test_the_batches_of_a_kind_waiting_in_a_row_go_to_one_hook_call(self) -> None:
        d = Delivery(max_batches=8)
        batches = [Batch(TICKS, 1, 1, "x", 1), Batch(TICKS, 2, 2, "y", 1), Batch(BOOKS, 3, 1, "x", 2)]
        batches.append(Batch(TICKS, 4, 1, "x", 3))
        for batch in batches:
            d.push(batch)
        d.push(Batch(TICKS, 5, 1, "x", 4), missed=2)  # a gap before it: told first
        assert d.next_run() == MissedReport(2)
        d.reported()
        assert d.next_run() == batches[:2]
        assert d.next_run() == [batches[2]]
        run = d.next_run()
        assert run == [batches[3], Batch(TICKS, 5, 1, "x", 4)]
        for batch in run:  # type: ignore[union-attr]
            d.finished(batch)
        assert d.take_acks() == {"x": 4}
        assert d.next_run() is None


class TestOrder:
    def test_repeats_and_older_seqs_never_reach_the_hook(self) -> None:
        d = Delivery(max_batches=1)
        assert d.in_order([Rec("A", 1), Rec("A", 2)]) == [Rec("A", 1), Rec("A", 2)]
        assert d.in_order([Rec("A", 2), Rec("B", 1), Rec("A", 1), Rec("A", 3)]) == [Rec("B", 1), Rec("A", 3)]
        assert d.in_order([Rec("A", 1)], BOOKS) == [Rec("A", 1)]  # books keep marks of their own
        assert d.out_of_order == 2

    def test_a_reset_of_the_vendors_counter_passes(self) -> None:
        """A lower seq with a later tick_time (a vendor restart) goes on from the new seq."""
        d = Delivery(max_batches=1)
        assert d.in_order([Rec("A", 50)]) == [Rec("A", 50)]
        reset = [Rec("A", 1, tick_time=51_000), Rec("A", 2, tick_time=52_000)]
        assert d.in_order(reset) == reset
        assert d.in_order([Rec("A", 2, tick_time=52_000)]) == []  # the re-push after a subscribe
        assert d.out_of_order == 1

    @given(
        st.lists(st.lists(st.tuples(st.sampled_from("ABC"), st.integers(0, 30)), max_size=10), max_size=10)
    )
    def test_what_passes_is_strictly_increasing_per_code(self, batches: list[list[tuple[str, int]]]) -> None:
        d = Delivery(max_batches=1)
        passed: list[_Rec] = []
        total = 0
        for batch in batches:
            total += len(batch)
            passed += d.in_order([Rec(c, s) for c, s in batch])
        for code in "ABC":
            seqs = [r.seq for r in passed if r.code == code]
            assert seqs == sorted(set(seqs))
        assert len(passed) + d.out_of_order == total


class TestAccounting:
    @given(
        ops=st.lists(
            st.one_of(
                st.tuples(st.just("push"), st.integers(1, 5), st.integers(0, 3)),
                st.tuples(st.just("step"), st.just(0), st.just(0)),
            ),
            max_size=60,
        ),
        bound=st.integers(1, 4),
    )
    def test_every_record_reaches_a_hook_or_on_missed(
        self, ops: list[tuple[str, int, int]], bound: int
    ) -> None:
        """Two senders (their batches by the parity of ``missed``): every record offered reaches a
        hook or ``on_missed``, acknowledgements grow per sender, each sender's share stays bounded.
        """
        d = Delivery(max_batches=bound)
        offered = hooked = reported = 0
        numbers = {"s": 0, "t": 0}
        acked: dict[Hashable, int] = {"s": 0, "t": 0}
        for op, count, missed in [*ops, *[("step", 0, 0)] * (2 * len(ops) + 2)]:
            if op == "push":
                source = "st"[missed % 2]
                numbers[source] += 1
                offered += count + missed
                d.push(Batch(TICKS if count % 2 else BOOKS, count, count, source, numbers[source]), missed)
            else:
                item = d.next_run()
                if isinstance(item, MissedReport):
                    reported += item.count
                    d.reported()
                elif item is not None:
                    assert len({batch.kind for batch in item}) == 1  # a run is of one kind
                    for batch in item:
                        hooked += batch.count
                        d.finished(batch)
            for sender, number in d.take_acks().items():
                assert number > acked[sender]  # cumulative, growing
                acked[sender] = number
            assert d.queued <= 2 * bound
        assert offered == hooked + reported
        assert acked == dict(numbers)


@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from("AB"), st.integers(0, 6), st.integers(0, 6)), max_size=8),
        max_size=6,
    )
)
def test_in_order_passes_what_already_seen_allows_batch_after_batch(
    batches: list[list[tuple[str, int, int]]],
) -> None:
    # in_order inlines tickcheck.already_seen; batch after batch it must keep exactly what the rule
    # keeps against the last record passed for each code, and hand back the batch itself when all pass.
    d = Delivery(max_batches=4)
    last: dict[str, tuple[int, int]] = {}
    for raw in batches:
        records = [Rec(code, seq, t) for code, seq, t in raw]
        want = []
        for rec in records:
            if not already_seen(rec.seq, rec.tick_time, last.get(rec.code)):
                last[rec.code] = (rec.seq, rec.tick_time)
                want.append(rec)
        dropped_before = d.out_of_order
        got = d.in_order(records)
        assert got == want
        assert d.out_of_order - dropped_before == len(records) - len(want)
        if want == records:
            assert got is records
