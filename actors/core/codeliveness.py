"""Per-code liveness: is each held code ticking? No I/O, no clock.

``CodeLiveness`` (the registry, which knows holders and acknowledged subscriptions) keeps per held code
the state ``ok``, ``waiting`` (acknowledged, no tick yet), ``stale`` or ``never_started``, the events
to send to its holders, and ``next_wakeup()`` for the shell's one timer. A code counts as held when it
is acknowledged as trades (22004), as an order book (22002) or both; a push of either kind is its sign
of life. ``fan_out`` groups one round of events by holder for the shell.
"""

# Rules of this module:
# 1. Time is a parameter: ``now`` in seconds, the caller's monotonic clock.
# 2. A code leaves ``ok`` only by time (quiet) or by its connection (dead); it comes back to ``ok``
#    only by a tick. A code that never ticked is resubscribed once, then reported ``never_started``.

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import msgspec


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
                (
                    f"and {sum(more.values())} more code events this round ({counts}); "
                    "`supervisor.py status` lists every code's state"
                ),
            )
        )
    return out


def _note(out: Fanout, more: dict[str, int], level: str, text: str, told: str, what: str) -> None:  # noqa: PLR0917 - private
    out.texts.append(text)
    if len(out.lines) < LOG_EVENTS_EACH:
        out.lines.append((level, text + told))
    else:
        more[what] = more.get(what, 0) + 1
