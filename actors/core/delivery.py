"""Delivery: the receiving side of one strategy. A bounded queue of batches, per-code order, and the
accounting of every record that does not reach a hook. Pure: the Strategy shell feeds it and calls
the hooks it names.

Rules of this module:

1. Batches are queued in arrival order, at most ``max_batches`` from each sender (each decoder keeps
   the same window of unacknowledged batches, so its batches fit; several decoders do not push each
   other's out). A batch that finds its sender's share full pushes out that sender's oldest one: its
   records are counted as missed (never silently lost).
2. Missed counts (those that travelled with a batch from the sender, and those of rule 1) are told
   to ``on_missed`` before the next batch goes to a hook, so the strategy knows where the gap is.
3. Within a kind (trades, books), a record ``already_seen`` (actors.core.tickcheck: the same seq as
   the last one delivered for its code, or a lower seq with an older tick_time; a lower seq with a
   later tick_time is a reset of the vendor's counter and passes) is dropped and counted
   (``out_of_order``): even across a decoder restart, when a new decoder without marks replays
   frames, no tick reaches a hook twice or out of order.
4. A batch is acknowledged to its sender once it went through its hook, or once the missed count
   of its dropping was told to ``on_missed``; acknowledgements are cumulative per sender. A sender
   whose channel breaks counts what was not acknowledged as lost, so nothing is lost uncounted.
5. The batches of one kind that wait one behind the other go to their hook in one call, their
   records in queue order (``next_run``): a strategy that fell behind catches up in a few calls
   instead of one per batch. Each is acknowledged when that call returns (rule 4).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Any, NamedTuple, TypeVar

R = TypeVar("R")

TICKS = "on_ticks"
BOOKS = "on_books"


class Batch(NamedTuple):
    """A batch as received: its hook (``on_ticks``/``on_books``), its still-encoded payload (to the
    shell: a list of encoded record lists), how many records it holds, and whom to acknowledge it to
    (``source``, ``number``; None, 0: nobody).
    """

    kind: str
    payload: Any
    count: int  # type: ignore[assignment]  # a field named count shadows tuple.count, as intended
    source: Hashable | None = None
    number: int = 0


class MissedReport(NamedTuple):
    """Tell ``on_missed`` of ``count`` records."""

    count: int  # type: ignore[assignment]  # a field named count shadows tuple.count, as intended


class Delivery:
    """The queue of one strategy (rules 1-4)."""

    def __init__(self, *, max_batches: int) -> None:
        if max_batches < 1:
            raise ValueError(f"max_batches must be >= 1, got {max_batches}")
        self._max = max_batches
        self._queue: deque[Batch] = deque()
        self._queued_from: dict[Hashable | None, int] = {}  # sender -> its batches in the queue
        # code -> the last record delivered (its seq and tick_time are the mark), per kind
        self._marks: dict[str, dict[str, Any]] = {TICKS: {}, BOOKS: {}}
        self._unreported = 0
        self._drop_acks: dict[Hashable, int] = {}  # acknowledged once their count is reported
        self._acks: dict[Hashable, int] = {}  # ready to send
        self.missed = 0
        self.out_of_order = 0

    @property
    def queued(self) -> int:
        """Batches waiting for their hook."""
        return len(self._queue)

    @property
    def unreported(self) -> int:
        """Missed records not yet told to ``on_missed``."""
        return self._unreported

    def push(self, batch: Batch, missed: int = 0) -> int:
        """Queue ``batch``; ``missed`` records were lost before it on the way. Returns the records
        dropped from the queue to make room (rule 1).
        """
        self._count_missed(missed)
        dropped = 0
        source, queued_from, queue = batch.source, self._queued_from, self._queue
        while queued_from.get(source, 0) >= self._max:
            at = next(i for i, old in enumerate(queue) if old.source == source)
            old = queue[at]
            del queue[at]
            self._taken(source)
            dropped += old.count
            if source is not None:
                self._drop_acks[source] = max(old.number, self._drop_acks.get(source, 0))
        self._count_missed(dropped)
        queue.append(batch)
        queued_from[source] = queued_from.get(source, 0) + 1
        return dropped

    def missed_before(self, count: int) -> None:
        """``count`` records were lost on the way with no batch to carry the count (rule 2)."""
        self._count_missed(count)

    def _count_missed(self, count: int) -> None:
        if count:
            self.missed += count
            self._unreported += count

    def next(self) -> MissedReport | Batch | None:
        """What to do next: tell ``on_missed`` (rule 2), deliver a batch, or nothing (idle)."""
        if self._unreported:
            count, self._unreported = self._unreported, 0
            return MissedReport(count)
        if self._queue:
            return self._popleft()
        return None

    def next_run(self) -> MissedReport | list[Batch] | None:
        """Like ``next``, but a batch comes with the batches of its kind queued right behind it (rule 5)."""
        item = self.next()
        if not isinstance(item, Batch):
            return item
        run = [item]
        queue = self._queue
        while queue and queue[0].kind == item.kind:
            run.append(self._popleft())
        return run

    def _popleft(self) -> Batch:
        batch = self._queue.popleft()
        self._taken(batch.source)
        return batch

    def _taken(self, source: Hashable | None) -> None:
        left = self._queued_from[source] - 1
        if left:
            self._queued_from[source] = left
        else:
            del self._queued_from[source]  # senders come and go (a peer per stream)

    def reported(self) -> None:
        """``on_missed`` was told: the batches dropped so far may be acknowledged (rule 4)."""
        for source, number in self._drop_acks.items():
            self._ack(source, number)
        self._drop_acks.clear()

    def finished(self, batch: Batch) -> None:
        """``batch`` went through its hook (rule 4)."""
        if batch.source is not None:
            self._ack(batch.source, batch.number)

    def _ack(self, source: Hashable, number: int) -> None:
        if number > self._acks.get(source, 0):
            self._acks[source] = number

    def take_acks(self) -> dict[Hashable, int]:
        """Acknowledgements to send now, per sender: everything up to the number is done."""
        acks, self._acks = self._acks, {}
        return acks

    def forget(self, source: Hashable) -> None:
        """A sender went away: nothing more to acknowledge to it."""
        self._acks.pop(source, None)
        self._drop_acks.pop(source, None)

    def in_order(self, records: list[R], kind: str = TICKS) -> list[R]:
        """The records that may reach the hook (rule 3); the others are counted in ``out_of_order``.
        Usually none is dropped: then ``records`` itself comes back.
        """
        marks = self._marks[kind]
        last_of = marks.get
        out: list[R] | None = None  # built from the first drop on
        for at, rec in enumerate(records):
            code = rec.code  # type: ignore[attr-defined]
            last = last_of(code)
            # already_seen(rec.seq, rec.tick_time, (last.seq, last.tick_time)), inline: once per tick
            seq = rec.seq  # type: ignore[attr-defined]
            if last is not None and (
                seq == last.seq or (seq < last.seq and rec.tick_time < last.tick_time)  # type: ignore[attr-defined]
            ):
                if out is None:
                    out = records[:at]
                self.out_of_order += 1
                continue
            marks[code] = rec
            if out is not None:
                out.append(rec)
        return records if out is None else out
