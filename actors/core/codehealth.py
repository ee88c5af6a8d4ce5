"""Per-code health: is each tick sound, and is each held code alive? No I/O, no clock.

Two cores, each fed by the shell that sees its events:

* ``TickCheck`` (the decoder, one call per tick): sorts out corrupt ticks (a price that is zero or
  negative, a negative volume, an empty code) and sequence anomalies (seq backwards, seq reset, seq
  jump, tick_time backwards, tick_time far from the receive time). Every anomaly is counted per code
  and kind, and reported once per episode through ``reports()``; none is dropped or passed silently.
* ``CodeLiveness`` (the registry, which knows holders and acknowledged subscriptions): per held code
  the state ``ok``, ``waiting`` (acknowledged, no tick yet), ``stale`` or ``never_started``, the
  events to send to its holders, and ``next_wakeup()`` for the shell's one timer. A code counts as
  held when it is acknowledged as trades (22004), as an order book (22002) or both; a push of either
  kind is its sign of life.
"""

# Rules of this module:
# 1. Time is a parameter: ``now`` in seconds (CodeLiveness, the caller's monotonic clock) or
#    ``now_ms`` in ms since the epoch (TickCheck, the connection's receive time; 0 = unknown, and then
#    no clock-based check is made).
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
# 5. A code leaves ``ok`` only by time (quiet) or by its connection (dead); it comes back to ``ok``
#    only by a tick. A code that never ticked is resubscribed once, then reported ``never_started``.

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import msgspec

from actors.core import normalise

EPISODE_QUIET_S = 60.0  # an anomaly not seen for this long on a code ends its episode
FUTURE_LIMIT_MS = 60_000  # a tick_time this far ahead of the receive time is clock trouble
PAST_LIMIT_MS = 3_600_000  # ... or this far behind it (the first tick of a code is exempt: a re-push)


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
    ) -> tuple[dict[str, list[normalise.Tick | normalise.BookTick]], int]:
        """Judge every record (as ``check``) and hand each delivered one to every name ``routes`` gives
        for its code, in arrival order: returns the records per name, and how many were ghosts (a code
        ``routes`` does not name, neither judged nor marked; an empty code is judged: corrupt).

        One pass, the decoder's hot loop: the usual tick (the next seq, time not going back nor far
        from now, a price with a leading non-zero digit and no minus sign on the volume) is judged
        inline, anything else by the whole check.
        """
        out: dict[str, list[normalise.Tick | normalise.BookTick]] = {}
        ghosts = 0
        marks_of, full, tick, nonzero = self._marks.get, self._check, normalise.Tick, _NONZERO_DIGITS
        low, high = (
            (now_ms - self._past_ms, now_ms + self._future_ms) if now_ms > 0 else (0, normalise.UINT64_MAX)
        )
        for rec in records:
            code = rec.code
            targets = routes.get(code)
            if targets is None and code:
                ghosts += 1
                continue
            marks = marks_of(code)
            if (
                marks is not None
                and type(rec) is tick
                and (seq := rec.seq) == marks.seq + 1
                and marks.time_ms <= (ms := rec.tick_time) <= high
                and low <= ms
                and (rec.price[:1] in nonzero or positive(rec.price))
                and not rec.volume.startswith("-")
            ):
                marks.seq = seq
                marks.time_ms = ms
                marks.seen_ms = now_ms
            elif not full(rec, now_ms):
                continue
            if targets:
                for name in targets:
                    bucket = out.get(name)
                    if bucket is None:
                        out[name] = [rec]
                    else:
                        bucket.append(rec)
        return out, ghosts

    def _check(self, rec: normalise.Tick | normalise.BookTick, now_ms: int) -> bool:
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


# --- per-code liveness ------------------------------------------------------------------------------


class CodeState(enum.StrEnum):
    """Where a held (acknowledged) code stands."""

    WAITING = "waiting"  # acknowledged, no tick yet, within stale_after_s
    OK = "ok"
    STALE = "stale"
    NEVER_STARTED = "never_started"


class Reason(enum.StrEnum):
    """Why a code is not ``ok``: the three cases status, events and logs keep apart."""

    NONE = ""
    CONNECTION = "connection"  # the whole socket dropped or went silent
    QUIET = "quiet"  # the socket is alive, this code is silent
    NEVER_STARTED = "never_started"  # no first tick, also after one resubscribe


class Stale(msgspec.Struct, frozen=True):
    """Tell the holders ``on_stale(code, silent_for_s)``."""

    code: str
    connection: str
    silent_for_s: float
    reason: Reason

    def __str__(self) -> str:
        if self.reason is Reason.CONNECTION:
            return (
                f"{self.code} stale: its connection {self.connection} is dead "
                f"({self.silent_for_s:.1f} s since its last tick)"
            )
        return (
            f"{self.code} quiet: no tick for {self.silent_for_s:.1f} s "
            f"while its connection {self.connection} is alive"
        )


class Recovered(msgspec.Struct, frozen=True):
    """Tell the holders ``on_recovered(code, silent_for_s)``."""

    code: str
    connection: str
    silent_for_s: float

    def __str__(self) -> str:
        return f"{self.code} recovered on {self.connection} after {self.silent_for_s:.1f} s without ticks"


class Resubscribe(msgspec.Struct, frozen=True):
    """Send the connection's whole set of ``kind`` ("trades" or "book") again (once per code that never
    started; one event per connection and kind that carries the code).
    """

    code: str
    connection: str
    kind: str = "trades"


class NeverStarted(msgspec.Struct, frozen=True):
    """Tell the holders ``on_problem``: the code got no first tick, also after one resubscribe."""

    code: str
    connection: str
    waited_s: float

    def __str__(self) -> str:
        return (
            f"{self.code} never started: no tick within {self.waited_s:.1f} s of its acknowledged "
            f"subscription on {self.connection}, also after one resubscribe; the vendor silently ignores "
            "codes beyond the plan's per-connection limit, so check feed.plan and "
            "feed.max_codes_per_connection against the real plan"
        )


LivenessEvent = Stale | Recovered | Resubscribe | NeverStarted


class CodeHealth(msgspec.Struct, frozen=True):
    """One code as the status shows it; ``last_tick_age_s`` is -1 before its first tick."""

    state: str
    reason: str
    connection: str
    last_tick_age_s: float


class _Code:
    __slots__ = (
        "bad_since",
        "carriers",
        "conn",
        "last_tick",
        "reason",
        "resubscribed",
        "since",
        "state",
        "told",
        "wait_from",
    )

    def __init__(self, conn: str, since: float, carriers: set[tuple[str, str]] | None = None) -> None:
        self.conn = conn  # its home: the connection carrying its trades, else its order book
        self.carriers = carriers if carriers is not None else {(conn, "trades")}  # (connection, kind)
        self.since = since  # acknowledged at
        self.wait_from = since  # the never-started clock: from the acknowledgement, then the resubscribe
        self.last_tick: float | None = None
        self.state = CodeState.WAITING
        self.reason = Reason.NONE
        self.resubscribed = False
        self.bad_since = 0.0  # when it left ok: only a tick after that brings it back
        self.told = False  # its holders were told it is stale or never started, and not yet recovered

    def leave(self, state: CodeState, reason: Reason, now: float) -> None:
        self.state, self.reason, self.bad_since, self.told = state, reason, now, True


class CodeLiveness:
    """Per held code: ok, waiting, stale or never started.

    Args:
        stale_after_s: per connection id, the seconds without a tick after which a code is stale
            (0 disables the check on that connection); a connection not listed uses ``default_s``.
        default_s: see above.

    """

    def __init__(self, stale_after_s: Mapping[str, float] | None = None, *, default_s: float = 60.0) -> None:
        self._after = dict(stale_after_s or {})
        self._default = default_s
        self._codes: dict[str, _Code] = {}
        self._events: list[LivenessEvent] = []

    def _limit(self, conn: str) -> float:
        return self._after.get(conn, self._default)

    def set_limit(self, conn: str, stale_after_s: float) -> None:
        """``conn``'s own ``stale_after_s`` (a connection opened while running)."""
        self._after[conn] = stale_after_s

    # --- inputs -----------------------------------------------------------------------------------

    def acknowledged(self, conn: str, codes: Iterable[str], now: float, kind: str = "trades") -> None:
        """``codes`` is now the whole acknowledged set of ``kind`` ("trades" or "book") on ``conn``.

        A code new here starts ``waiting``; a code no longer acknowledged in any kind anywhere is
        forgotten (nobody holds it). A code whose home connection changes (it moved) is acknowledged
        afresh there. A known code keeps its state.
        """
        codes = set(codes)
        carrier = (conn, kind)
        for code in [c for c, s in self._codes.items() if carrier in s.carriers and c not in codes]:
            s = self._codes[code]
            s.carriers.discard(carrier)
            if not s.carriers:
                del self._codes[code]
            elif (home := _home(s.carriers, s.conn)) != s.conn:
                self._codes[code] = _Code(home, now, s.carriers)
        for code in codes:
            state = self._codes.get(code)
            if state is None:
                self._codes[code] = _Code(conn, now, {carrier})
                continue
            state.carriers.add(carrier)
            home = _home(state.carriers, state.conn)
            if home != state.conn:
                self._codes[code] = _Code(home, now, state.carriers)
            elif (
                conn == home
                and state.state is CodeState.STALE
                and state.reason is Reason.CONNECTION
                and state.last_tick is None
            ):
                # Its connection died before its first tick: on the new socket it waits again, so a
                # code the server ignores is still found out (its holders already know it is stale).
                state.state, state.reason, state.wait_from = CodeState.WAITING, Reason.NONE, now

    def connection_down(self, conn: str, now: float) -> None:
        """The socket of ``conn`` dropped or was declared silent: all its codes are stale at once."""
        for code, s in self._codes.items():
            if not any(c == conn for c, _ in s.carriers):
                continue
            if s.state is CodeState.STALE and s.reason is Reason.QUIET:
                # Quiet first, then the whole socket was found dead: its holders know already.
                s.reason = Reason.CONNECTION
            elif s.state in (CodeState.OK, CodeState.WAITING):
                told = s.told
                s.leave(CodeState.STALE, Reason.CONNECTION, now)
                if not told:  # a waiting code whose connection died again was told already
                    self._events.append(Stale(code, conn, _silent(s, now), Reason.CONNECTION))

    def ticked(self, code: str, at: float) -> None:
        """``code`` had a tick or an order-book push at ``at`` (the caller's clock). Codes not held are
        ignored.

        A stale or never-started code recovers only by a tick after it left ``ok``: the shell learns
        tick times late, and a tick from before its connection died proves nothing.
        """
        s = self._codes.get(code)
        if s is None or (s.last_tick is not None and at <= s.last_tick):
            return
        if s.told:
            if at <= s.bad_since:
                s.last_tick = at
                return
            s.told = False
            self._events.append(Recovered(code, s.conn, _silent(s, at)))
        s.last_tick = at
        s.state, s.reason = CodeState.OK, Reason.NONE

    def poll(self, now: float) -> None:
        """Move codes whose time ran out; the events come out of ``events()``."""
        for code, s in self._codes.items():
            limit = self._limit(s.conn)
            if limit <= 0:
                continue
            if s.state is CodeState.OK and s.last_tick is not None and now - s.last_tick >= limit:
                s.leave(CodeState.STALE, Reason.QUIET, now)
                self._events.append(Stale(code, s.conn, now - s.last_tick, Reason.QUIET))
            elif s.state is CodeState.WAITING and now - s.wait_from >= limit:
                if not s.resubscribed:
                    # Once: a lost 22004, or a server that dropped it, deserves one more try.
                    s.resubscribed = True
                    s.wait_from = now
                    for conn, kind in sorted(s.carriers, key=_carrier_order):
                        self._events.append(Resubscribe(code, conn, kind))
                else:
                    s.leave(CodeState.NEVER_STARTED, Reason.NEVER_STARTED, now)
                    self._events.append(NeverStarted(code, s.conn, now - s.since))
                    # (A code told stale when its connection died before its first tick gets this too:
                    # a different fact, told once.)

    # --- outputs ----------------------------------------------------------------------------------

    def events(self) -> list[LivenessEvent]:
        """The events since the last call (drained)."""
        out, self._events = self._events, []
        return out

    def next_wakeup(self) -> float | None:
        """When ``poll`` may next move a code; None when no clock runs (nothing ok or waiting)."""
        due: float | None = None
        for s in self._codes.values():
            limit = self._limit(s.conn)
            if limit <= 0:
                continue
            if s.state is CodeState.OK and s.last_tick is not None:
                at = s.last_tick + limit
            elif s.state is CodeState.WAITING:
                at = s.wait_from + limit
            else:
                continue
            if due is None or at < due:
                due = at
        return due

    def watched(self) -> frozenset[str]:
        """The codes whose next tick is news (stale or never started): the decoders report those at once."""
        return frozenset(
            c for c, s in self._codes.items() if s.state in (CodeState.STALE, CodeState.NEVER_STARTED)
        )

    def codes(self) -> frozenset[str]:
        """Every code watched on some connection."""
        return frozenset(self._codes)

    def status(self, now: float) -> dict[str, CodeHealth]:
        """Each held code's state, reason, connection and age of its last tick."""
        return {
            code: CodeHealth(
                s.state.value,
                s.reason.value,
                s.conn,
                -1.0 if s.last_tick is None else round(now - s.last_tick, 3),
            )
            for code, s in self._codes.items()
        }


def _carrier_order(carrier: tuple[str, str]) -> tuple[bool, str]:
    return carrier[1] != "trades", carrier[0]


def _home(carriers: set[tuple[str, str]], current: str) -> str:
    """A code's home connection: one carrying its trades, else one carrying its order book; the
    current one while it still qualifies (a code moving between connections is briefly on both).
    """
    trades = sorted(c for c, k in carriers if k == "trades")
    candidates = trades or sorted(c for c, _ in carriers)
    return current if current in candidates else candidates[0]


def _silent(s: _Code, now: float) -> float:
    return max(0.0, now - (s.last_tick if s.last_tick is not None else s.since))


#: Per round of events, the lines logged one per event; the rest are summed up in one line.
LOG_EVENTS_EACH: Final = 20


class Fanout(msgspec.Struct):
    """What one round of liveness events asks of the registry's shell (``fan_out``)."""

    resend: set[tuple[str, str]]  # (connection, kind) whose whole set goes again
    told: dict[str, list[tuple[str, str, float]]]  # holder -> [("stale"|"recovered", code, silent_for_s)]
    problems: dict[str, list[tuple[str, str]]]  # holder -> [(code, text)] for on_problem
    texts: list[str]  # every event in words, in order (the registry keeps the latest for status)
    lines: list[tuple[str, str]]  # (level, line) to log: the first LOG_EVENTS_EACH events, then a sum


def fan_out(events: Iterable[LivenessEvent], holders_of: Callable[[str], Iterable[str]]) -> Fanout:
    """Group one round of events by holder, so the shell makes one call per holder, not per code
    and holder (a connection of 3,000 codes that dies is 3,000 events), and logs a bounded number
    of lines per round. Order is kept within each holder's list.

    ``holders_of(code)``: the strategies holding ``code`` now, either kind.
    """
    out = Fanout(set(), {}, {}, [], [])
    more: dict[str, int] = {}
    for event in events:
        if isinstance(event, Resubscribe):
            out.resend.add((event.connection, event.kind))
            what = "tick" if event.kind == "trades" else "order book"
            text = f"{event.code} got no first {what} on {event.connection}: resubscribing it once"
            _note(out, more, "warning", text, "", "resubscribed")
            continue
        text = str(event)
        holders = sorted(set(holders_of(event.code)))
        told = f"; told {holders}"
        if isinstance(event, NeverStarted):
            _note(out, more, "error", text, told, "never started")
            for name in holders:
                out.problems.setdefault(name, []).append((event.code, text))
            continue
        kind = "stale" if isinstance(event, Stale) else "recovered"
        _note(out, more, "warning" if kind == "stale" else "info", text, told, kind)
        for name in holders:
            out.told.setdefault(name, []).append((kind, event.code, event.silent_for_s))
    if more:
        counts = ", ".join(f"{n} {what}" for what, n in more.items())
        out.lines.append(
            (
                "warning",
                f"and {sum(more.values())} more code events this round ({counts}); "
                "`supervisor.py status` lists every code's state",
            )
        )
    return out


def _note(out: Fanout, more: dict[str, int], level: str, text: str, told: str, what: str) -> None:
    out.texts.append(text)
    if len(out.lines) < LOG_EVENTS_EACH:
        out.lines.append((level, text + told))
    else:
        more[what] = more.get(what, 0) + 1
