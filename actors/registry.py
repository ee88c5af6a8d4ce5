"""The Registry actor: the one serialization point for subscribe/unsubscribe. A thin sync shell.

It validates every call (empty lists, codes in a foreign notation, codes the vendor already refused,
codes whose endpoint is not configured, codes beyond the plan's quota), keeps per-strategy refcounts
(actors.core.holdings), spreads the union over the connections (actors.core.growth.Pool, pure: it also
decides when another connection is needed and when an empty one is closed), and keeps one
SubscriptionBook per connection and kind (trades 22004, order book 22002; PROTOCOL.md limits each kind
separately) that decides which full-set request to send and when. Connections the pool opens or closes
at runtime are created and killed by the Supervisor (``open_connection``/``close_connection``), which
supervises them like the configured ones. One timer thread sleeps until the cores' next wake-up (a
book's request allowed by the rate limits, an empty connection's grace period over) or until a call
changed something; every change is made under one lock, so the registry stays a single
serialization point.

It also drives per-code liveness (actors.core.codeliveness.CodeLiveness): every acknowledged code, trades
or order book (a book push is that code's sign of life), is watched; its timer thread wakes at the
core's next wake-up, asks the decoders for the age of each code's last tick or book
(``Decoder.tick_ages``), and tells the holders of a code that went quiet or whose
connection died (``Strategy.on_stale``), and when its ticks return (``on_recovered``; the decoders
report the first tick of a watched code at once, ``codes_ticked``). A code with no first tick is
resubscribed once, then reported to its holders as never started (``on_problem``).

Its state (holdings and the codes the vendor refused) is saved to Ray's internal KV store after every
change and read back in ``__init__``: a registry restarted by Ray, SIGKILL included, loses no
subscription. It does not know which requests the server acknowledged before it died, so it marks every
connection as holding nothing and sends each whole set again (harmless: 22004 replaces the set).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from typing import Any

import msgspec
import ray
from ray.experimental import internal_kv

from actors import metrics
from actors.core import wire
from actors.core.codeliveness import CodeHealth, CodeLiveness, LivenessEvent, fan_out
from actors.core.codes import Endpoint, endpoint_of
from actors.core.errors import FeedError, InvalidCode, QuotaExhausted, SubscriptionRefused, VendorError
from actors.core.growth import CLOSE_AFTER_S, Pool, PoolState, Quota, Slot
from actors.core.holdings import Holdings
from actors.core.naming import REGISTRY, connection_name, decoder_name, strategy_name
from actors.core.subscriptions import Acknowledged, Kind, Quarantined, RateGate, Refused, SubscriptionBook
from actors.handles import NamedActors
from actors.log import about, logger

VENDOR_ERRORS_KEPT = 20  # the last refusals shown in the status, with the connection that got each
#: The timer's longest sleep when no core has anything due (it is woken on changes); it also bounds
#: how old the ``codes`` gauge and this process's metric counts may get (actors.metrics).
IDLE_WAKEUP_S = 5.0
CODE_EVENTS_KEPT = 20  # the last per-code liveness events shown in the status
DECODER_ANSWER_S = 2.0  # how long a liveness round waits for the decoders' tick ages
#: A decoder slower than this to take new routes is named in a warning (its connections' requests
#: wait for it however long it takes: asked for earlier, a new code's first ticks would be ghosts).
ROUTES_SLOW_S = 2.0


class RegistryState(msgspec.Struct):
    """What survives a registry restart."""

    holdings: dict[str, dict[str, int]] = {}  # trades: strategy -> code -> refcount
    book_holdings: dict[str, dict[str, int]] = {}  # order books, likewise
    refused: dict[str, str] = {}  # code -> the vendor's reason
    pool: PoolState | None = None  # the connections, the grown ones included


class ConnStatus(msgspec.Struct, frozen=True):
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


KINDS = (Kind.TRADES, Kind.BOOK)


class Registry:
    """Wrapped with ``ray.remote`` by the supervisor; run as a sync actor (max_concurrency 1)."""

    def __init__(
        self,
        connections: Mapping[str, list[str]],
        max_codes: int,
        namespace: str,
        state_key: str,
        *,
        supervisor: Any = None,
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
    ) -> None:
        """Args beyond the obvious: ``connections`` are the start-up ones (pinned: never closed), each
        with decoder ``i`` in the order given; ``max_connections`` is the plan's connections per token
        and endpoint (0: no growth beyond the start-up ones); ``tokens`` are the tokens' labels (their
        environment variables' NAMES) and ``token_of`` the label of each start-up connection (default:
        the first).
        """
        self._lock = threading.RLock()
        self._endpoints = {Endpoint(e) for e in connections}
        self._max_codes = max_codes
        self._state_key = state_key.encode()
        self._supervisor = supervisor
        self._gate_args: dict[str, float] = {}
        if conn_gap_s is not None:
            self._gate_args["conn_gap_s"] = conn_gap_s
        if token_gap_s is not None:
            self._gate_args["token_gap_s"] = token_gap_s
        self._request_timeout_s = request_timeout_s
        self._depth_level = depth_level
        # One gate per token and endpoint: the rate limits count every subscription request, whatever
        # its kind, across the connections of one token (PROTOCOL.md "Limits").
        self._gates: dict[tuple[str, Endpoint], RateGate] = {}
        self._books: dict[tuple[str, Kind], SubscriptionBook] = {}
        self._epochs: dict[str, int] = {}
        self._up: dict[str, bool] = {}
        self._ids: dict[str, wire.RequestIds] = {}
        self._actors = NamedActors(namespace)
        self._vendor_errors: deque[tuple[str, VendorError]] = deque(maxlen=VENDOR_ERRORS_KEPT)
        self._last_ack_s: dict[tuple[str, Kind], float] = {}
        self._told_603: set[str] = set()
        self._stale_by_endpoint = {} if isinstance(stale_after_s, int | float) else dict(stale_after_s)
        default = float(stale_after_s) if isinstance(stale_after_s, int | float) else 60.0
        self._liveness = CodeLiveness(default_s=default)  # each connection's own limit: _watch_liveness
        self._liveness_due: float | None = None  # the timer, armed from the core's next wake-up
        self._watch_sent: frozenset[str] = frozenset()
        self._code_events: deque[str] = deque(maxlen=CODE_EVENTS_KEPT)
        self._asked: tuple[list[Any], frozenset[str], float] | None = None  # tick ages asked, unanswered
        state = self._load()
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
            self._watch_liveness(slot)
            if not slot.pinned:
                self._open(slot)  # a restarted registry: the Supervisor creates it unless it exists
        self._assignment: dict[Kind, dict[str, frozenset[str]]] = {kind: {} for kind in KINDS}
        self._unserved: dict[str, str] = {}  # held codes the quota has no room for now, and why
        self._reassign(time.monotonic())
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._dirty = False
        # decoder id -> (its latest set_routes call, when sent, warned): its connections ask the server
        # for nothing until it has taken them.
        self._routes_pending: dict[int, tuple[Future[Any], float, bool]] = {}
        self._routes_version = 0  # the last version sent (_next_version)
        self._thread = threading.Thread(target=self._timer_loop, name="registry-timer", daemon=True)
        self._thread.start()
        for conn_id in self._pool.slots:
            handle = self._conn(conn_id)
            if handle is not None:
                handle.announce.remote()  # a restarted registry learns the open sockets and resends
        if supervisor is not None:
            supervisor.child_started.remote(REGISTRY, os.getpid())
        if state.holdings or state.book_holdings:
            logger.info("registry: restored {} strategies from the saved state", len(state.holdings))

    # --- persistence ------------------------------------------------------------------------------

    def _load(self) -> RegistryState:
        raw = internal_kv._internal_kv_get(self._state_key)  # noqa: SLF001 - Ray's cluster KV store
        if not raw:
            return RegistryState()
        return msgspec.json.decode(raw, type=RegistryState)

    def _save(self) -> None:
        state = RegistryState(
            self._holdings[Kind.TRADES].snapshot(),
            self._holdings[Kind.BOOK].snapshot(),
            self._refused,
            self._pool.snapshot(),
        )
        internal_kv._internal_kv_put(self._state_key, msgspec.json.encode(state), overwrite=True)  # noqa: SLF001

    # --- strategies' calls ------------------------------------------------------------------------

    def subscribe(self, strategy: str, codes: Iterable[str], kind: str = "trades") -> dict[str, int]:
        """Hold ``codes`` for ``strategy`` (``kind`` "trades" or "book"). Returns its holdings of that kind.

        A subscribe beyond the room of today's connections gets new ones while the plan allows (the
        Supervisor opens them; the codes flow once they are up).

        Raises:
            SubscriptionRefused: empty list or any bad code; nothing is changed.
            QuotaExhausted: some codes fit in no connection the plan and the live tokens allow; each
                is named with the plan and its limits; nothing is changed.

        """
        book_kind = _kind(kind)
        codes = [codes] if isinstance(codes, str) else list(codes)
        with self._lock:
            holdings = self._holdings[book_kind]
            problems = self._check(codes)
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
        book_kind = _kind(kind)
        codes = [codes] if isinstance(codes, str) else list(codes)
        with self._lock:
            if not codes:
                raise SubscriptionRefused({})
            holdings = self._holdings[book_kind]
            holdings.unsubscribe(strategy, codes)
            self._changed()
            return holdings.codes_of(strategy)

    def drop_strategy(self, strategy: str) -> int:
        """Release everything ``strategy`` holds (it is being removed). Returns how many codes it held."""
        with self._lock:
            held = 0
            for holdings in self._holdings.values():
                held += len(holdings.codes_of(strategy))
                holdings.drop_strategy(strategy)
            self._changed()
            return held

    def holdings_of(self, strategy: str, kind: str = "trades") -> dict[str, int]:
        """The codes ``strategy`` holds, with counts."""
        with self._lock:
            return self._holdings[_kind(kind)].codes_of(strategy)

    def holds_anything(self, strategy: str) -> bool:
        """Whether ``strategy`` holds any code of any kind (a restarted strategy must not resubscribe)."""
        with self._lock:
            return any(h.codes_of(strategy) for h in self._holdings.values())

    def _check(self, codes: list[str]) -> dict[str, str]:
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

    # --- connections' events ----------------------------------------------------------------------

    def connection_up(self, conn_id: str, epoch: int) -> None:
        """A new socket is open on ``conn_id``: resubscribe its whole sets."""
        with self._lock:
            if conn_id not in self._epochs or epoch < self._epochs[conn_id]:
                return
            self._epochs[conn_id] = epoch
            self._up[conn_id] = True
            for kind in KINDS:
                self._books[conn_id, kind].connection_up()
            self._pump(time.monotonic())
            self._wake.set()  # the timer re-arms: a request may now be due sooner

    def connection_down(self, conn_id: str, epoch: int, stopping: bool = False) -> None:
        """The socket of ``epoch`` is gone (``stopping``: closed by the connection's clean stop, so its
        codes' holders are not told they went stale: the job is stopping, it is not a dead feed).
        """
        with self._lock:
            if conn_id in self._epochs and epoch == self._epochs[conn_id]:
                self._up[conn_id] = False
                for kind in KINDS:
                    self._books[conn_id, kind].connection_down()
                if stopping:
                    return
                now = time.monotonic()
                self._liveness.connection_down(conn_id, now)  # every code of it is stale at once
                self._liveness_changed(now)

    def on_responses(self, conn_id: str, epoch: int, responses: list[Any]) -> None:
        """Responses read on ``conn_id`` (forwarded by its decoder)."""
        with self._lock:
            if conn_id not in self._epochs or epoch != self._epochs[conn_id]:
                return
            now = time.monotonic()
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
                changed |= self._handle_events(conn_id, book)
            if changed:
                self._changed()
            self._pump(now)
            self._wake.set()  # the timer re-arms from the books' new wake-ups

    def token_refused(self, conn_id: str) -> tuple[str | None, int, list[str]]:
        """The server refused ``conn_id``'s token (401): take that token out of the pool.

        Its connections count no more (their books are dropped; the grown ones are closed by the
        Supervisor) and the next fit moves their codes to the other tokens' room, opening connections
        there while their quota allows. Returns (the token taken out, or None when ``conn_id`` counts no
        more; the live tokens left; the grown connections closed).
        """
        with self._lock:
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
            logger.error(
                "registry: token {} refused (401): taken out with {} connection(s); {} token(s) left",
                slot.token,
                len(gone),
                live,
            )
            self._changed()  # saved; the timer refits the union over the tokens left
            if self._supervisor is not None and live:
                for conn in closed:
                    self._supervisor.close_connection.remote(conn)
            return slot.token, live, closed

    def _vendor_error(self, conn_id: str, error: VendorError) -> None:
        self._vendor_errors.append((conn_id, error))
        about(conn_id).error("registry: vendor error on {}: {}", conn_id, error)
        if error.ret == 401 and self._supervisor is not None:
            # A token that expires mid-session; at connect the Connection itself reports a 401.
            self._supervisor.child_failed.remote(connection_name(conn_id), error)

    def _handle_events(self, conn_id: str, book: SubscriptionBook) -> bool:
        changed = False
        for event in book.events():
            if isinstance(event, Quarantined):
                error = event.error()
                self._refused[event.code] = str(error)  # saved as text: the state is JSON
                holders: set[str] = set()
                for holdings in self._holdings.values():
                    holders |= holdings.drop_code(event.code)
                changed = True
                metrics.count("drops", reason="quarantined")
                logger.error(
                    "registry: {} refused by the vendor ({}); told {}", event.code, error, sorted(holders)
                )
                self._tell(holders, event.code, error)
            elif isinstance(event, Refused):
                error = event.error()
                metrics.count("subscription_requests", connection=conn_id, code=str(error.ret))
                self._vendor_errors.append((conn_id, error))
                about(conn_id).warning("registry: {} {} request refused: {}", conn_id, book.kind, error)
                if error.ret == 603:
                    self._plan_refused(conn_id, book, event)
            elif isinstance(event, Acknowledged):
                metrics.count("subscription_requests", connection=conn_id, code="200")
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
        logger.error("registry: {} ({} {} codes asked on {})", error, len(event.codes), book.kind, conn_id)
        holders: set[str] = set()
        for code in event.codes:
            holders |= self._holdings[book.kind].holders(code)
        self._tell(holders - self._told_603, "*", error)
        self._told_603 |= holders

    def _holders_of(self, code: str) -> set[str]:
        """The strategies that hold ``code``, as trades or as an order book."""
        return set().union(*(h.holders(code) for h in self._holdings.values()))

    def _tell(self, holders: Iterable[str], code: str, error: FeedError) -> None:
        """Report ``error`` about ``code`` ("*": every code) to the strategies ``holders``."""
        for name in holders:
            handle = self._strategy(name)
            if handle is not None:
                handle.problem.remote(code, error)  # -> Strategy.on_problem(code, reason)

    # --- per-code liveness ------------------------------------------------------------------------

    def codes_ticked(self, ages: Mapping[str, float]) -> None:
        """A decoder saw the first tick of watched codes (stale or never started), ``ages`` seconds ago."""
        with self._lock:
            now = time.monotonic()
            for code, age in ages.items():
                self._liveness.ticked(code, now - age)
            self._liveness_changed(now)

    def _liveness_changed(self, now: float) -> None:
        """Send the core's events; re-arm its timer (now, when the decoders must learn a new watch list)."""
        self._liveness_events(self._liveness.events())
        if self._liveness.watched() != self._watch_sent:
            self._liveness_due = now
            self._wake.set()
        else:
            self._liveness_due = self._liveness.next_wakeup()

    def _liveness_ask(self) -> None:
        # The timer thread, when the core's wake-up is due: ask every decoder for its tick ages (and
        # give it the watch list). The answers are taken by later pump rounds (_liveness_answers), so a
        # decoder busy with a burst never holds up the subscription requests.
        with self._lock:
            watch = self._liveness.watched()
            self._liveness_due = None
        decoders = [d for d in (self._decoder(i) for i in sorted(self._decoder_ids())) if d is not None]
        refs = [d.tick_ages.remote(sorted(watch)) for d in decoders]
        self._asked = (refs, watch, time.monotonic())
        for ref in refs:  # the timer wakes as each answer arrives (_next_wakeup: the deadline otherwise)
            ref.future().add_done_callback(lambda _f: self._wake.set())

    def _liveness_answers(self) -> None:
        refs, watch, asked_at = self._asked
        ready = ray.wait(refs, num_returns=len(refs), timeout=0)[0] if refs else []
        if len(ready) < len(refs):
            if time.monotonic() - asked_at > DECODER_ANSWER_S:
                # A decoder restarting or far behind: ask again later; its codes are judged then.
                missing = len(refs) - len(ready)
                logger.warning("registry: liveness: {} decoder(s) did not answer; asking again", missing)
                self._asked = None
                with self._lock:
                    self._liveness_due = time.monotonic() + DECODER_ANSWER_S
            return
        self._asked = None
        try:
            ages: list[dict[str, float]] = ray.get(refs, timeout=0) if refs else []
        except Exception as exc:  # noqa: BLE001 - a decoder that died meanwhile: the next round asks again
            why = type(exc).__name__
            logger.warning("registry: liveness: a decoder failed to answer ({}); asking again", why)
            with self._lock:
                self._liveness_due = time.monotonic() + DECODER_ANSWER_S
            return
        with self._lock:
            self._watch_sent = watch
            now = time.monotonic()
            for table in ages:
                for code, age in table.items():
                    self._liveness.ticked(code, now - age)
            self._liveness.poll(now)
            self._liveness_changed(now)

    def _liveness_events(self, events: list[LivenessEvent]) -> None:
        # One Ray call per holder and round (a connection of thousands of codes that dies is thousands
        # of events), and a bounded number of log lines (actors.core.codeliveness.fan_out).
        plan = fan_out(events, self._holders_of)
        self._code_events.extend(plan.texts)
        for level, line in plan.lines:
            logger.log(level.upper(), "registry: {}", line)
        for name in plan.told.keys() | plan.problems.keys():
            handle = self._strategy(name)
            if handle is None:
                continue
            for code, text in plan.problems.get(name, ()):
                handle.problem.remote(code, text)  # -> Strategy.on_problem(code, reason)
            if name in plan.told:
                handle.code_health_many.remote(
                    plan.told[name]
                )  # -> Strategy.on_stale / on_recovered, in order
        for conn_id, kind in plan.resend:
            book = self._books.get((conn_id, Kind(kind)))
            if book is not None:
                book.resend()

    # --- decoders ---------------------------------------------------------------------------------

    def decoder_started(self, decoder_id: int, pid: int) -> None:  # noqa: ARG002
        """A decoder (re)started: give it the routes."""
        with self._lock:
            handle = self._decoder(decoder_id)
            if handle is not None:
                self._routes_sent(decoder_id, handle.set_routes.remote(*self._routes(), self._next_version()))

    def _decoder_ids(self) -> set[int]:
        # The one source of truth: each connection's slot names its decoder, the start-up ones (decoder
        # i of the i-th configured connection) and the grown ones alike; the pool is saved with the
        # state, so a restarted registry still routes to every decoder.
        return {s.decoder for s in self._pool.slots.values()}

    def _decoder(self, decoder_id: int) -> Any:
        return self._actors.get(decoder_name(decoder_id))

    def _routes(self) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
        return self._holdings[Kind.TRADES].routes(), self._holdings[Kind.BOOK].routes()

    def _next_version(self) -> int:
        # Wall-clock nanoseconds, strictly increasing here: comparable with a previous registry's (a
        # restarted registry's tables must not be taken for old ones), unlike a counter from 1.
        self._routes_version = max(time.time_ns(), self._routes_version + 1)
        return self._routes_version

    def _send_routes(self, routes: tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]) -> None:
        version = self._next_version()
        for i in sorted(self._decoder_ids()):
            handle = self._decoder(i)
            if handle is not None:
                self._routes_sent(i, handle.set_routes.remote(*routes, version))

    def _routes_sent(self, decoder_id: int, ref: Any) -> None:
        # Routes must be in place before the server is asked for the codes, or the first ticks would be
        # dropped as ghosts: the decoder's connections send no request until this call is done. A later
        # call supersedes it (a decoder keeps the newest version it was given, whatever order Ray runs
        # the calls in). Nothing waits: the timer wakes when the call is done.
        future = ref.future()
        self._routes_pending[decoder_id] = (future, time.monotonic(), False)
        future.add_done_callback(lambda _f: self._wake.set())

    def _routes_awaited(self, now: float) -> set[int]:
        """The decoders still taking their latest routes (a call that failed counts as taken: a
        decoder that died is given the routes again when it restarts, by decoder_started).
        """
        for i, (future, sent, warned) in list(self._routes_pending.items()):
            if future.done():
                del self._routes_pending[i]
                if now - sent > ROUTES_SLOW_S:
                    logger.info(
                        "registry: {} took the new routes after {:.1f} s", decoder_name(i), now - sent
                    )
            elif not warned and now - sent > ROUTES_SLOW_S:
                self._routes_pending[i] = (future, sent, True)
                logger.warning(
                    "registry: {} has not taken new routes for {:.1f} s: its connections' "
                    "subscription requests wait for it",
                    decoder_name(i),
                    now - sent,
                )
        return set(self._routes_pending)

    def _held(self, now: float) -> set[str]:
        """The connections whose decoder is still taking its latest routes: they ask for nothing yet."""
        awaited = self._routes_awaited(now)
        if not awaited:
            return set()
        return {conn_id for conn_id, slot in self._pool.slots.items() if slot.decoder in awaited}

    # --- the core loop ----------------------------------------------------------------------------

    def _changed(self) -> None:
        # Saved at once (a registry killed right after a call returns must not lose it); routes,
        # assignment and requests follow in the pump thread, once for a burst of calls.
        self._save()
        self._dirty = True
        self._wake.set()

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
        self._ids.setdefault(slot.conn_id, wire.RequestIds(f"reg-{slot.conn_id}-{os.getpid()}"))

    def _drop_books(self, slot: Slot) -> None:
        for kind in KINDS:
            self._books.pop((slot.conn_id, kind), None)
        gate = self._gates.get((slot.token, slot.endpoint))
        if gate is not None:
            gate.forget(slot.conn_id)
        for table in (self._epochs, self._up, self._ids):
            table.pop(slot.conn_id, None)  # type: ignore[attr-defined]

    def _watch_liveness(self, slot: Slot) -> None:
        """Per-code liveness on ``slot`` uses its endpoint's ``stale_after_s``."""
        limit = self._stale_by_endpoint.get(slot.endpoint.value)
        if limit is not None:
            self._liveness.set_limit(slot.conn_id, limit)

    def _open(self, slot: Slot) -> None:
        if self._supervisor is not None:
            # -> Supervisor.open_connection: creates its decoder and connection (idempotent); the
            # connection's connection_up then brings its books to life.
            self._supervisor.open_connection.remote(
                slot.conn_id, slot.endpoint.value, slot.token, slot.decoder
            )

    def _reassign(self, now: float) -> None:
        """The pool fits the union of every kind; new connections are opened, empty ones closed."""
        wanted = {kind: self._holdings[kind].union() for kind in KINDS}
        fit = self._pool.fit(wanted, self._assignment, self._endpoints)
        self._pool.commit(fit, now)
        for slot in fit.opened:
            logger.info("registry: opening {} on token {} (room for more codes)", slot.conn_id, slot.token)
            self._add_books(slot)
            self._watch_liveness(slot)
            self._open(slot)
        starved = {code: why for code, why in fit.refused.items() if code not in self._unserved}
        if starved:
            # Held codes that lost their room (a token taken out): their holders are told; they are
            # served again as soon as room comes back.
            logger.error("registry: {} held code(s) without room: {}", len(starved), sorted(starved))
            for code, why in starved.items():
                holders = self._holders_of(code)
                self._tell(holders, code, FeedError(why))
        self._unserved = dict(fit.refused)
        for kind in KINDS:
            self._assignment[kind] = dict(fit.by_kind[kind])
            for conn_id in self._pool.slots:
                self._books[conn_id, kind].want(self._assignment[kind].get(conn_id, frozenset()))
        if fit.opened:
            self._save()
        self._close_idle(now)

    def _close_idle(self, now: float) -> None:
        closed = self._pool.to_close(now)
        for slot in closed:
            logger.info(
                "registry: closing {}: it held nothing for {:g} s", slot.conn_id, self._pool.close_after_s
            )
            self._drop_books(slot)
            for kind in KINDS:
                self._assignment[kind].pop(slot.conn_id, None)
            if self._supervisor is not None:
                self._supervisor.close_connection.remote(slot.conn_id)  # -> kills its actors
        if closed:
            self._save()

    def _next_wakeup(self, now: float) -> float | None:
        """The earliest time a core has something due: a request the rate limits allow, a lost
        request to resend, an empty connection's grace period over.
        """
        held = self._held(now)  # their wake-up is their decoder's answer
        times = [
            t
            for (conn_id, _kind), book in self._books.items()
            if conn_id not in held and (t := book.next_wakeup(now)) is not None
        ]
        pool_at = self._pool.next_wakeup()
        if pool_at is not None:
            times.append(pool_at)
        if self._asked is not None:  # decoders' tick ages asked: judged by this deadline at the latest
            times.append(self._asked[2] + DECODER_ANSWER_S)
        elif self._liveness_due is not None:
            times.append(self._liveness_due)
        times.extend(sent + ROUTES_SLOW_S for _f, sent, warned in self._routes_pending.values() if not warned)
        return min(times, default=None)

    def _timer_loop(self) -> None:
        # One timer, armed from the cores' next wake-up; a call that changes something wakes it early.
        delay = 0.0
        while not self._stop.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            try:
                self._pump_round()
            except Exception:  # noqa: BLE001 - the timer thread must survive one bad round
                logger.exception("registry: pump failed")
            with self._lock:
                now = time.monotonic()
                due = self._next_wakeup(now)
            delay = IDLE_WAKEUP_S if due is None else min(IDLE_WAKEUP_S, max(0.0, due - now))

    def _pump_round(self) -> None:
        with self._lock:
            now = time.monotonic()
            if self._dirty:
                self._dirty = False
                # The routes go out before the books want the codes; each decoder's connections ask
                # for them once it has taken them (_pump).
                self._send_routes(self._routes())
                self._reassign(now)
            else:
                self._close_idle(now)
            self._pump(now)
            metrics.code_states(self._books.values(), self._refused, lambda: self._liveness.status(now))
            due = self._liveness_due is not None and now >= self._liveness_due
        if self._asked is not None:
            self._liveness_answers()
        elif due:
            self._liveness_ask()

    def _pump(self, now: float) -> None:
        held = self._held(now)
        for (conn_id, _kind), book in self._books.items():
            if conn_id in held:
                continue  # its decoder is still taking the routes: the request waits (the timer wakes)
            request = book.request_to_send(now, self._ids[conn_id])
            if request is None:
                continue
            handle = self._conn(conn_id)
            if handle is None:
                book.connection_down()
                continue
            handle.send.remote(self._epochs[conn_id], wire.encode(request))

    def _conn(self, conn_id: str) -> Any:
        return self._actors.get(connection_name(conn_id))

    def _strategy(self, name: str) -> Any:
        return self._actors.get(strategy_name(name), cache=False)  # strategies come and go

    # --- status -----------------------------------------------------------------------------------

    def status(self) -> RegistryStatus:
        """Everything a status CLI shows about subscriptions."""
        with self._lock:
            now = time.monotonic()
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
                pid=os.getpid(),
                codes=self._liveness.status(now),
                code_events=list(self._code_events),
                routes_awaited={
                    decoder_name(i): round(now - sent, 1)
                    for i, (future, sent, _w) in sorted(self._routes_pending.items())
                    if not future.done() and now - sent > ROUTES_SLOW_S
                },
            )

    def clear_state(self) -> None:
        """Forget the saved state (a clean job shutdown)."""
        with self._lock:
            internal_kv._internal_kv_del(self._state_key)  # noqa: SLF001

    def stop(self) -> None:
        """Stop the timer thread."""
        self._stop.set()
        self._wake.set()


def _kind(kind: str) -> Kind:
    try:
        return Kind(kind)
    except ValueError:
        raise SubscriptionRefused({"kind": f"{kind!r} is not 'trades' or 'book'"}) from None
