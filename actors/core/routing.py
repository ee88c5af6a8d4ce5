"""Routing: which decoded record goes to which strategy, and what could not be sent to whom. Pure.

Rules of this module:

1. A record of a code no strategy holds is a ghost: dropped and counted (``Router.ghosts``).
2. Every other record passes the per-tick quality check (``actors.core.tickcheck.TickCheck``): a
   duplicate (the vendor's re-push of the latest tick), an older tick or a corrupt one is dropped and
   counted; a seq reset, a seq jump or an odd tick_time is delivered and counted; the first of each
   episode is queued for the decoder to report (``reports``). Trades and order books are checked
   apart. A code's marks go with its last holder (``set_routes``): a later subscribe starts afresh.
   Routing tables carry a version: one older than the tables in force is ignored (Ray runs an async
   actor's calls in no guaranteed order, so the tables sent first may arrive last).
3. Every other record goes to every strategy that holds its code, in arrival order (``route``).
4. An ``Outbox`` holds the numbered batches on their way to one receiver, bounded: the batches queued
   (not yet written, e.g. while the channel re-wires) plus those written but not yet acknowledged.
   A batch that finds it full is dropped and counted for that receiver alone; the count travels with
   the next batch written (``missed``), so the receiver can tell ``on_missed``.
   With a ``merge`` rule (tick batches to a strategy, ``join_tick_batches``) the batch bound is the
   window of batches written and not acknowledged instead: while it is full, a new batch joins the
   last queued one when the rule allows (same kind), so a receiver that is behind gets fewer, bigger
   batches rather than losing ticks; only ``max_records`` (records queued or written, not yet
   acknowledged) drops then, and at most ``max_batches`` batches wait unwritten.
5. When the channel breaks, the batches written but not acknowledged are either queued again in
   front of the rest (``replay=True``: the connection's raw frames, which a restarted decoder can
   decode again) or counted as missed (``replay=False``: tick batches to a strategy, which must never
   see a tick twice). Nothing is lost without being counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from actors.core.tickcheck import Anomaly, Report, TickCheck

B = TypeVar("B")

Routes = Mapping[str, Sequence[str]]  # code -> names of the strategies that hold it


class Router:
    """Ghosts, the per-tick check and fan-out of one decoder (rules 1-3)."""

    def __init__(self, *, deliver_corrupt: bool = False) -> None:
        self._routes: dict[str, tuple[str, ...]] = {}
        self._book_routes: dict[str, tuple[str, ...]] = {}
        # Per kind: trade seq and book seq are separate counters (PROTOCOL.md "22998", "22999").
        self.trades = TickCheck(deliver_corrupt=deliver_corrupt)
        self.books = TickCheck(deliver_corrupt=deliver_corrupt)
        self.ghosts = 0
        self.routes_version = 0  # the version of the tables in force (0: unversioned)

    @property
    def duplicates(self) -> int:
        """Records dropped as the vendor's re-push of one already routed, both kinds."""
        dup = Anomaly.DUPLICATE.value
        return self.trades.totals().get(dup, 0) + self.books.totals().get(dup, 0)

    @property
    def routed_codes(self) -> int:
        """How many trade codes have a route."""
        return len(self._routes)

    def set_routes(self, routes: Routes, book_routes: Routes, version: int = 0) -> bool:
        """Replace both routing tables, unless ``version`` is older than the tables' in force (rule 2);
        returns whether they were replaced. Version 0 (unversioned: tests, tools) always replaces.
        """
        if version:
            if version < self.routes_version:
                return False
            self.routes_version = version
        # Codes held by the same strategies share one tuple: the per-tick fan-out tells them by identity.
        shared: dict[tuple[str, ...], tuple[str, ...]] = {}

        def one(names: Iterable[str]) -> tuple[str, ...]:
            names = tuple(names)
            return shared.setdefault(names, names)

        self._routes = {code: one(names) for code, names in routes.items()}
        self._book_routes = {code: one(names) for code, names in book_routes.items()}
        # Rule 2: the marks of codes nobody holds any more go (and do not pile up with every code).
        self.trades.forget(self._routes)
        self.books.forget(self._book_routes)
        return True

    def holders(self, code: str, *, books: bool = False) -> tuple[str, ...]:
        """The strategies that hold ``code`` now."""
        return (self._book_routes if books else self._routes).get(code, ())

    def route(
        self, records: Iterable[Any], now_ms: int, *, books: bool = False, sound: bool = False
    ) -> dict[str, list[Any]]:
        """The records each strategy gets, in arrival order (``now_ms``: when they were received);
        ghosts and whatever the check drops are counted. ``sound``: as ``TickCheck.sift``'s (trades only).
        """
        check = self.books if books else self.trades
        routes = self._book_routes if books else self._routes
        out, ghosts = check.sift(records, now_ms, routes, sound=sound and not books)
        self.ghosts += ghosts
        return out

    def reports(self) -> list[tuple[Report, tuple[str, ...]]]:
        """The anomaly episodes begun since the last call, each with the strategies to tell (drained)."""
        out = [(r, self.holders(r.code)) for r in self.trades.reports()]
        out += [(r, self.holders(r.code, books=True)) for r in self.books.reports()]
        return out

    def anomalies(self) -> dict[str, dict[str, int]]:
        """Anomalies counted per held code, both kinds: code -> anomaly -> count."""
        out: dict[str, dict[str, int]] = {}
        for table in (self.trades.counts(), self.books.counts()):
            for code, counts in table.items():
                mine = out.setdefault(code, {})
                for anomaly, n in counts.items():
                    mine[anomaly] = mine.get(anomaly, 0) + n
        return out


class Outgoing(NamedTuple, Generic[B]):
    """One batch to write: its number on this channel, the count of records missed before it, its body."""

    number: int
    missed: int
    body: B


class _Entry(NamedTuple, Generic[B]):
    body: B
    count: int  # type: ignore[assignment]  # records in the batch; shadows tuple.count, as intended
    missed: int  # the missed count it carries (0 until written)


class Outbox(Generic[B]):
    """The batches on their way to one receiver (rules 4 and 5). No I/O: the channel shell calls
    ``take`` when it can write, ``acked`` when the receiver acknowledges, ``lost`` when the channel broke.
    """

    def __init__(
        self,
        *,
        max_batches: int,
        replay: bool,
        max_records: int | None = None,
        merge: Callable[[B, B], B | None] | None = None,
    ) -> None:
        if max_batches < 1:
            raise ValueError(f"max_batches must be >= 1, got {max_batches}")
        if max_records is not None and max_records < 1:
            raise ValueError(f"max_records must be >= 1 or None, got {max_records}")
        self._max = max_batches
        self._max_records = max_records
        self._merge = merge
        self._replay = replay
        self._queued: deque[_Entry[B]] = deque()
        self._in_flight: deque[tuple[int, _Entry[B]]] = deque()
        self._number = 0
        self.records = 0  # records queued or written and not yet acknowledged
        self.missed = 0  # records dropped or lost, not yet told to the receiver
        self.dropped = 0  # records dropped because the outbox was full, ever
        self.lost = 0  # records written but never acknowledged before the channel broke, ever
        self.sent = 0  # batches written
        self.replayed = 0  # batches written again after a break
        self.merged = 0  # batches that joined a queued one (merge rule), ever
        self._behind = False  # records held reached half of max_records, and not yet back under a tenth

    @property
    def pending(self) -> int:
        """Batches queued or written and not yet acknowledged."""
        return len(self._queued) + len(self._in_flight)

    @property
    def in_flight(self) -> int:
        """Batches written and not yet acknowledged."""
        return len(self._in_flight)

    @property
    def queued(self) -> int:
        """Batches waiting to be written."""
        return len(self._queued)

    def put(self, body: B, count: int) -> bool:
        """Queue a batch of ``count`` records (joined to the last queued one when the merge rule allows).
        False when full: dropped and counted (rule 4).
        """
        if self._max_records is None or self.records < self._max_records:
            queued, merge = self._queued, self._merge
            if merge is not None and queued:
                last = queued[-1]
                joined = merge(last.body, body)
                if joined is not None:
                    queued[-1] = _Entry(joined, last.count + count, last.missed)
                    self.records += count
                    self.merged += 1
                    return True
            # With a merge rule the bound is on the batches waiting (the window bounds those written).
            if (len(queued) if merge is not None else self.pending) < self._max:
                queued.append(_Entry(body, count, 0))
                self.records += count
                return True
        self.dropped += count
        self.missed += count
        return False

    def behind_news(self) -> bool | None:
        """Whether the receiver just fell behind (True: the records held reached half of ``max_records``,
        where drops are near) or just caught up (False: back under a tenth of it); None when nothing
        changed since the last call, or without ``max_records``. For a warning before ticks are lost.
        """
        bound = self._max_records
        if bound is None:
            return None
        if not self._behind and 2 * self.records >= bound:
            self._behind = True
            return True
        if self._behind and 10 * self.records < bound:
            self._behind = False
            return False
        return None

    def take(self) -> list[Outgoing[B]]:
        """The queued batches to write now, numbered (with a merge rule, as many as the window has room
        for; else all); the first carries the missed count.
        """
        out: list[Outgoing[B]] = []
        queued, in_flight = self._queued, self._in_flight
        window = self._max if self._merge is not None else None
        while queued and (window is None or len(in_flight) < window):
            entry = queued.popleft()
            self._number += 1
            missed, self.missed = self.missed + entry.missed, 0
            in_flight.append((self._number, _Entry(entry.body, entry.count, missed)))
            out.append(Outgoing(self._number, missed, entry.body))
        self.sent += len(out)
        return out

    def acked(self, number: int) -> None:
        """The receiver is done with every batch up to ``number`` (acknowledgements are cumulative)."""
        in_flight = self._in_flight
        while in_flight and in_flight[0][0] <= number:
            self.records -= in_flight.popleft()[1].count

    def broken(self) -> int:
        """The channel broke (rule 5). Returns how many records were counted as lost."""
        entries = [entry for _, entry in self._in_flight]
        self._in_flight.clear()
        self._number = 0  # a new channel numbers from 1 again
        if self._replay:
            self.replayed += len(entries)
            # Written again in their order, before what was queued since; the missed counts they
            # carried are carried again.
            self._queued.extendleft(reversed(entries))
            return 0
        lost = sum(entry.count for entry in entries)
        self.records -= lost
        self.lost += lost
        self.missed += lost + sum(entry.missed for entry in entries)
        return lost


def join_tick_batches(first: list[Any], then: list[Any]) -> list[Any] | None:
    """The merge rule of tick batches to a strategy (rule 4): ``[kind, count, payloads]`` each, with
    ``payloads`` a list of encoded record lists. Two batches of one kind become one (``first``,
    extended in place: it is the outbox's own); batches of different kinds stay apart (None).
    """
    if first[0] != then[0]:
        return None
    first[1] += then[1]
    first[2] += then[2]
    return first
