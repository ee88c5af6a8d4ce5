"""The Decoder actor: decodes batches of raw frames, dedupes, routes ticks to strategies. A thin sync shell.

One connection always feeds the same decoder, and a sync actor runs one caller's calls in order, so
per-code order holds end to end. Per batch it:

- decodes every frame with msgspec (actors.core.wire.decode_batch); a bad frame is counted and logged, the
  rest of the batch goes on;
- forwards responses (22001/22003/22005/22007 and error frames) to the registry, which owns the
  subscription state;
- drops a tick whose seq is not greater than the last one delivered for its code (a duplicate after a
  reconnect: the vendor pushes the latest tick again on subscribe) and counts it;
- drops and counts ghost pushes, for codes no strategy holds;
- sends each strategy one msgpack-encoded batch of its ticks, unless that strategy already has
  ``max_pending`` batches unprocessed: then the batch is dropped for that strategy alone, counted, and
  the count travels with its next batch, so a slow strategy never stalls the feed or the others.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

import msgspec
from actors import metrics
from actors.log import logger

from actors.core import wire
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


class Decoder:
    """Decode, dedupe and route; wrapped with ``ray.remote`` by the supervisor."""

    def __init__(
        self, decoder_id: int, registry: Any, namespace: str, max_pending: int = 64, supervisor: Any = None
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
        self._last_seq: dict[str, int] = {}
        self._last_book_seq: dict[str, int] = {}
        self._encode = msgspec.msgpack.Encoder().encode
        self._batches = self._frames = self._ticks = self._books = 0
        self._delivered = self._duplicates = self._ghosts = self._malformed = 0
        self._dropped: dict[str, int] = {}
        # A restarted decoder asks for the routes instead of waiting for the next change.
        registry.decoder_started.remote(decoder_id, os.getpid())
        if supervisor is not None:
            supervisor.child_started.remote(decoder_name(decoder_id), os.getpid())

    def set_routes(self, routes: dict[str, tuple[str, ...]], book_routes: dict[str, tuple[str, ...]]) -> int:
        """Replace the routing tables (code -> strategy names). Returns the number of routed codes."""
        self._routes = routes
        self._book_routes = book_routes
        # Forget the dedupe marks of codes nobody holds any more, trades and order books alike: a later
        # subscribe starts afresh (and the marks do not pile up with every code ever held).
        for marks, table in ((self._last_seq, routes), (self._last_book_seq, book_routes)):
            for gone in [c for c in marks if c not in table]:
                del marks[gone]
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
        if batch.ticks:
            self._ticks += len(batch.ticks)
            delivered += self._route(batch.ticks, self._routes, self._last_seq, "on_ticks")
        if batch.books:
            self._books += len(batch.books)
            delivered += self._route(batch.books, self._book_routes, self._last_book_seq, "on_books")
        self._delivered += delivered
        metrics.decoded(self, conn_id, len(batch.ticks) + len(batch.books))
        return delivered

    def _route(
        self,
        records: list[Any],
        routes: dict[str, tuple[str, ...]],
        last_seq: dict[str, int],
        kind: str,
    ) -> int:
        per_strategy: dict[str, list[Any]] = {}
        for rec in records:
            code = rec.code
            targets = routes.get(code)
            if targets is None:
                self._ghosts += 1  # a push for a code nobody holds
                continue
            if rec.seq <= last_seq.get(code, -1):
                self._duplicates += 1
                continue
            last_seq[code] = rec.seq
            for name in targets:
                per_strategy.setdefault(name, []).append(rec)
        delivered = 0
        for name, recs in per_strategy.items():
            if self._send(name, kind, recs):
                delivered += len(recs)
        return delivered

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
            duplicates=self._duplicates,
            ghosts=self._ghosts,
            malformed=self._malformed,
            dropped_for_slow=dict(self._dropped),
            pending={name: sum(not f.done() for f in refs) for name, refs in self._pending.items()},
            routes=len(self._routes),
        )
