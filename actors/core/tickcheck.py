"""The per-tick check: is each tick sound and in sequence? No I/O, no clock.

``TickCheck`` (the decoder, one call per tick, or ``sift`` per batch) sorts out corrupt ticks (a price
that is zero or negative, a negative volume, an empty code) and sequence anomalies (seq backwards, seq
reset, seq jump, tick_time backwards, tick_time far from the receive time). Every anomaly is counted
per code and kind, and reported once per episode through ``reports()``; none is dropped or passed
silently.
"""

# Rules of this module:
# 1. Time is a parameter: ``now_ms`` in ms since the epoch (the connection's receive time; 0 = unknown,
#    and then no clock-based check is made).
# 2. The sequence rule, per code and kind (trade seq and book seq are separate counters):
#      seq == last delivered                    the vendor's re-push of the latest tick after a
#                                               subscribe: a duplicate, dropped, counted, not reported;
#      seq <  last, tick_time >= last tick_time the vendor's counter was reset (a restarted server):
#                                               delivered, the mark starts again there, reported;
#      seq <  last, tick_time <  last tick_time a stale or out-of-order tick: dropped, reported;
#      seq >  last + 1                          a jump (ticks missed upstream): delivered, reported;
#      seq >  last, tick_time < last tick_time  tick_time backwards: delivered, reported.
# 3. A corrupt tick is delivered only with ``deliver_corrupt``; its seq still moves the mark (it was
#    sent, so the next tick is no jump).
# 4. An episode of one anomaly on one code is reported when it begins; it ends after
#    ``episode_quiet_s`` without that anomaly on that code. Counts go on regardless.

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import msgspec

from actors.core import normalise

EPISODE_QUIET_S: Final = 60.0  # an anomaly not seen for this long on a code ends its episode
FUTURE_LIMIT_MS: Final = 60_000  # a tick_time this far ahead of the receive time is clock trouble
PAST_LIMIT_MS: Final = 3_600_000  # ... or this far behind it (the first tick of a code is exempt: a re-push)


class Anomaly(enum.StrEnum):
    """What can be wrong with one tick."""

    PRICE_NOT_POSITIVE = "price_not_positive"  # corrupt
    NEGATIVE_VOLUME = "negative_volume"  # corrupt
    EMPTY_CODE = "empty_code"  # corrupt
    DUPLICATE = "duplicate"  # seq == last: the re-push after a subscribe; dropped, never reported
    SEQ_BACKWARDS = "seq_backwards"  # stale or out of order: dropped
    SEQ_RESET = "seq_reset"  # the vendor's counter restarted: delivered
    SEQ_JUMP = "seq_jump"  # delivered
    TIME_BACKWARDS = "tick_time_backwards"  # delivered
    TIME_FUTURE = "tick_time_future"  # delivered
    TIME_PAST = "tick_time_past"  # delivered


CORRUPT = frozenset({Anomaly.PRICE_NOT_POSITIVE, Anomaly.NEGATIVE_VOLUME, Anomaly.EMPTY_CODE})

_WHAT: Mapping[Anomaly, str] = {
    Anomaly.PRICE_NOT_POSITIVE: "corrupt tick: price {detail} is not positive; not delivered (set "
    "[feed] deliver_corrupt = true for instruments that trade at or below zero)",
    Anomaly.NEGATIVE_VOLUME: "corrupt tick: volume {detail} is negative; not delivered",
    Anomaly.EMPTY_CODE: "corrupt tick: empty code; not delivered",
    Anomaly.DUPLICATE: "duplicate tick: {detail}; dropped",
    Anomaly.SEQ_BACKWARDS: "out-of-order tick: {detail}; dropped",
    Anomaly.SEQ_RESET: "the vendor's seq restarted: {detail}; delivered, counting from there",
    Anomaly.SEQ_JUMP: "seq jump: {detail} (ticks missed upstream); delivered",
    Anomaly.TIME_BACKWARDS: "tick_time went backwards: {detail}; delivered",
    Anomaly.TIME_FUTURE: "tick_time far in the future: {detail}; delivered",
    Anomaly.TIME_PAST: "tick_time far in the past: {detail}; delivered",
}


class Report(msgspec.Struct, frozen=True):
    """The first anomaly of an episode, for the code's holders (``on_problem``) and the log."""

    code: str
    anomaly: Anomaly
    detail: str
    delivered: bool

    def __str__(self) -> str:
        return _WHAT[self.anomaly].format(detail=self.detail)


class _Marks:
    __slots__ = ("seen_ms", "seq", "time_ms")

    def __init__(self, seq: int, time_ms: int, seen_ms: int) -> None:
        self.seq = seq
        self.time_ms = time_ms
        self.seen_ms = seen_ms


_NONZERO_DIGITS = frozenset("123456789")


def positive(number: str) -> bool:
    """Whether a decimal string (wire's grammar: sign, digits, point, exponent) is above zero."""
    if number[:1] in _NONZERO_DIGITS:  # the common case, e.g. "189.23": no sign, leading digit not 0
        return True
    mantissa = number.partition("e")[0].partition("E")[0]
    return mantissa[:1] != "-" and mantissa.strip("0.") != ""


def negative(number: str) -> bool:
    """Whether a decimal string is below zero ("" and "-0" are not)."""
    if number[:1] != "-":
        return False
    mantissa = number.partition("e")[0].partition("E")[0]
    return mantissa[:1] == "-" and mantissa.strip("-0.") != ""


def already_seen(seq: int, tick_time: int, last: tuple[int, int] | None) -> bool:
    """Rule 2 for a guard that keeps only ``last`` = (seq, tick_time) of the last record it passed:
    True for a duplicate (same seq) or an older record (lower seq and older tick_time); a lower seq
    with a tick_time that moved on is a reset of the vendor's counter and passes.
    """
    if last is None:
        return False
    return seq == last[0] or (seq < last[0] and tick_time < last[1])


class TickCheck:
    """The per-tick quality check of one kind (trades or order books) on one decoder.

    Args:
        deliver_corrupt: deliver corrupt ticks too (they are still counted and reported).
        episode_quiet_s: an anomaly not seen for this long on a code ends its episode.
        future_limit_ms / past_limit_ms: how far tick_time may be from the receive time.

    """

    def __init__(
        self,
        *,
        deliver_corrupt: bool = False,
        episode_quiet_s: float = EPISODE_QUIET_S,
        future_limit_ms: int = FUTURE_LIMIT_MS,
        past_limit_ms: int = PAST_LIMIT_MS,
    ) -> None:
        self._deliver_corrupt = deliver_corrupt
        self._quiet_ms = int(episode_quiet_s * 1000)
        self._future_ms = future_limit_ms
        self._past_ms = past_limit_ms
        self._marks: dict[str, _Marks] = {}
        self._counts: dict[str, dict[Anomaly, int]] = {}
        self._totals: dict[Anomaly, int] = {}  # never forgotten
        self._episode_ends: dict[tuple[str, Anomaly], int] = {}
        self._reports: list[Report] = []

    def check(self, rec: normalise.Tick | normalise.BookTick, now_ms: int) -> bool:
        """Judge one tick (or book snapshot) received at ``now_ms``; True = deliver it.

        Everything not plainly good is counted, and the first of an episode queued in ``reports()``.
        """
        return bool(self.sift((rec,), now_ms, {rec.code: ("",)})[0])

    def sift(
        self,
        records: Iterable[normalise.Tick | normalise.BookTick],
        now_ms: int,
        routes: Mapping[str, Sequence[str]],
        *,
        sound: bool = False,
    ) -> tuple[dict[str, list[normalise.Tick | normalise.BookTick]], int]:
        """Judge every record (as ``check``) and hand each delivered one to every name ``routes`` gives
        for its code, in arrival order: returns the records per name, and how many were ghosts (a code
        ``routes`` does not name, neither judged nor marked; an empty code is judged: corrupt).

        One pass, the decoder's hot loop: the usual tick (the next seq, time not going back nor far
        from now, a price with a leading non-zero digit and no minus sign on the volume) is judged
        inline, anything else by the whole check. ``sound``: the caller vouches that every record is a
        ``Tick`` whose price is above zero and whose volume is not negative (``DecodedBatch.sound``),
        so the inline judgement skips those; the whole check still looks at everything.
        """
        out: dict[str, list[normalise.Tick | normalise.BookTick]] = {}
        ghosts = 0
        marks_of, full, tick, nonzero = self._marks.get, self._check, normalise.Tick, _NONZERO_DIGITS
        low, high = (
            (now_ms - self._past_ms, now_ms + self._future_ms) if now_ms > 0 else (0, normalise.UINT64_MAX)
        )
        # The buckets of the last targets seen: codes held by the same strategies share one tuple
        # (Router.set_routes), so a run of them costs one identity test a record.
        last_targets: Sequence[str] | None = None
        buckets: list[list[normalise.Tick | normalise.BookTick]] = []
        for rec in records:
            code = rec.code
            targets = routes.get(code)
            if targets is None and code:
                ghosts += 1
                continue
            marks = marks_of(code)
            if (
                marks is not None
                and (seq := rec.seq) == marks.seq + 1
                and marks.time_ms <= (ms := rec.tick_time) <= high
                and low <= ms
                and (
                    sound
                    or (
                        type(rec) is tick
                        and (rec.price[:1] in nonzero or positive(rec.price))
                        and not rec.volume.startswith("-")
                    )
                )
            ):
                marks.seq = seq
                marks.time_ms = ms
                marks.seen_ms = now_ms
            elif not full(rec, now_ms):
                continue
            if targets is last_targets:
                for bucket in buckets:
                    bucket.append(rec)
            elif targets:
                buckets = []
                for name in targets:
                    held = out.get(name)
                    if held is None:
                        held = out[name] = []
                    held.append(rec)
                    buckets.append(held)
                last_targets = targets
        return out, ghosts

    def _check(self, rec: normalise.Tick | normalise.BookTick, now_ms: int) -> bool:  # noqa: C901, PLR0912 - the checks of PROTOCOL.md, one after the other, in order
        code = rec.code
        if not code:
            self._note(code, Anomaly.EMPTY_CODE, "", now_ms, delivered=False)
            return False
        seq = rec.seq
        tick_ms = rec.tick_time
        marks = self._marks.get(code)
        skewed = False
        if now_ms > 0:
            if tick_ms - now_ms > self._future_ms:
                skewed = True
                self._note(code, Anomaly.TIME_FUTURE, _skew(tick_ms, now_ms), now_ms, delivered=True)
            elif now_ms - tick_ms > self._past_ms and marks is not None:
                skewed = True
                self._note(code, Anomaly.TIME_PAST, _skew(tick_ms, now_ms), now_ms, delivered=True)
        if marks is None:
            # A first tick from the future must not be the mark either: the receive time stands in.
            self._marks[code] = _Marks(seq, now_ms if skewed else tick_ms, now_ms)
        else:
            marks.seen_ms = now_ms
            last = marks.seq
            if seq == last:
                self._count(code, Anomaly.DUPLICATE)
                return False
            if seq < last:
                if tick_ms < marks.time_ms:
                    detail = f"seq {seq} after {last}, tick_time {tick_ms} before {marks.time_ms}"
                    self._note(code, Anomaly.SEQ_BACKWARDS, detail, now_ms, delivered=False)
                    return False
                self._note(code, Anomaly.SEQ_RESET, f"seq {seq} after {last}", now_ms, delivered=True)
            else:
                if seq > last + 1:
                    self._note(code, Anomaly.SEQ_JUMP, f"seq {seq} after {last}", now_ms, delivered=True)
                if tick_ms < marks.time_ms:
                    detail = f"{tick_ms} after {marks.time_ms} (seq {seq})"
                    self._note(code, Anomaly.TIME_BACKWARDS, detail, now_ms, delivered=True)
            marks.seq = seq
            if not skewed:
                # A skewed clock must not become the mark the next ticks are judged against.
                marks.time_ms = tick_ms
        return self._sound(rec, now_ms)

    def _sound(self, rec: normalise.Tick | normalise.BookTick, now_ms: int) -> bool:
        if isinstance(rec, normalise.Tick):
            price, volume = rec.price, rec.volume
        else:
            levels = rec.bids + rec.asks
            price = next((p for p, _ in levels if not positive(p)), "1")
            volume = next((v for _, v in levels if negative(v)), "")
        anomaly = None
        if not positive(price):
            anomaly, detail = Anomaly.PRICE_NOT_POSITIVE, price
        elif negative(volume):
            anomaly, detail = Anomaly.NEGATIVE_VOLUME, volume
        if anomaly is None:
            return True
        self._note(rec.code, anomaly, detail, now_ms, delivered=self._deliver_corrupt)
        return self._deliver_corrupt

    def _count(self, code: str, anomaly: Anomaly) -> None:
        counts = self._counts.get(code)
        if counts is None:
            counts = self._counts[code] = {}
        counts[anomaly] = counts.get(anomaly, 0) + 1
        self._totals[anomaly] = self._totals.get(anomaly, 0) + 1

    def _note(self, code: str, anomaly: Anomaly, detail: str, now_ms: int, *, delivered: bool) -> None:
        self._count(code, anomaly)
        key = (code, anomaly)
        ends = self._episode_ends.get(key)
        self._episode_ends[key] = now_ms + self._quiet_ms
        # now_ms 0 (unknown): an episode never ends, so it is reported once.
        if ends is None or (now_ms > 0 and now_ms >= ends):
            self._reports.append(Report(code, anomaly, detail, delivered))

    # --- outputs ----------------------------------------------------------------------------------

    def reports(self) -> list[Report]:
        """The episodes begun since the last call (drained)."""
        out, self._reports = self._reports, []
        return out

    def counts(self) -> dict[str, dict[str, int]]:
        """Anomalies counted so far: code -> anomaly -> count."""
        return {code: {a.value: n for a, n in c.items()} for code, c in self._counts.items()}

    def totals(self) -> dict[str, int]:
        """Anomalies counted since the start, over every code ever held: anomaly -> count."""
        return {a.value: n for a, n in self._totals.items()}

    def last_seen_ms(self) -> dict[str, int]:
        """The receive time of each code's last tick (dropped ones count too)."""
        return {code: m.seen_ms for code, m in self._marks.items()}

    def forget(self, keep: Iterable[str] | Mapping[str, object]) -> None:
        """Forget the marks, counts and episodes of codes not in ``keep`` (nobody holds them any more):
        a later subscribe starts afresh, and nothing piles up with every code ever held.
        """
        keep = keep if isinstance(keep, Mapping) else set(keep)
        for table in (self._marks, self._counts):
            for gone in [c for c in table if c not in keep]:
                del table[gone]
        for key in [k for k in self._episode_ends if k[0] not in keep]:
            del self._episode_ends[key]


def _skew(tick_ms: int, now_ms: int) -> str:
    ahead = (tick_ms - now_ms) / 1000
    side = "ahead of" if ahead > 0 else "behind"
    return f"tick_time {tick_ms} is {abs(ahead):.0f} s {side} the receive time"
