"""The Decoder actor: decodes batches of raw frames, dedupes, routes ticks to strategies. A thin sync shell.

One connection always feeds the same decoder, and a sync actor runs one caller's calls in order, so
per-code order holds end to end. Per batch it:

- decodes every frame with msgspec (actors.core.wire.decode_batch); a bad frame is counted and logged, the
  rest of the batch goes on;
- forwards responses (22001/22003/22005/22007 and error frames) to the registry, which owns the
  subscription state;
- drops and counts ghost pushes, for codes no strategy holds;
- checks every tick (actors.core.codehealth.TickCheck): a duplicate (the vendor pushes the latest tick
  again on subscribe) or an older tick is dropped, a corrupt one (price <= 0, negative volume, empty
  code) is dropped unless ``deliver_corrupt``, a seq reset, jump or odd tick_time is delivered; all are
  counted per code, and the first of each episode is logged and told to the code's holders
  (``on_problem``);
- keeps each code's last receive time: ``tick_ages`` gives the registry's liveness check the ages, and
  the first tick of a code the registry watches (stale or never started) is reported at once
  (``Registry.codes_ticked``);
- sends each strategy one msgpack-encoded batch of its ticks, unless that strategy already has
  ``max_pending`` batches unprocessed: then the batch is dropped for that strategy alone, counted, and
  the count travels with its next batch, so a slow strategy never stalls the feed or the others.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

import msgspec
from actors.log import logger

from actors.core import wire
from actors.core.codehealth import Anomaly, Report, TickCheck
from actors.core.naming import decoder_name, strategy_name
from actors.naming import NamedActors

LOG_FIRST_ERRORS = 5  # malformed frames logged in full per decoder; the rest are only counted


class DecoderStats(msgspec.Struct, frozen=True):
    decoder_id: int
    batches: int
    frames: int
    ticks: int
    books: int
    delivered: int
    duplicates: int
    ghosts: int
    malformed: int
    dropped_for_slow: dict[str, int]
    pending: dict[str, int]  # batches sent to each strategy that it has not taken yet
    routes: int
    anomalies: dict[str, dict[str, int]] = {}  # code -> anomaly -> count, trades and books, held codes


class Decoder:
    """Decode, dedupe and route; wrapped with ``ray.remote`` by the supervisor."""

    def __init__(
        self,
        decoder_id: int,
        registry: Any,
        namespace: str,
        max_pending: int = 64,
        supervisor: Any = None,
        *,
        deliver_corrupt: bool = False,
    ) -> None:
        self._id = decoder_id
        self._registry = registry
        self._max_pending = max_pending
        self._routes: dict[str, tuple[str, ...]] = {}
        self._book_routes: dict[str, tuple[str, ...]] = {}
        self._actors = NamedActors(namespace)
        self._pending: dict[str, deque[Any]] = {}
        self._missed: dict[str, int] = {}
        self._numbers: dict[str, int] = {}
        self._source = f"decoder:{decoder_id}:{os.getpid()}"
        # Per kind: trade seq and book seq are separate counters (PROTOCOL.md "22998", "22999").
        self._checks = {
            "on_ticks": TickCheck(deliver_corrupt=deliver_corrupt),
            "on_books": TickCheck(deliver_corrupt=deliver_corrupt),
        }
        self._watch: frozenset[str] = frozenset()  # codes whose next tick the registry wants at once
        self._encode = msgspec.msgpack.Encoder().encode
        self._batches = self._frames = self._ticks = self._books = 0
        self._delivered = self._ghosts = self._malformed = 0
        self._dropped: dict[str, int] = {}
        # A restarted decoder asks for the routes instead of waiting for the next change.
        registry.decoder_started.remote(decoder_id, os.getpid())
        if supervisor is not None:
            supervisor.child_started.remote(decoder_name(decoder_id), os.getpid())

    def set_routes(self, routes: dict[str, tuple[str, ...]], book_routes: dict[str, tuple[str, ...]]) -> int:
        """Replace the routing tables (code -> strategy names). Returns the number of routed codes."""
        self._routes = routes
        self._book_routes = book_routes
        # Forget the marks of codes nobody holds any more, trades and order books alike: a later
        # subscribe starts afresh (and the marks do not pile up with every code ever held).
        self._checks["on_ticks"].forget(routes)
        self._checks["on_books"].forget(book_routes)
        return len(routes)

    def decode(self, conn_id: str, epoch: int, frames: list[bytes], received_ns: int) -> int:
        """Decode one batch from ``conn_id``; returns how many ticks were delivered."""
        batch = wire.decode_batch(frames, received_ns)
        self._batches += 1
        self._frames += len(frames)
        if batch.responses:
            self._registry.on_responses.remote(conn_id, epoch, batch.responses)
        if batch.errors:
            self._malformed += len(batch.errors)
            if self._malformed <= LOG_FIRST_ERRORS:
                for exc in batch.errors:
                    logger.warning("decoder {}: {} from {} (counted, feed goes on)", self._id, exc, conn_id)
        delivered = 0
        now_ms = received_ns // 1_000_000  # the connection's wall-clock read time (0: unknown)
        if batch.ticks:
            self._ticks += len(batch.ticks)
            delivered += self._route(batch.ticks, self._routes, "on_ticks", now_ms)
            if self._watch:
                self._tell_watched(batch.ticks, now_ms)
        if batch.books:
            self._books += len(batch.books)
            delivered += self._route(batch.books, self._book_routes, "on_books", now_ms)
        self._delivered += delivered
        return delivered

    def _route(
        self,
        records: list[Any],
        routes: dict[str, tuple[str, ...]],
        kind: str,
        now_ms: int,
    ) -> int:
        per_strategy: dict[str, list[Any]] = {}
        check = self._checks[kind].check
        for rec in records:
            code = rec.code
            targets = routes.get(code)
            if targets is None and code:
                self._ghosts += 1  # a push for a code nobody holds
                continue
            if not check(rec, now_ms):  # duplicate, older or corrupt: counted in the check
                continue
            for name in targets or ():
                per_strategy.setdefault(name, []).append(rec)
        reports = self._checks[kind].reports()
        if reports:
            self._report(reports, routes)
        delivered = 0
        for name, recs in per_strategy.items():
            if self._send(name, kind, recs):
                delivered += len(recs)
        return delivered

    def _report(self, reports: list[Report], routes: dict[str, tuple[str, ...]]) -> None:
        # Once per episode (the check decides): logged and told to every holder of the code.
        for report in reports:
            logger.warning("decoder {}: {}: {}", self._id, report.code or "<empty code>", report)
            for name in routes.get(report.code, ()):
                handle = self._handle(name)
                if handle is not None:
                    handle.problem.remote(report.code, str(report))  # -> Strategy.on_problem(code, reason)

    def _tell_watched(self, ticks: list[Any], now_ms: int) -> None:
        seen = self._watch.intersection(t.code for t in ticks)
        if seen:
            self._watch = self._watch - seen
            age = max(0.0, (time.time_ns() // 1_000_000 - now_ms) / 1000) if now_ms else 0.0
            self._registry.codes_ticked.remote(dict.fromkeys(seen, age))  # -> CodeLiveness.ticked

    def tick_ages(self, watch: list[str] | frozenset[str] = ()) -> dict[str, float]:
        """Seconds since the last trade tick of each held code (for the registry's liveness check), and
        from now on report the first tick of each ``watch`` code at once (``Registry.codes_ticked``)."""
        self._watch = frozenset(watch)
        now_ms = time.time_ns() // 1_000_000
        seen = self._checks["on_ticks"].last_seen_ms()
        return {code: max(0.0, (now_ms - at) / 1000) for code, at in seen.items()}

    def _send(self, name: str, kind: str, recs: list[Any]) -> bool:
        pending = self._pending.setdefault(name, deque())
        while pending and pending[0].done():
            pending.popleft()
        # Too far behind, or no such actor (yet): the batch is dropped for this strategy alone, counted,
        # and the count travels with its next batch.
        handle = self._handle(name) if len(pending) < self._max_pending else None
        if handle is None:
            self._missed[name] = self._missed.get(name, 0) + len(recs)
            self._dropped[name] = self._dropped.get(name, 0) + len(recs)
            return False
        missed = self._missed.pop(name, 0)
        # Ray runs an async actor's calls out of order: number the batches so the strategy can
        # put them back in order (per decoder incarnation, per strategy).
        number = self._numbers[name] = self._numbers.get(name, 0) + 1
        ref = handle.deliver.remote(kind, self._encode(recs), missed, self._source, number)
        pending.append(ref.future())
        return True

    def _handle(self, name: str) -> Any:
        return self._actors.get(strategy_name(name))

    def statistics(self) -> DecoderStats:
        """Counters of this decoder."""
        return DecoderStats(
            decoder_id=self._id,
            batches=self._batches,
            frames=self._frames,
            ticks=self._ticks,
            books=self._books,
            delivered=self._delivered,
            duplicates=sum(c.totals().get(Anomaly.DUPLICATE, 0) for c in self._checks.values()),
            ghosts=self._ghosts,
            malformed=self._malformed,
            dropped_for_slow=dict(self._dropped),
            pending={name: sum(not f.done() for f in refs) for name, refs in self._pending.items()},
            routes=len(self._routes),
            anomalies=_merged(c.counts() for c in self._checks.values()),
        )


def _merged(tables: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for table in tables:
        for code, counts in table.items():
            mine = out.setdefault(code, {})
            for anomaly, n in counts.items():
                mine[anomaly] = mine.get(anomaly, 0) + n
    return out
