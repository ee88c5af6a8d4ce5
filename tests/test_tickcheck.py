"""Tests of actors.core.tickcheck: the per-tick check, with fake times."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.normalise import BookTick, Tick
from actors.core.tickcheck import Anomaly, TickCheck, negative, positive

T0 = 1_700_000_000_000  # ms since the epoch


def tick(seq: int, t: int = T0, price: str = "1.5", volume: str = "10", code: str = "AAPL.US") -> Tick:
    return Tick(code=code, seq=seq, tick_time=t, price=price, volume=volume, turnover="", trade_direction=0)


def run(check: TickCheck, ticks: list[Tick], now_ms: int = T0) -> list[int]:
    return [t.seq for t in ticks if check.check(t, now_ms)]


def test_positive_and_negative_follow_the_wire_grammar() -> None:
    assert positive("1")
    assert positive("0.0001")
    assert positive("1e-5")
    assert positive(".5")
    assert not positive("0")
    assert not positive("0.000")
    assert not positive("-1")
    assert not positive("-0")
    assert not positive("0e5")
    assert not positive("-0.5")
    assert negative("-1")
    assert negative("-0.01")
    assert not negative("")
    assert not negative("-0")
    assert not negative("0")
    assert not negative("5")


class TestCorrupt:
    def test_price_zero_and_negative_are_not_delivered_and_reported_once(self) -> None:
        check = TickCheck()
        assert run(
            check, [tick(1), tick(2, price="0"), tick(3, price="-1"), tick(4), tick(5, price="0.00")]
        ) == [1, 4]
        assert check.counts()["AAPL.US"] == {"price_not_positive": 3}
        reports = check.reports()
        assert [(r.code, r.anomaly, r.delivered) for r in reports] == [
            ("AAPL.US", Anomaly.PRICE_NOT_POSITIVE, False)
        ]
        assert "price 0 is not positive" in str(reports[0])
        assert "deliver_corrupt" in str(reports[0])
        assert check.reports() == []  # drained

    def test_deliver_corrupt_passes_them_but_still_counts_and_reports(self) -> None:
        check = TickCheck(deliver_corrupt=True)
        assert run(check, [tick(1, price="-3.5"), tick(2, price="0")]) == [1, 2]
        assert check.counts()["AAPL.US"] == {"price_not_positive": 2}
        assert [r.delivered for r in check.reports()] == [True]

    def test_negative_volume_and_empty_code(self) -> None:
        check = TickCheck(deliver_corrupt=True)
        assert run(check, [tick(1, volume="-2"), tick(2, code="")]) == [1]  # an empty code has no holder
        assert check.counts() == {"AAPL.US": {"negative_volume": 1}, "": {"empty_code": 1}}
        assert {r.anomaly for r in check.reports()} == {Anomaly.NEGATIVE_VOLUME, Anomaly.EMPTY_CODE}

    def test_a_corrupt_tick_moves_the_seq_mark(self) -> None:
        check = TickCheck()
        run(check, [tick(1), tick(2, price="0"), tick(3)])
        assert "seq_jump" not in check.counts()["AAPL.US"]

    def test_a_book_with_a_zero_price_level_is_corrupt(self) -> None:
        check = TickCheck()
        good = BookTick(
            code="700.HK", seq=1, tick_time=T0, bids=(("380.2", "100"),), asks=(("380.4", "200"),)
        )
        bad = BookTick(code="700.HK", seq=2, tick_time=T0, bids=(("0", "100"),), asks=())
        assert check.check(good, T0)
        assert not check.check(bad, T0)
        assert check.counts()["700.HK"] == {"price_not_positive": 1}

    def test_an_episode_ends_after_the_quiet_time_and_a_new_one_is_reported(self) -> None:
        check = TickCheck(episode_quiet_s=10)
        check.check(tick(1, price="0"), T0)
        check.check(tick(2, price="0"), T0 + 9_000)  # same episode (and it extends it)
        check.check(tick(3, price="0"), T0 + 18_000)
        assert len(check.reports()) == 1
        check.check(tick(4, price="0"), T0 + 28_001)
        assert len(check.reports()) == 1
        assert check.counts()["AAPL.US"]["price_not_positive"] == 4


class TestSequence:
    def test_the_re_push_after_subscribe_is_a_duplicate_dropped_not_reported(self) -> None:
        check = TickCheck()
        assert run(check, [tick(5), tick(5), tick(6)]) == [5, 6]
        assert check.counts()["AAPL.US"] == {"duplicate": 1}
        assert check.reports() == []

    def test_seq_reset_with_a_newer_tick_time_is_delivered_and_reported_once(self) -> None:
        check = TickCheck()
        ticks = [tick(100, T0), tick(101, T0 + 10), tick(1, T0 + 20), tick(2, T0 + 30), tick(3, T0 + 40)]
        assert run(check, ticks) == [100, 101, 1, 2, 3]
        assert check.counts()["AAPL.US"] == {"seq_reset": 1}
        [report] = check.reports()
        assert report.anomaly is Anomaly.SEQ_RESET
        assert report.delivered
        assert "seq 1 after 101" in str(report)

    def test_an_older_tick_with_a_lower_seq_is_dropped_and_reported_once(self) -> None:
        check = TickCheck()
        ticks = [tick(10, T0 + 100), tick(8, T0 + 80), tick(9, T0 + 90), tick(11, T0 + 110)]
        assert run(check, ticks) == [10, 11]
        assert check.counts()["AAPL.US"] == {"seq_backwards": 2}
        assert [r.anomaly for r in check.reports()] == [Anomaly.SEQ_BACKWARDS]

    def test_a_jump_and_tick_time_backwards_are_delivered_and_reported(self) -> None:
        check = TickCheck()
        assert run(check, [tick(1, T0), tick(5, T0 + 5), tick(6, T0 + 1)]) == [1, 5, 6]
        assert check.counts()["AAPL.US"] == {"seq_jump": 1, "tick_time_backwards": 1}
        assert {r.anomaly for r in check.reports()} == {Anomaly.SEQ_JUMP, Anomaly.TIME_BACKWARDS}

    def test_tick_time_far_in_the_future_is_reported_and_does_not_become_the_mark(self) -> None:
        check = TickCheck()
        hour = 3_600_000
        assert run(check, [tick(1, T0), tick(2, T0 + 2 * hour), tick(3, T0 + 10)], now_ms=T0) == [1, 2, 3]
        counts = check.counts()["AAPL.US"]
        assert counts == {"tick_time_future": 1}  # tick 3 is not "backwards" from the skewed tick 2
        [report] = check.reports()
        assert "7200 s ahead of the receive time" in str(report)

    def test_a_first_tick_from_the_future_is_not_the_mark(self) -> None:
        check = TickCheck()
        hour = 3_600_000
        assert run(check, [tick(1, T0 + hour), tick(2, T0 + 5)], now_ms=T0) == [1, 2]
        assert check.counts()["AAPL.US"] == {"tick_time_future": 1}

    def test_tick_time_far_in_the_past_is_reported_except_for_the_first_tick(self) -> None:
        check = TickCheck()
        day = 86_400_000
        assert run(check, [tick(1, T0 - day), tick(2, T0 - day + 1)], now_ms=T0) == [1, 2]
        assert check.counts()["AAPL.US"] == {"tick_time_past": 1}

    def test_without_a_receive_time_no_clock_check_is_made(self) -> None:
        check = TickCheck()
        assert run(check, [tick(1, 5), tick(2, 10**15)], now_ms=0) == [1, 2]
        assert check.counts() == {}

    def test_codes_are_independent_and_forget_drops_marks(self) -> None:
        check = TickCheck()
        assert run(check, [tick(3), tick(1, code="TSLA.US"), tick(3)]) == [3, 1]
        check.forget(["TSLA.US"])
        assert run(check, [tick(3)]) == [3]  # starts afresh
        assert "AAPL.US" not in check.counts()


ticks_st = st.lists(
    st.tuples(
        st.sampled_from(["A.US", "B.US"]),
        st.integers(0, 12),  # seq
        st.integers(0, 12),  # tick_time step
        st.sampled_from(["1.0", "1.0", "1.0", "0", "-1"]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ticks_st, st.booleans())
def test_every_tick_is_delivered_or_counted(
    ticks: list[tuple[str, int, int, str]], deliver_corrupt: bool
) -> None:
    check = TickCheck(deliver_corrupt=deliver_corrupt)
    delivered = 0
    for code, seq, t, price in ticks:
        delivered += check.check(tick(seq, T0 + t, price, code=code), 0)
    counts = check.counts()
    dropped = sum(c.get("duplicate", 0) + c.get("seq_backwards", 0) for c in counts.values())
    if not deliver_corrupt:
        dropped += sum(c.get("price_not_positive", 0) for c in counts.values())
    # A corrupt tick is only judged corrupt after its seq passed, so it is counted once as one or the other.
    assert delivered + dropped == len(ticks)
    # Reported once per (code, anomaly) at most, since no episode ends without a clock.
    reports = check.reports()
    assert len(reports) == len({(r.code, r.anomaly) for r in reports})
    assert all(r.anomaly is not Anomaly.DUPLICATE for r in reports)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), max_size=60))
def test_delivered_seqs_rise_except_at_a_reported_reset(ticks: list[tuple[int, int]]) -> None:
    check = TickCheck()
    last: tuple[int, int] | None = None
    resets = 0
    for seq, t in ticks:
        if check.check(tick(seq, T0 + t), 0):
            if last is not None and seq <= last[0]:
                assert seq < last[0], "a lower seq passed without being a reset"
                assert T0 + t >= last[1], "a lower seq passed without being a reset"
                resets += 1
            last = (seq, T0 + t)
        else:
            assert last is not None
            assert seq <= last[0]
    assert check.counts().get("AAPL.US", {}).get("seq_reset", 0) == resets


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["A.US", "A.US", "B.US", "C.US", "GHOST.US", ""]),
            st.integers(0, 4),  # seq: small, so that the next seq (the inline path) comes often
            st.integers(-1, 4),  # tick_time step
            st.sampled_from(["1.0", "1.0", "0.5", "0", "-1", "1e-3"]),
            st.sampled_from(["10", "", "-1", "-0"]),
        ),
        max_size=60,
    ),
    st.sampled_from([0, T0, T0 + 2 * 3_600_000, T0 - 120_000]),
    st.integers(1, 4),
    st.booleans(),
)
def test_sift_judges_as_the_whole_check_and_fans_out_in_order(
    ticks: list[tuple[str, int, int, str, str]], now_ms: int, split: int, sound: bool
) -> None:
    # sift judges the usual tick inline; record by record it must decide, count and report what the
    # whole check (TickCheck._check) decides, and hand each delivered record to every holder in order.
    # With sound=True (the caller vouches for every price and volume) only sound records are fed.
    shared = ("s1",)
    routes = {"A.US": shared, "B.US": ("s1", "s2"), "": shared, "C.US": ("s1",)}
    records = [tick(seq, T0 + t, price, volume, code) for code, seq, t, price, volume in ticks]
    if sound:
        records = [r for r in records if positive(r.price) and not negative(r.volume)]
    fast, slow = TickCheck(), TickCheck()
    got: dict[str, list[Tick | BookTick]] = {}
    ghosts = 0
    for at in range(0, len(records), split):  # batches of various sizes: marks carry over
        out, n = fast.sift(records[at : at + split], now_ms, routes, sound=sound)
        ghosts += n
        for name, recs in out.items():
            got.setdefault(name, []).extend(recs)
    want: dict[str, list[Tick]] = {}
    for rec in records:
        if rec.code == "GHOST.US":
            continue
        if slow._check(rec, now_ms):
            for name in routes[rec.code]:
                want.setdefault(name, []).append(rec)
    assert got == want
    assert ghosts == sum(1 for r in records if r.code == "GHOST.US")
    assert fast.counts() == slow.counts()
    assert fast.reports() == slow.reports()
    assert fast.last_seen_ms() == slow.last_seen_ms()
