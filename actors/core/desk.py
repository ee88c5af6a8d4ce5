"""The registry's desk: every subscription decision of the job, as events in and commands out. Pure.

The Registry actor (actors/registry.py) feeds it events (strategies' subscribe/unsubscribe, the
connections' up/down and vendor responses, decoders taking routes and answering tick ages, time) and
carries out the commands it returns (``commands()``), in order: send a request, set a decoder's
routes, open or close a connection, tell a holder, ask the decoders for tick ages, save the state,
log, count. ``next_wakeup(now)`` is when ``tick(now)`` has something to do.

Rules of this module:

1. A refused call changes nothing: validation (``check``) and the quota's trial fit come first, and
   both name each bad code with a reason.
2. Every change of holdings, refusals or connections is followed by a ``Save`` before the next
   command of that event, so the shell persists it before it answers the caller.
3. A connection asks the server for nothing while its decoder has not taken the latest routes (the
   first ticks of a new code would be dropped as ghosts); a later routes call supersedes an earlier.
4. A 600/604 quarantines the code (held nowhere any more, its holders told); a 603 is told once per
   holder for the desk's life (retrying cannot help until the configuration changes).
5. Tick ages are asked of every decoder at once; the round is judged when all answered, and given up
   (asked again ``DECODER_ANSWER_S`` later) when one failed or did not answer by then.
6. Time is a parameter (``now``, the shell's monotonic clock); the desk has no clock and no I/O.
   Trading sessions are read on the wall clock, ``now + wall_offset_s`` (actors.core.codeliveness).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import msgspec

from actors.core import wire
from actors.core.codeliveness import CodeHealth, CodeLiveness, fan_out
from actors.core.codes import Endpoint, endpoint_of
from actors.core.errors import FeedError, InvalidCode, QuotaExhausted, SubscriptionRefused, VendorError
from actors.core.growth import CLOSE_AFTER_S, Pool, PoolState, Quota, Slot
from actors.core.holdings import Holdings
from actors.core.naming import decoder_name
from actors.core.sessions import Session
from actors.core.subscriptions import Acknowledged, Kind, Quarantined, RateGate, Refused, SubscriptionBook

VENDOR_ERRORS_KEPT: Final = 20  # the last refusals shown in the status, with the connection that got each
CODE_EVENTS_KEPT: Final = 20  # the last per-code liveness events shown in the status
DECODER_ANSWER_S: Final = 2.0  # how long a liveness round waits for the decoders' tick ages
#: A decoder slower than this to take new routes is named in a warning (its connections' requests
#: wait for it however long it takes: asked for earlier, a new code's first ticks would be ghosts).
ROUTES_SLOW_S: Final = 2.0
KINDS: Final = (Kind.TRADES, Kind.BOOK)

Routes = dict[str, tuple[str, ...]]  # code -> the strategies that receive it


class RegistryState(msgspec.Struct):
    """What survives a registry restart."""

    holdings: dict[str, dict[str, int]] = {}  # trades: strategy -> code -> refcount
    book_holdings: dict[str, dict[str, int]] = {}  # order books, likewise
    refused: dict[str, str] = {}  # code -> the vendor's reason
    pool: PoolState | None = None  # the connections, the grown ones included


class ConnStatus(msgspec.Struct, frozen=True):
    """One connection's subscription state, as the registry sees it."""

    conn_id: str
    kind: str
    endpoint: str
    epoch: int
    up: bool
    desired: list[str]
    acknowledged: list[str]
    in_sync: bool
    requests_sent: int
    refusals: int
    last_ack_s: float  # seconds from the request to its acknowledgement, last time


class RegistryStatus(msgspec.Struct, frozen=True):
    """The registry's whole state for the status view: holders, unions, refusals and connections."""

    strategies: dict[str, dict[str, int]]
    book_strategies: dict[str, dict[str, int]]
    union: list[str]
    book_union: list[str]
    refused: dict[str, str]
    connections: list[ConnStatus]
    vendor_errors: list[str]
    in_sync: bool
    pid: int
    codes: dict[str, CodeHealth] = {}  # held trade codes: state ok/waiting/stale/never_started, and why
    code_events: list[str] = []  # the last liveness events, newest last
    # decoder name -> seconds it has not taken its latest routes, when over ROUTES_SLOW_S: its
    # connections' subscription requests wait for it.
    routes_awaited: dict[str, float] = {}


# --- commands: what the shell carries out, in order ---------------------------------------------------


class Send(msgspec.Struct, frozen=True):
    """Send ``payload`` (an encoded request) on socket ``epoch`` of ``conn_id`` (Connection.send)."""

    conn_id: str
    epoch: int
    payload: bytes


class SetRoutes(msgspec.Struct, frozen=True):
    """Give decoder ``decoder`` the routes; report its answer with ``routes_taken(decoder, call)``."""

    decoder: int
    trades: Routes
    books: Routes
    call: int


class Open(msgspec.Struct, frozen=True):
    """Have the supervisor create the connection of ``slot`` and its decoder (idempotent)."""

    slot: Slot


class Close(msgspec.Struct, frozen=True):
    """Have the supervisor kill connection ``conn_id`` and its decoder."""

    conn_id: str


class Announce(msgspec.Struct, frozen=True):
    """Ask connection ``conn_id`` to report its open socket (``connection_up``): a restarted desk resends."""

    conn_id: str


class Tell(msgspec.Struct, frozen=True):
    """Report ``error`` about ``code`` ("*": every code) to strategy ``holder`` (Strategy.problem)."""

    holder: str
    code: str
    error: FeedError | str


class TellHealth(msgspec.Struct, frozen=True):
    """One round's liveness reports to ``holder``, in order: (``stale``/``recovered``, code, silent_for_s)."""

    holder: str
    changes: list[tuple[str, str, float]]


class TellSession(msgspec.Struct, frozen=True):
    """One round's session changes to ``holder``, in order: (code, open, at wall-clock epoch seconds)
    for ``Strategy.on_session``.
    """

    holder: str
    changes: list[tuple[str, bool, float]]


class AskAges(msgspec.Struct, frozen=True):
    """Ask each decoder for its tick ages of ``watch``; answer with ``ages_answered(round, ...)``."""

    round: int
    decoders: tuple[int, ...]
    watch: tuple[str, ...]


class Save(msgspec.Struct, frozen=True):
    """Persist ``state`` (the shell's KV store) before answering the caller."""

    state: RegistryState


class Fail(msgspec.Struct, frozen=True):
    """Report to the supervisor that connection ``conn_id`` hit ``error`` it cannot retry (401)."""

    conn_id: str
    error: VendorError


class Log(msgspec.Struct, frozen=True):
    """A log line (``level`` as loguru names it), about connection ``conn`` when not empty."""

    level: str
    text: str
    conn: str = ""


class Count(msgspec.Struct, frozen=True):
    """Add one to metric counter ``name`` with ``labels``."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()


Command = (
    Send
    | SetRoutes
    | Open
    | Close
    | Announce
    | Tell
    | TellHealth
    | TellSession
    | AskAges
    | Save
    | Fail
    | Log
    | Count
)


class _Asked(msgspec.Struct):
    round: int
    waiting: set[int]
    answers: list[Mapping[str, float]]
    watch: frozenset[str]
    at: float


def kind_of(kind: str) -> Kind:
    """``kind`` as a Kind.

    Raises:
        SubscriptionRefused: neither "trades" nor "book".

    """
    try:
        return Kind(kind)
    except ValueError:
        raise SubscriptionRefused({"kind": f"{kind!r} is not 'trades' or 'book'"}) from None


class Desk:
    """The registry's decisions. Args beyond the obvious: ``connections`` are the start-up ones
    (pinned: never closed), each with decoder ``i`` in the order given; ``max_connections`` is the
    plan's connections per token and endpoint (0: no growth beyond the start-up ones); ``tokens`` are
    the tokens' labels and ``token_of`` the label of each start-up connection (default: the first);
    ``tag`` tells this incarnation's request traces apart (the shell's pid); ``sessions`` gives each
    code its trading session (None: always open), ``open_grace_s`` is per endpoint name like
    ``stale_after_s``, and ``wall_offset_s`` is the wall clock minus the shell's monotonic clock.
    """

    def __init__(
        self,
        connections: Mapping[str, list[str]],
        max_codes: int,
        *,
        state: RegistryState | None = None,
        now: float = 0.0,
        tag: str = "0",
        conn_gap_s: float | None = None,
        token_gap_s: float | None = None,
        request_timeout_s: float = 5.0,
        depth_level: int | None = None,
        plan: str = "",
        max_connections: int = 0,
        tokens: tuple[str, ...] = ("token",),
        token_of: Mapping[str, str] | None = None,
        close_after_s: float = CLOSE_AFTER_S,
        stale_after_s: Mapping[str, float] | float = 60.0,  # per endpoint name, or one for all
        open_grace_s: Mapping[str, float] | float = 120.0,  # per endpoint name, or one for all
        sessions: Callable[[str], Session] | None = None,
        wall_offset_s: float = 0.0,
    ) -> None:
        state = state or RegistryState()
        self._out: list[Command] = []
        self._endpoints = {Endpoint(e) for e in connections}
        self._tag = tag
        self._gate_args = {
            k: v for k, v in (("conn_gap_s", conn_gap_s), ("token_gap_s", token_gap_s)) if v is not None
        }
        self._request_timeout_s = request_timeout_s
        self._depth_level = depth_level
        # One gate per token and endpoint: the rate limits count every subscription request, whatever
        # its kind, across the connections of one token (PROTOCOL.md "Limits").
        self._gates: dict[tuple[str, Endpoint], RateGate] = {}
        self._books: dict[tuple[str, Kind], SubscriptionBook] = {}
        self._epochs: dict[str, int] = {}
        self._up: dict[str, bool] = {}
        self._ids: dict[str, wire.RequestIds] = {}
        self._vendor_errors: deque[tuple[str, VendorError]] = deque(maxlen=VENDOR_ERRORS_KEPT)
        self._last_ack_s: dict[tuple[str, Kind], float] = {}
        self._told_603: set[str] = set()
        self._liveness = self._code_liveness(stale_after_s, open_grace_s, sessions, wall_offset_s)
        self._liveness_due: float | None = None
        self._watch_sent: frozenset[str] = frozenset()
        self._code_events: deque[str] = deque(maxlen=CODE_EVENTS_KEPT)
        self._asked: _Asked | None = None
        self._rounds = 0
        self._dirty = False
        # decoder id -> (its latest routes call, when sent, warned): its connections ask for nothing
        # until it has taken them.
        self._routes_pending: dict[int, tuple[int, float, bool]] = {}
        self._calls = 0
        self._holdings = {
            Kind.TRADES: Holdings.from_snapshot(state.holdings),
            Kind.BOOK: Holdings.from_snapshot(state.book_holdings),
        }
        self._refused = dict(state.refused)
        token_of = dict(token_of or {})
        first = tokens[0]
        per_token = Counter((e, token_of.get(c, first)) for e, ids in connections.items() for c in ids)
        quota = Quota(
            plan or "configured",
            max(max_connections, *per_token.values(), 1),  # 0: the start-up connections, no growth
            max_codes,
            tuple(dict.fromkeys(tokens)),
        )
        if state.pool is not None:
            self._pool = Pool.restore(quota, state.pool, close_after_s=close_after_s)
        else:
            self._pool = Pool(quota, close_after_s=close_after_s)
        decoder = 0
        for endpoint, ids in connections.items():
            for conn_id in ids:
                slot = Slot(conn_id, Endpoint(endpoint), token_of.get(conn_id, first), decoder, True)
                decoder += 1
                if conn_id in self._pool.slots or state.pool is None:
                    self._pool.add(slot)  # a pinned one taken out with its token stays out
        for slot in self._pool.slots.values():
            self._add_books(slot)
            if not slot.pinned:
                self._out.append(Open(slot))  # a restarted desk: the Supervisor creates it unless it exists
        self._assignment: dict[Kind, dict[str, frozenset[str]]] = {kind: {} for kind in KINDS}
        self._unserved: dict[str, str] = {}  # held codes the quota has no room for now, and why
        self._reassign(now)
        # A restarted registry learns the open sockets and resends.
        self._out.extend(Announce(conn_id) for conn_id in self._pool.slots)
        if state.holdings or state.book_holdings:
            self._log("info", f"registry: restored {len(state.holdings)} strategies from the saved state")

    def _code_liveness(
        self,
        stale_after_s: Mapping[str, float] | float,
        open_grace_s: Mapping[str, float] | float,
        sessions: Callable[[str], Session] | None,
        wall_offset_s: float,
    ) -> CodeLiveness:
        """Per-code liveness: one value for every connection, or per endpoint (set per slot)."""
        single = isinstance(stale_after_s, int | float)
        self._stale_by_endpoint = {} if isinstance(stale_after_s, int | float) else dict(stale_after_s)
        self._grace_by_endpoint = {} if isinstance(open_grace_s, int | float) else dict(open_grace_s)
        return CodeLiveness(
            default_s=float(stale_after_s) if single else 60.0,  # type: ignore[arg-type]
            sessions=sessions,
            default_grace_s=float(open_grace_s) if isinstance(open_grace_s, int | float) else 120.0,
            wall_offset_s=wall_offset_s,
        )

    # --- outputs ----------------------------------------------------------------------------------

    def commands(self) -> list[Command]:
        """The commands since the last call, in the order the shell must carry them out."""
        out, self._out = self._out, []
        return out

    def state(self) -> RegistryState:
        """What a restarted desk needs (``RegistryState``)."""
        return RegistryState(
            self._holdings[Kind.TRADES].snapshot(),
            self._holdings[Kind.BOOK].snapshot(),
            dict(self._refused),
            self._pool.snapshot(),
        )

    def books(self) -> list[SubscriptionBook]:
        """Every connection's books (for the ``codes`` gauge)."""
        return list(self._books.values())

    @property
    def refused(self) -> dict[str, str]:
        """Codes the vendor refused, with its reason."""
        return dict(self._refused)

    def code_health(self, now: float) -> dict[str, CodeHealth]:
        """Each watched code's liveness."""
        return self._liveness.status(now)

    # --- strategies' calls ------------------------------------------------------------------------

    def check(self, codes: Iterable[str]) -> dict[str, str]:
        """The problems of ``codes`` (code -> why): foreign notation, endpoint not configured, refused."""
        problems: dict[str, str] = {}
        for code in codes:
            try:
                endpoint = endpoint_of(code)
            except InvalidCode as exc:
                problems[str(code)] = str(exc)
                continue
            if endpoint not in self._endpoints:
                problems[code] = f"its endpoint {endpoint.value!r} is not configured in [endpoints]"
            elif code in self._refused:
                problems[code] = f"the vendor refused it: {self._refused[code]}"
        return problems

    def subscribe(self, strategy: str, codes: Iterable[str], kind: str = "trades") -> dict[str, int]:
        """Hold ``codes`` for ``strategy``. Returns its holdings of that kind.

        Raises:
            SubscriptionRefused: empty list, bad kind or any bad code; nothing is changed.
            QuotaExhausted: some codes fit in no connection the plan and the live tokens allow.

        """
        book_kind = kind_of(kind)
        codes = [codes] if isinstance(codes, str) else list(codes)
        holdings = self._holdings[book_kind]
        problems = self.check(codes)
        if not codes or problems:
            raise SubscriptionRefused(problems)
        trial = self._pool.fit(
            {book_kind: holdings.union() | set(codes)},
            {book_kind: self._assignment[book_kind]},
            self._endpoints,
        )
        problems = {code: why for code, why in trial.refused.items() if code in codes}
        if problems:
            q = self._pool.quota
            live = len(self._pool.live_tokens)
            raise QuotaExhausted(problems, q.plan, q.connections_per_token, q.codes_per_connection, live)
        holdings.subscribe(strategy, codes)
        self._changed()
        return holdings.codes_of(strategy)

    def unsubscribe(self, strategy: str, codes: Iterable[str], kind: str = "trades") -> dict[str, int]:
        """Release one reference per code. Returns the strategy's holdings of that kind.

        Raises:
            SubscriptionRefused: empty list, or a code the strategy does not hold; nothing is changed.

        """
        book_kind = kind_of(kind)
        codes = [codes] if isinstance(codes, str) else list(codes)
        if not codes:
            raise SubscriptionRefused({})
        holdings = self._holdings[book_kind]
        holdings.unsubscribe(strategy, codes)
        self._changed()
        return holdings.codes_of(strategy)

    def drop_strategy(self, strategy: str) -> int:
        """Release everything ``strategy`` holds. Returns how many codes it held."""
        held = 0
        for holdings in self._holdings.values():
            held += len(holdings.codes_of(strategy))
            holdings.drop_strategy(strategy)
        self._changed()
        return held

    def holdings_of(self, strategy: str, kind: str = "trades") -> dict[str, int]:
        """The codes ``strategy`` holds, with counts."""
        return self._holdings[kind_of(kind)].codes_of(strategy)

    def holds_anything(self, strategy: str) -> bool:
        """Whether ``strategy`` holds any code of any kind."""
        return any(h.codes_of(strategy) for h in self._holdings.values())

    # --- connections' events ----------------------------------------------------------------------

    def connection_up(self, conn_id: str, epoch: int, now: float) -> None:
        """A new socket is open on ``conn_id``: resubscribe its whole sets (an older epoch is ignored)."""
        if conn_id not in self._epochs or epoch < self._epochs[conn_id]:
            return
        self._epochs[conn_id] = epoch
        self._up[conn_id] = True
        for kind in KINDS:
            self._books[conn_id, kind].connection_up()
        self._pump(now)

    def connection_down(self, conn_id: str, epoch: int, now: float, *, stopping: bool = False) -> None:
        """The socket of ``epoch`` is gone (``stopping``: a clean stop, so no holder is told stale)."""
        if conn_id not in self._epochs or epoch != self._epochs[conn_id]:
            return
        self._up[conn_id] = False
        for kind in KINDS:
            self._books[conn_id, kind].connection_down()
        if stopping:
            return
        self._liveness.connection_down(conn_id, now)  # every code of it is stale at once
        self._liveness_changed(now)

    def send_failed(self, conn_id: str) -> None:
        """The shell found no actor for ``conn_id``: its books hold nothing in flight."""
        for kind in KINDS:
            book = self._books.get((conn_id, kind))
            if book is not None:
                book.connection_down()

    def responses(self, conn_id: str, epoch: int, responses: Iterable[wire.AnyResponse], now: float) -> None:
        """Responses read on ``conn_id`` in ``epoch`` (another epoch's are ignored)."""
        if conn_id not in self._epochs or epoch != self._epochs[conn_id]:
            return
        books = [self._books[conn_id, kind] for kind in KINDS]
        for response in responses:
            if isinstance(response, wire.HeartbeatAck) and response.ok:
                continue
            if any(book.receive_response(response, now) for book in books):
                continue
            if not response.ok:
                self._vendor_error(conn_id, response.error())
        changed = False
        for book in books:
            changed |= self._book_events(conn_id, book)
        if changed:
            self._changed()
        self._pump(now)

    def token_refused(self, conn_id: str) -> tuple[str | None, int, list[str]]:
        """The server refused ``conn_id``'s token (401): take that token out of the pool.

        Returns (the token taken out, or None when ``conn_id`` counts no more; the live tokens left;
        the grown connections closed).
        """
        slot = self._pool.slots.get(conn_id)
        if slot is None:
            return None, len(self._pool.live_tokens), []
        gone = self._pool.take_out(slot.token)
        closed = []
        for dead in gone:
            self._drop_books(dead)
            for kind in KINDS:
                self._assignment[kind].pop(dead.conn_id, None)
            if not dead.pinned:
                closed.append(dead.conn_id)
        live = len(self._pool.live_tokens)
        self._log(
            "error",
            f"registry: token {slot.token} refused (401): taken out with {len(gone)} connection(s); "
            f"{live} token(s) left",
        )
        self._changed()  # saved; the next tick refits the union over the tokens left
        if live:
            self._out.extend(Close(conn) for conn in closed)
        return slot.token, live, closed

    def _vendor_error(self, conn_id: str, error: VendorError) -> None:
        self._vendor_errors.append((conn_id, error))
        self._log("error", f"registry: vendor error on {conn_id}: {error}", conn_id)
        if error.ret == 401:  # a token that expires mid-session (at connect, the Connection reports it)
            self._out.append(Fail(conn_id, error))

    def _book_events(self, conn_id: str, book: SubscriptionBook) -> bool:
        changed = False
        for event in book.events():
            if isinstance(event, Quarantined):
                error = event.error()
                self._refused[event.code] = str(error)  # saved as text: the state is JSON
                holders: set[str] = set()
                for holdings in self._holdings.values():
                    holders |= holdings.drop_code(event.code)
                changed = True
                self._out.append(Count("drops", (("reason", "quarantined"),)))
                self._log(
                    "error", f"registry: {event.code} refused by the vendor ({error}); told {sorted(holders)}"
                )
                self._tell(holders, event.code, error)
            elif isinstance(event, Refused):
                error = event.error()
                self._out.append(
                    Count("subscription_requests", (("connection", conn_id), ("code", str(error.ret))))
                )
                self._vendor_errors.append((conn_id, error))
                self._log("warning", f"registry: {conn_id} {book.kind} request refused: {error}", conn_id)
                if error.ret == 603:  # PROTOCOL.md: token level not enough
                    self._plan_refused(conn_id, book, event)
            elif isinstance(event, Acknowledged):
                self._out.append(Count("subscription_requests", (("connection", conn_id), ("code", "200"))))
                self._last_ack_s[conn_id, book.kind] = event.acknowledged_at - event.requested_at
                # Trades and order books alike: a code held only as a book is watched too.
                at = event.acknowledged_at
                self._liveness.acknowledged(conn_id, book.acknowledged, at, book.kind.value)
                self._liveness_changed(at)
        return changed

    def _plan_refused(self, conn_id: str, book: SubscriptionBook, event: Refused) -> None:
        # 603: the token's plan allows fewer codes than we asked for, so the configured plan is wrong.
        # Retrying cannot help until the configuration changes; every holder is told why once.
        error = event.error()
        self._log("error", f"registry: {error} ({len(event.codes)} {book.kind} codes asked on {conn_id})")
        holders: set[str] = set()
        for code in event.codes:
            holders |= self._holdings[book.kind].holders(code)
        self._tell(holders - self._told_603, "*", error)
        self._told_603 |= holders

    def _holders_of(self, code: str) -> set[str]:
        """The strategies that hold ``code``, as trades or as an order book."""
        return set().union(*(h.holders(code) for h in self._holdings.values()))

    def _tell(self, holders: Iterable[str], code: str, error: FeedError) -> None:
        self._out.extend(Tell(name, code, error) for name in sorted(holders))

    def _log(self, level: str, text: str, conn: str = "") -> None:
        self._out.append(Log(level, text, conn))

    # --- per-code liveness ------------------------------------------------------------------------

    def codes_ticked(self, ages: Mapping[str, float], now: float) -> None:
        """A decoder saw the first tick of watched codes, ``ages`` seconds ago."""
        for code, age in ages.items():
            self._liveness.ticked(code, now - age)
        self._liveness_changed(now)

    def ages_answered(
        self, round_: int, decoder: int, ages: Mapping[str, float] | None, now: float, why: str = ""
    ) -> None:
        """Decoder ``decoder``'s tick ages for round ``round_`` (None: it failed to answer, ``why``)."""
        asked = self._asked
        if asked is None or asked.round != round_ or decoder not in asked.waiting:
            return  # a round given up already
        if ages is None:
            self._log("warning", f"registry: liveness: a decoder failed to answer ({why}); asking again")
            self._asked = None
            self._liveness_due = now + DECODER_ANSWER_S
            return
        asked.waiting.discard(decoder)
        asked.answers.append(ages)
        if not asked.waiting:
            self._judge(asked, now)

    def _judge(self, asked: _Asked, now: float) -> None:
        self._asked = None
        self._watch_sent = asked.watch
        for table in asked.answers:
            for code, age in table.items():
                self._liveness.ticked(code, now - age)
        self._liveness.poll(now)
        self._liveness_changed(now)

    def _liveness_changed(self, now: float) -> None:
        """Tell the core's events; re-arm its timer (now, when the decoders must learn a new watch list)."""
        plan = fan_out(self._liveness.events(), self._holders_of)
        self._code_events.extend(plan.texts)
        self._out.extend(Log(level, f"registry: {line}") for level, line in plan.lines)
        for name in sorted(plan.told.keys() | plan.problems.keys()):
            self._out.extend(Tell(name, code, text) for code, text in plan.problems.get(name, ()))
            if name in plan.told:
                self._out.append(TellHealth(name, plan.told[name]))
        for name, changes in sorted(plan.sessions.items()):
            self._out.append(TellSession(name, changes))  # -> Strategy.on_session, in order
        self._out.extend(Count("session_mismatches", (("connection", c),)) for c in plan.mismatches)
        for conn_id, kind in sorted(plan.resend):
            book = self._books.get((conn_id, Kind(kind)))
            if book is not None:
                book.resend()
        if self._liveness.watched() != self._watch_sent:
            self._liveness_due = now
        else:
            self._liveness_due = self._liveness.next_wakeup()

    def _ask_ages(self, now: float) -> None:
        # Every decoder at once (and the watch list with it); the answers come as events, so a decoder
        # busy with a burst never holds up the subscription requests.
        self._rounds += 1
        decoders = tuple(sorted(self._decoder_ids()))
        watch = self._liveness.watched()
        self._liveness_due = None
        self._asked = _Asked(self._rounds, set(decoders), [], watch, now)
        self._out.append(AskAges(self._rounds, decoders, tuple(sorted(watch))))
        if not decoders:
            self._judge(self._asked, now)

    # --- decoders' routes -------------------------------------------------------------------------

    def decoder_started(self, decoder_id: int, now: float) -> None:
        """A decoder (re)started: give it the routes."""
        self._set_routes([decoder_id], now)

    def routes_taken(self, decoder_id: int, call: int, now: float) -> None:
        """Decoder ``decoder_id`` took (or failed to take: it is given them again when it restarts)
        the routes of ``call``; an earlier call's answer changes nothing.
        """
        pending = self._routes_pending.get(decoder_id)
        if pending is None or pending[0] != call:
            return
        del self._routes_pending[decoder_id]
        if now - pending[1] > ROUTES_SLOW_S:
            self._log(
                "info",
                f"registry: {decoder_name(decoder_id)} took the new routes after {now - pending[1]:.1f} s",
            )

    def _decoder_ids(self) -> set[int]:
        # Each connection's slot names its decoder, start-up and grown alike; the pool is saved with
        # the state, so a restarted desk still routes to every decoder.
        return {s.decoder for s in self._pool.slots.values()}

    def _set_routes(self, decoders: Iterable[int], now: float) -> None:
        self._calls += 1
        trades, books = self._holdings[Kind.TRADES].routes(), self._holdings[Kind.BOOK].routes()
        for i in decoders:
            self._routes_pending[i] = (self._calls, now, False)
            self._out.append(SetRoutes(i, trades, books, self._calls))

    def _held(self, now: float) -> set[str]:
        """The connections whose decoder is still taking its latest routes: they ask for nothing yet."""
        for i, (call, sent, warned) in list(self._routes_pending.items()):
            if not warned and now - sent > ROUTES_SLOW_S:
                self._routes_pending[i] = (call, sent, True)
                self._log(
                    "warning",
                    f"registry: {decoder_name(i)} has not taken new routes for {now - sent:.1f} s: its "
                    "connections' subscription requests wait for it",
                )
        if not self._routes_pending:
            return set()
        return {c for c, slot in self._pool.slots.items() if slot.decoder in self._routes_pending}

    # --- time -------------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Do what is due at ``now``: after changes, routes then the new assignment; idle connections
        closed; requests the rate limits allow; a liveness round asked or given up.
        """
        if self._dirty:
            self._dirty = False
            # The routes go out before the books want the codes; each decoder's connections ask for
            # them once it has taken them (_pump).
            self._set_routes(sorted(self._decoder_ids()), now)
            self._reassign(now)
        else:
            self._close_idle(now)
        self._pump(now)
        asked = self._asked
        if asked is not None:
            if now >= asked.at + DECODER_ANSWER_S:
                # A decoder restarting or far behind: ask again later; its codes are judged then.
                self._log(
                    "warning",
                    f"registry: liveness: {len(asked.waiting)} decoder(s) did not answer; asking again",
                )
                self._asked = None
                self._liveness_due = now + DECODER_ANSWER_S
        elif self._liveness_due is not None and now >= self._liveness_due:
            self._ask_ages(now)

    def next_wakeup(self, now: float) -> float | None:
        """The earliest time ``tick`` has something to do; None when nothing is due."""
        if self._dirty:
            return now
        held = self._held_ids()
        times = [
            t
            for (conn_id, _kind), book in self._books.items()
            if conn_id not in held and (t := book.next_wakeup(now)) is not None
        ]
        pool_at = self._pool.next_wakeup()
        if pool_at is not None:
            times.append(pool_at)
        if self._asked is not None:  # tick ages asked: judged by this deadline at the latest
            times.append(self._asked.at + DECODER_ANSWER_S)
        elif self._liveness_due is not None:
            times.append(self._liveness_due)
        times.extend(sent + ROUTES_SLOW_S for _c, sent, warned in self._routes_pending.values() if not warned)
        return min(times, default=None)

    def _held_ids(self) -> set[str]:
        return {c for c, slot in self._pool.slots.items() if slot.decoder in self._routes_pending}

    def _changed(self) -> None:
        # Saved at once (a registry killed right after a call returns must not lose it); routes,
        # assignment and requests follow at the next tick, once for a burst of calls.
        self._out.append(Save(self.state()))
        self._dirty = True

    def _add_books(self, slot: Slot) -> None:
        gate = self._gates.setdefault((slot.token, slot.endpoint), RateGate(**self._gate_args))
        for kind in KINDS:
            self._books[slot.conn_id, kind] = SubscriptionBook(
                slot.conn_id,
                kind,
                gate=gate,
                request_timeout_s=self._request_timeout_s,
                depth_level=self._depth_level if kind is Kind.BOOK else None,
            )
        self._epochs.setdefault(slot.conn_id, 0)
        self._up.setdefault(slot.conn_id, False)
        self._ids.setdefault(slot.conn_id, wire.RequestIds(f"reg-{slot.conn_id}-{self._tag}"))
        limit = self._stale_by_endpoint.get(slot.endpoint.value)
        grace = self._grace_by_endpoint.get(slot.endpoint.value)
        if limit is not None or grace is not None:
            # per-code liveness on the slot uses its endpoint's stale_after_s and open_grace_s
            self._liveness.set_limit(
                slot.conn_id, self._liveness.limit(slot.conn_id) if limit is None else limit, grace
            )

    def _drop_books(self, slot: Slot) -> None:
        for kind in KINDS:
            self._books.pop((slot.conn_id, kind), None)
        gate = self._gates.get((slot.token, slot.endpoint))
        if gate is not None:
            gate.forget(slot.conn_id)
        self._epochs.pop(slot.conn_id, None)
        self._up.pop(slot.conn_id, None)
        self._ids.pop(slot.conn_id, None)

    def _reassign(self, now: float) -> None:
        """The pool fits the union of every kind; new connections are opened, empty ones closed."""
        wanted = {kind: self._holdings[kind].union() for kind in KINDS}
        fit = self._pool.fit(wanted, self._assignment, self._endpoints)
        self._pool.commit(fit, now)
        for slot in fit.opened:
            self._log("info", f"registry: opening {slot.conn_id} on token {slot.token} (room for more codes)")
            self._add_books(slot)
            self._out.append(Open(slot))
        starved = {code: why for code, why in fit.refused.items() if code not in self._unserved}
        if starved:
            # Held codes that lost their room (a token taken out): their holders are told; they are
            # served again as soon as room comes back.
            self._log("error", f"registry: {len(starved)} held code(s) without room: {sorted(starved)}")
            for code, why in starved.items():
                self._tell(self._holders_of(code), code, FeedError(why))
        self._unserved = dict(fit.refused)
        for kind in KINDS:
            self._assignment[kind] = dict(fit.by_kind[kind])
            for conn_id in self._pool.slots:
                self._books[conn_id, kind].want(self._assignment[kind].get(conn_id, frozenset()))
        if fit.opened:
            self._out.append(Save(self.state()))
        self._close_idle(now)

    def _close_idle(self, now: float) -> None:
        closed = self._pool.to_close(now)
        for slot in closed:
            self._log(
                "info",
                f"registry: closing {slot.conn_id}: it held nothing for {self._pool.close_after_s:g} s",
            )
            self._drop_books(slot)
            for kind in KINDS:
                self._assignment[kind].pop(slot.conn_id, None)
            self._out.append(Close(slot.conn_id))
        if closed:
            self._out.append(Save(self.state()))

    def _pump(self, now: float) -> None:
        held = self._held(now)
        for (conn_id, _kind), book in self._books.items():
            if conn_id in held:
                continue  # its decoder is still taking the routes: the request waits
            request = book.request_to_send(now, self._ids[conn_id])
            if request is not None:
                self._out.append(Send(conn_id, self._epochs[conn_id], wire.encode(request)))

    # --- status -----------------------------------------------------------------------------------

    def status(self, now: float, pid: int) -> RegistryStatus:
        """Everything a status CLI shows about subscriptions."""
        conns = []
        for (c, kind), book in self._books.items():
            stats = book.statistics()
            conns.append(
                ConnStatus(
                    conn_id=c,
                    kind=kind.value,
                    endpoint=self._pool.slots[c].endpoint.value if c in self._pool.slots else "",
                    epoch=self._epochs[c],
                    up=self._up[c],
                    desired=sorted(book.target),
                    acknowledged=sorted(book.acknowledged),
                    in_sync=book.in_sync,
                    requests_sent=stats.requests_sent,
                    refusals=stats.refusals,
                    last_ack_s=self._last_ack_s.get((c, kind), -1.0),
                )
            )
        trades, books = self._holdings[Kind.TRADES], self._holdings[Kind.BOOK]
        return RegistryStatus(
            strategies=trades.snapshot(),
            book_strategies=books.snapshot(),
            union=sorted(trades.union()),
            book_union=sorted(books.union()),
            refused=dict(self._refused),
            connections=conns,
            vendor_errors=[f"{conn_id}: {error}" for conn_id, error in self._vendor_errors],
            in_sync=not self._dirty and all(c.in_sync for c in conns),
            pid=pid,
            codes=self._liveness.status(now),
            code_events=list(self._code_events),
            routes_awaited={
                decoder_name(i): round(now - sent, 1)
                for i, (_call, sent, _w) in sorted(self._routes_pending.items())
                if now - sent > ROUTES_SLOW_S
            },
        )
