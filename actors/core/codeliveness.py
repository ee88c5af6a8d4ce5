"""Per-code liveness: is each held code ticking, when its market is open? No I/O, no clock.

``CodeLiveness`` (the registry, which knows holders and acknowledged subscriptions) keeps per held code
the state ``ok``, ``waiting`` (acknowledged or just opened, no tick yet), ``stale``, ``never_started`` or
``closed`` (its trading session is closed: a quiet market, not a dead feed), the events to send to its
holders, and ``next_wakeup()`` for the shell's one timer. A code counts as held when it is acknowledged
as trades (22004), as an order book (22002) or both; a push of either kind is its sign of life.
``fan_out`` groups one round of events by holder for the shell.
"""

# Rules of this module:
# 1. Time is a parameter: every ``now`` and ``at`` is the caller's monotonic clock, in seconds. Sessions
#    are wall-clock things: the core reads them at ``now + wall_offset_s`` (the shell hands in
#    ``time.time() - time.monotonic()``), and the ``at`` of a ``SessionChanged`` is wall-clock epoch
#    seconds, the session's own boundary.
# 2. A code leaves ``ok`` only by time (quiet) or by its connection (dead); it comes back to ``ok``
#    only by a tick. A code that never ticked is resubscribed once, then reported ``never_started``.
# 3. While a code's session is closed it is ``closed``: never ``stale`` or ``never_started``, and a dead
#    connection does not make it stale. At the open it waits ``stale_after_s + open_grace_s`` for a tick
#    before it is stale (it ticked in an earlier session) or resubscribed and never started (it never did).
# 4. A tick while the session says closed (pre-market, a wrong calendar) makes the code ``ok`` as any
#    tick does; the mismatch is counted once per closed episode (``TickWhileClosed``). An ``ok`` code in a
#    closed session that goes quiet for ``stale_after_s`` is ``closed`` again, without an event.

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import msgspec

from actors.core.sessions import ALWAYS, Always, Session


class CodeState(enum.StrEnum):
    """Where a held (acknowledged) code stands."""

    WAITING = "waiting"  # acknowledged, no tick yet, within stale_after_s
    OK = "ok"
    STALE = "stale"
    NEVER_STARTED = "never_started"
    CLOSED = "closed"  # its trading session is closed


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


class SessionChanged(msgspec.Struct, frozen=True):
    """Tell the holders ``on_session(code, open, at)``: the code's session ``session`` opened or closed at
    ``at`` (wall-clock epoch seconds).
    """

    code: str
    connection: str
    open: bool
    at: float
    session: str


class TickWhileClosed(msgspec.Struct, frozen=True):
    """A tick came while the code's session says closed (counted once per closed episode; delivered)."""

    code: str
    connection: str
    session: str

    def __str__(self) -> str:
        return (
            f"{self.code} ticked while its session {self.session} is closed (pre-market, or a calendar "
            "that is wrong): delivered as usual; check feed.sessions if it keeps happening"
        )


LivenessEvent = Stale | Recovered | Resubscribe | NeverStarted | SessionChanged | TickWhileClosed


class CodeHealth(msgspec.Struct, frozen=True):
    """One code as the status shows it; ``last_tick_age_s`` is -1 before its first tick. ``session`` is
    the spec its session was resolved from; ``opens_at`` (wall-clock epoch seconds) is when a closed
    session next opens (None while open, or when it never opens again as far as its calendar knows).
    """

    state: str
    reason: str
    connection: str
    last_tick_age_s: float
    session: str = ALWAYS
    opens_at: float | None = None


_ALWAYS: Final = Always()


class _Code:
    __slots__ = (
        "bad_since",
        "carriers",
        "change_at",
        "closed",
        "closed_since",
        "conn",
        "last_tick",
        "mismatch",
        "quiet_from",
        "reason",
        "resubscribed",
        "session",
        "since",
        "state",
        "told",
        "wait_from",
    )

    def __init__(
        self,
        conn: str,
        since: float,
        carriers: set[tuple[str, str]] | None = None,
        session: Session | None = None,
    ) -> None:
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
        self.session: Session = session if session is not None else _ALWAYS
        self.closed = False  # its session is closed (as of the last look at it)
        self.closed_since = since  # the caller's clock: when it was found closed
        self.change_at: float | None = None  # wall clock: when its session next opens or closes
        self.quiet_from = since  # the quiet clock runs from max(last_tick, quiet_from): the open + grace
        self.mismatch = False  # a tick came in this closed episode (counted once)

    def leave(self, state: CodeState, reason: Reason, now: float) -> None:
        self.state, self.reason, self.bad_since, self.told = state, reason, now, True


class CodeLiveness:
    """Per held code: ok, waiting, stale or never started.

    Args:
        stale_after_s: per connection id, the seconds without a tick after which a code is stale
            (0 disables the check on that connection); a connection not listed uses ``default_s``.
        default_s: see above.
        sessions: code -> its trading session (``core.sessions.SessionTable.session_of``); None: every
            code's market is always open.
        open_grace_s: per connection id, the seconds a code gets at its session's open on top of
            ``stale_after_s``; a connection not listed uses ``default_grace_s``.
        default_grace_s: see above.
        wall_offset_s: wall-clock epoch seconds minus the caller's monotonic clock (rule 1).

    """

    def __init__(
        self,
        stale_after_s: Mapping[str, float] | None = None,
        *,
        default_s: float = 60.0,
        sessions: Callable[[str], Session] | None = None,
        open_grace_s: Mapping[str, float] | None = None,
        default_grace_s: float = 120.0,
        wall_offset_s: float = 0.0,
    ) -> None:
        self._after = dict(stale_after_s or {})
        self._default = default_s
        self._grace = dict(open_grace_s or {})
        self._default_grace = default_grace_s
        self._sessions = sessions
        self._offset = wall_offset_s
        self._codes: dict[str, _Code] = {}
        self._events: list[LivenessEvent] = []
        self.mismatches = 0  # ticks in a closed session, once per code and closed episode

    def _limit(self, conn: str) -> float:
        return self._after.get(conn, self._default)

    def limit(self, conn: str) -> float:
        """``conn``'s ``stale_after_s``."""
        return self._limit(conn)

    def set_limit(self, conn: str, stale_after_s: float, open_grace_s: float | None = None) -> None:
        """``conn``'s own ``stale_after_s`` and ``open_grace_s`` (a connection opened while running)."""
        self._after[conn] = stale_after_s
        if open_grace_s is not None:
            self._grace[conn] = open_grace_s

    # --- sessions ---------------------------------------------------------------------------------

    def _new(self, code: str, conn: str, now: float, carriers: set[tuple[str, str]]) -> _Code:
        """A code acknowledged afresh: ``waiting``, or ``closed`` when its session is."""
        session = self._sessions(code) if self._sessions is not None else None
        s = _Code(conn, now, carriers, session)
        wall = now + self._offset
        if not s.session.is_open(wall):
            s.closed, s.state = True, CodeState.CLOSED
        s.change_at = s.session.next_change(wall)
        return s

    def _sessions_due(self, now: float) -> None:
        """Open or close the codes whose session changed by ``now`` (rule 3)."""
        wall = now + self._offset
        for code, s in self._codes.items():
            if s.change_at is None or wall < s.change_at:
                continue
            boundary = s.change_at
            is_open = s.session.is_open(wall)
            s.change_at = s.session.next_change(wall)
            if is_open == (not s.closed):
                continue  # it closed and opened again between two looks: nothing to say
            s.closed = not is_open
            self._events.append(SessionChanged(code, s.conn, is_open, boundary, s.session.name))
            at = boundary - self._offset
            if s.closed:
                s.mismatch, s.closed_since = False, at
                s.state, s.reason = CodeState.CLOSED, Reason.NONE
                continue
            # The open: stale_after_s + open_grace_s from the boundary for a first tick.
            opened = at
            s.quiet_from = opened + self._grace.get(s.conn, self._default_grace)
            if s.state is CodeState.CLOSED:
                s.state, s.reason = CodeState.WAITING, Reason.NONE
                s.wait_from, s.resubscribed = s.quiet_from, False

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
                self._codes[code] = self._new(code, home, now, s.carriers)
        for code in codes:
            state = self._codes.get(code)
            if state is None:
                self._codes[code] = self._new(code, conn, now, {carrier})
                continue
            state.carriers.add(carrier)
            home = _home(state.carriers, state.conn)
            if home != state.conn:
                self._codes[code] = self._new(code, home, now, state.carriers)
            elif (
                conn == home
                and state.state is CodeState.STALE
                and state.reason is Reason.CONNECTION
                and state.last_tick is None
            ):
                # Its connection died before its first tick: on the new socket it waits again, so a
                # code the server ignores is still found out (its holders already know it is stale).
                state.state, state.reason, state.wait_from = CodeState.WAITING, Reason.NONE, now
                if state.closed:
                    state.state = CodeState.CLOSED

    def connection_down(self, conn: str, now: float) -> None:
        """The socket of ``conn`` dropped or was declared silent: all its codes are stale at once, but
        for those whose session is closed (rule 3).
        """
        self._sessions_due(now)
        for code, s in self._codes.items():
            if not any(c == conn for c, _ in s.carriers):
                continue
            if s.closed:
                if s.state is CodeState.OK:
                    s.state = CodeState.CLOSED
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
        if s.closed and at <= s.closed_since:
            # A tick from before the close, learnt late: no mismatch, and the code stays closed.
            if s.told and at > s.bad_since:
                s.told = False
                self._events.append(Recovered(code, s.conn, _silent(s, at)))
            s.last_tick = at
            return
        if s.closed and not s.mismatch:
            s.mismatch = True
            self.mismatches += 1
            self._events.append(TickWhileClosed(code, s.conn, s.session.name))
        if s.told:
            if at <= s.bad_since:
                s.last_tick = at
                return
            s.told = False
            self._events.append(Recovered(code, s.conn, _silent(s, at)))
        s.last_tick = at
        s.state, s.reason = CodeState.OK, Reason.NONE

    def poll(self, now: float) -> None:
        """Open and close sessions, move codes whose time ran out; the events come out of ``events()``."""
        self._sessions_due(now)
        for code, s in self._codes.items():
            limit = self._limit(s.conn)
            if limit <= 0:
                continue
            if s.state is CodeState.OK and s.last_tick is not None and now - s.last_tick >= limit:
                self._quiet(code, s, s.last_tick, now, limit)
            elif s.state is CodeState.WAITING and now - s.wait_from >= limit:
                if s.last_tick is not None:
                    self._quiet(code, s, s.last_tick, now, limit)
                elif not s.resubscribed:
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

    def _quiet(self, code: str, s: _Code, last_tick: float, now: float, limit: float) -> None:
        """``code`` had no tick for ``limit``: closed again (rule 4), or stale, told once per episode."""
        if s.closed:
            s.state = CodeState.CLOSED  # a closed market gone quiet again
        elif now - max(last_tick, s.quiet_from) >= limit:
            told = s.told  # quiet since an earlier session, when its holders know it already
            s.leave(CodeState.STALE, Reason.QUIET, now)
            if not told:
                self._events.append(Stale(code, s.conn, now - last_tick, Reason.QUIET))

    # --- outputs ----------------------------------------------------------------------------------

    def events(self) -> list[LivenessEvent]:
        """The events since the last call (drained)."""
        out, self._events = self._events, []
        return out

    def next_wakeup(self) -> float | None:
        """When ``poll`` may next move a code or a session opens or closes (on the caller's monotonic
        clock); None when no clock runs (nothing ok or waiting, no session to change).
        """
        due: float | None = None
        for s in self._codes.values():
            if s.change_at is not None and (due is None or s.change_at - self._offset < due):
                due = s.change_at - self._offset
            limit = self._limit(s.conn)
            if limit <= 0:
                continue
            if s.state is CodeState.OK and s.last_tick is not None:
                at = s.last_tick + limit if s.closed else max(s.last_tick, s.quiet_from) + limit
            elif s.state is CodeState.WAITING:
                at = s.wait_from + limit
            else:
                continue
            if due is None or at < due:
                due = at
        return due

    def watched(self) -> frozenset[str]:
        """The codes whose next tick is news (stale, never started, or closed): the decoders report those
        at once.
        """
        return frozenset(
            c
            for c, s in self._codes.items()
            if s.state in (CodeState.STALE, CodeState.NEVER_STARTED, CodeState.CLOSED)
        )

    def codes(self) -> frozenset[str]:
        """Every code watched on some connection."""
        return frozenset(self._codes)

    def status(self, now: float) -> dict[str, CodeHealth]:
        """Each held code's state, reason, connection, age of its last tick and session."""
        return {
            code: CodeHealth(
                s.state.value,
                s.reason.value,
                s.conn,
                -1.0 if s.last_tick is None else round(now - s.last_tick, 3),
                s.session.name,
                s.change_at if s.closed else None,
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
    sessions: dict[str, list[tuple[str, bool, float]]] = {}  # holder -> [(code, open, at)] for on_session
    mismatches: list[str] = []  # the connection of each tick while closed (TickWhileClosed)


def fan_out(events: Iterable[LivenessEvent], holders_of: Callable[[str], Iterable[str]]) -> Fanout:
    """Group one round of events by holder, so the shell makes one call per holder, not per code
    and holder (a connection of 3,000 codes that dies is 3,000 events), and logs a bounded number
    of lines per round. Order is kept within each holder's list.

    ``holders_of(code)``: the strategies holding ``code`` now, either kind.
    """
    out = Fanout(set(), {}, {}, [], [], {}, [])
    more: dict[str, int] = {}
    # Sessions open and close for many codes at once: one line per session, change and round.
    changed: dict[tuple[str, bool, float], int] = {}
    for event in events:
        if isinstance(event, SessionChanged | TickWhileClosed):
            _session_event(out, more, changed, event, holders_of)
            continue
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
    for (session, is_open, at), n in changed.items():
        when = dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds")
        text = f"session {session} {'opened' if is_open else 'closed'} at {when}: {n} held code(s)"
        _note(out, more, "info", text, "", "session changes")
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


def _session_event(
    out: Fanout,
    more: dict[str, int],
    changed: dict[tuple[str, bool, float], int],
    event: SessionChanged | TickWhileClosed,
    holders_of: Callable[[str], Iterable[str]],
) -> None:
    if isinstance(event, TickWhileClosed):
        out.mismatches.append(event.connection)
        _note(out, more, "info", str(event), "", "ticked while closed")
        return
    key = (event.session, event.open, event.at)
    changed[key] = changed.get(key, 0) + 1
    for name in sorted(set(holders_of(event.code))):
        out.sessions.setdefault(name, []).append((event.code, event.open, event.at))


def _note(out: Fanout, more: dict[str, int], level: str, text: str, told: str, what: str) -> None:  # noqa: PLR0917 - private
    out.texts.append(text)
    if len(out.lines) < LOG_EVENTS_EACH:
        out.lines.append((level, text + told))
    else:
        more[what] = more.get(what, 0) + 1
