"""Routing: which decoded record goes to which strategy, and what could not be sent to whom. Pure.

Rules of this module:

1. A record of a code no strategy holds is a ghost: dropped and counted (``Router.ghosts``).
2. A record that ``is_duplicate`` of the last one routed for its code is dropped and counted
   (``Router.duplicates``). Trades and order books keep marks of their own. A code's mark goes with
   its last holder (``set_routes``): a later subscribe starts afresh.
3. Every other record goes to every strategy that holds its code, in arrival order (``route``).
4. An ``Outbox`` holds the numbered batches on their way to one receiver, bounded: the batches queued
   (not yet written, e.g. while the channel re-wires) plus those written but not yet acknowledged.
   A batch that finds it full is dropped and counted for that receiver alone; the count travels with
   the next batch written (``missed``), so the receiver can tell ``on_missed``.
5. When the channel breaks, the batches written but not acknowledged are either queued again in
   front of the rest (``replay=True``: the connection's raw frames, which a restarted decoder can
   decode again) or counted as missed (``replay=False``: tick batches to a strategy, which must never
   see a tick twice). Nothing is lost without being counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, Protocol, TypeVar


class Record(Protocol):
    """What routing reads of a decoded tick or book snapshot."""

    @property
    def code(self) -> str: ...

    @property
    def seq(self) -> int: ...


R = TypeVar("R", bound=Record)
B = TypeVar("B")

Routes = Mapping[str, Sequence[str]]  # code -> names of the strategies that hold it


def is_duplicate(seq: int, last: int | None) -> bool:
    """Whether a record with ``seq`` repeats what was already routed for its code (``last``: the seq
    of the last record routed for it, None when none was). The vendor pushes the latest tick again on
    every subscribe, so after a reconnect the first push of a code is usually the one last delivered.
    A seq going backwards is dropped here as well until the per-code quality check decides it."""
    return last is not None and seq <= last


class Router:
    """Dedupe marks, ghosts and fan-out of one decoder (rules 1-3)."""

    def __init__(self) -> None:
        self._routes: dict[str, tuple[str, ...]] = {}
        self._book_routes: dict[str, tuple[str, ...]] = {}
        self._marks: dict[str, int] = {}
        self._book_marks: dict[str, int] = {}
        self.ghosts = 0
        self.duplicates = 0

    @property
    def routed_codes(self) -> int:
        """How many trade codes have a route."""
        return len(self._routes)

    def set_routes(self, routes: Routes, book_routes: Routes) -> int:
        """Replace both routing tables; returns the number of routed trade codes."""
        self._routes = {code: tuple(names) for code, names in routes.items()}
        self._book_routes = {code: tuple(names) for code, names in book_routes.items()}
        # Rule 2: the marks of codes nobody holds any more go (and do not pile up with every code).
        for marks, table in ((self._marks, self._routes), (self._book_marks, self._book_routes)):
            for gone in [code for code in marks if code not in table]:
                del marks[gone]
        return len(self._routes)

    def route(self, records: Iterable[R], *, books: bool = False) -> dict[str, list[R]]:
        """The records each strategy gets, in arrival order; ghosts and duplicates are counted."""
        routes, marks = (self._book_routes, self._book_marks) if books else (self._routes, self._marks)
        out: dict[str, list[R]] = {}
        for rec in records:
            code = rec.code
            targets = routes.get(code)
            if targets is None:
                self.ghosts += 1
                continue
            if is_duplicate(rec.seq, marks.get(code)):
                self.duplicates += 1
                continue
            marks[code] = rec.seq
            for name in targets:
                bucket = out.get(name)
                if bucket is None:
                    out[name] = [rec]
                else:
                    bucket.append(rec)
        return out


class Outgoing(NamedTuple, Generic[B]):
    """One batch to write: its number on this channel, the count of records missed before it, its body."""

    number: int
    missed: int
    body: B


class _Entry(NamedTuple, Generic[B]):
    body: B
    count: int  # records in the batch (what is missed if it is lost)
    missed: int  # the missed count it carries (0 until written)


class Outbox(Generic[B]):
    """The batches on their way to one receiver (rules 4 and 5). No I/O: the channel shell calls
    ``take`` when it can write, ``acked`` when the receiver acknowledges, ``lost`` when the channel broke.
    """

    def __init__(self, *, max_batches: int, replay: bool) -> None:
        if max_batches < 1:
            raise ValueError(f"max_batches must be >= 1, got {max_batches}")
        self._max = max_batches
        self._replay = replay
        self._queued: deque[_Entry[B]] = deque()
        self._in_flight: deque[tuple[int, _Entry[B]]] = deque()
        self._number = 0
        self.missed = 0  # records dropped or lost, not yet told to the receiver
        self.dropped = 0  # records dropped because the outbox was full, ever
        self.lost = 0  # records written but never acknowledged before the channel broke, ever
        self.sent = 0  # batches written
        self.replayed = 0  # batches written again after a break

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
        """Queue a batch of ``count`` records. False when full: dropped and counted (rule 4)."""
        if self.pending >= self._max:
            self.dropped += count
            self.missed += count
            return False
        self._queued.append(_Entry(body, count, 0))
        return True

    def take(self) -> list[Outgoing[B]]:
        """Every queued batch, numbered, to write now; the first carries the missed count."""
        out: list[Outgoing[B]] = []
        while self._queued:
            entry = self._queued.popleft()
            self._number += 1
            missed, self.missed = self.missed + entry.missed, 0
            self._in_flight.append((self._number, _Entry(entry.body, entry.count, missed)))
            out.append(Outgoing(self._number, missed, entry.body))
        self.sent += len(out)
        return out

    def acked(self, number: int) -> None:
        """The receiver is done with every batch up to ``number`` (acknowledgements are cumulative)."""
        in_flight = self._in_flight
        while in_flight and in_flight[0][0] <= number:
            in_flight.popleft()

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
        self.lost += lost
        self.missed += lost + sum(entry.missed for entry in entries)
        return lost

    def snapshot(self) -> dict[str, Any]:
        """The counters, for statistics."""
        return {
            "pending": self.pending,
            "missed": self.missed,
            "dropped": self.dropped,
            "lost": self.lost,
            "sent": self.sent,
        }
