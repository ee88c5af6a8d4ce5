"""The Decoder actor: decodes batches of raw frames, dedupes, routes ticks to strategies. A thin async shell.

One connection always feeds the same decoder over one channel stream (actors.channel), so per-code
order holds end to end. Per batch it:

- decodes every frame with msgspec (actors.core.normalise.decode_batch: the usual form first, unless the feed
  sent another lately); a bad frame is counted and logged, the rest of the batch goes on;
- forwards responses (22001/22003/22005/22007 and error frames) to the registry over Ray, which owns the
  subscription state;
- drops ghosts, checks every tick and fans out (actors.core.routing.Router over
  actors.core.tickcheck.TickCheck): a duplicate (the vendor pushes the latest tick again on subscribe)
  or an older tick is dropped, a corrupt one (price <= 0, negative volume, empty code) is dropped
  unless ``deliver_corrupt``, a seq reset, jump or odd tick_time is delivered; all are counted per
  code, and the first of each episode is logged and told to the code's holders (``on_problem``);
- keeps each code's last receive time (trades and order books): ``tick_ages`` gives the registry's
  liveness check the ages (``statistics`` gives them to the status), and the first tick or book of a
  code the registry watches (stale or never started) is reported at once
  (``Registry.codes_ticked``);
- sends each strategy one msgpack-encoded batch of its ticks over its channel. At most ``max_pending``
  batches are on their way to a strategy unacknowledged; while that window is full (the strategy is
  behind, or restarting), its new ticks join one waiting batch (actors.core.routing.Outbox with
  ``join_tick_batches``), so a strategy that pauses catches up with a few big batches instead of
  losing ticks. Beyond ``max_pending_ticks`` ticks waiting for it, its ticks are dropped for it alone
  and counted, and the count travels with its next batch to ``on_missed``: a slow or restarting
  strategy never stalls the feed or the others;
- acknowledges the connection's batch once it is routed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from actors import metrics
from actors.channel import Address, Peer, Receiver, Sender, local_node
from actors.core import normalise
from actors.core.delivery import BOOKS, TICKS
from actors.core.naming import decoder_name, strategy_name
from actors.core.routing import Outbox, Router, join_tick_batches
from actors.core.tickcheck import Report
from actors.handles import NamedActors, resolve
from actors.hot import direct, freeze_heap
from actors.log import logger

LOG_FIRST_ERRORS = 5  # malformed frames logged in full per decoder; the rest are only counted
#: After a batch that was not all in the usual form (normalise.decode_batch), this many batches skip
#: trying it.
USUAL_RETRY_BATCHES = 64
#: How long ``channel_address`` waits for the first routes (frames decoded before them would be
#: ghosts), then for the channels to the routed strategies (a connection replays its unacknowledged
#: frames at once, and they should find the strategies' channels open).
ROUTES_WAIT_S = 10.0
STRATEGIES_WAIT_S = 2.0


class DecoderStats(msgspec.Struct, frozen=True):
    """Counters of one Decoder actor, for ``statistics()`` and the status view."""

    decoder_id: int
    batches: int
    frames: int
    ticks: int
    books: int
    delivered: int
    duplicates: int
    ghosts: int
    malformed: int
    dropped_for_slow: dict[str, int]  # records dropped per strategy: its outbox was full
    pending: dict[str, int]  # batches sent to each strategy that it has not acknowledged yet, or waiting
    routes: int
    lost_on_break: dict[str, int] = {}  # records per strategy written but never acknowledged: it died
    frames_lost: int = 0  # frames the connections could not send us (counted at their end)
    anomalies: dict[str, dict[str, int]] = {}  # code -> anomaly -> count, trades and books, held codes
    tick_ages: dict[str, float] = {}  # code -> seconds since its last tick or book push, at this call
    pending_ticks: dict[str, int] = {}  # ticks and books on their way to each strategy, not acknowledged
    joined: dict[str, int] = {}  # batches that joined a waiting one per strategy (it was behind), ever


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
        max_pending_ticks: int = 50_000,
    ) -> None:
        self._id = decoder_id
        registry = self._registry = resolve(registry)  # peers come by name (actors.handles)
        supervisor = resolve(supervisor)
        self._max_pending = max_pending
        self._max_pending_ticks = max_pending_ticks
        self._router = Router(deliver_corrupt=deliver_corrupt)
        self._watch: frozenset[str] = frozenset()  # codes whose next tick the registry wants at once
        self._actors = NamedActors(namespace)
        self._senders: dict[str, Sender] = {}
        self._encode = msgspec.msgpack.Encoder().encode
        self._batches = self._frames = self._ticks = self._books = 0
        self._delivered = self._malformed = self._frames_lost = 0
        self._routed = asyncio.Event()
        self._usual = True  # the last batch was all in the usual form: try it first (normalise.decode_batch)
        direct(self, "decode", "_send", "_sender", "_tell_watched")  # per batch: past Ray's wrappers
        self._node, host = local_node()
        # connection -> here: raw frame batches (actors.connection._flush)
        self._inbox: list[tuple[Peer, int, str, int, int, list[bytes]]] = []  # the batches of one read
        self._receiver = Receiver(
            decoder_name(decoder_id),
            self._on_batch,
            node=self._node,
            host=host,
            on_read_end=self._on_read_end,
        )
        # A restarted decoder asks for the routes instead of waiting for the next change.
        registry.decoder_started.remote(decoder_id, os.getpid())
        freeze_heap()  # the start-up heap out of the collector's scans: no pause of tens of ms mid-feed
        if supervisor is not None:  # last: the new pid is reported once the process is ready
            supervisor.child_started.remote(decoder_name(decoder_id), os.getpid())

    async def channel_address(self) -> Address:
        """Where the connection sends its frames; answered once the routes are in (or after 10 s)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._routed.wait(), ROUTES_WAIT_S)
        senders = [sender.wait_connected() for sender in self._senders.values()]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*senders), STRATEGIES_WAIT_S)
        return await self._receiver.address()

    def set_routes(
        self, routes: dict[str, tuple[str, ...]], book_routes: dict[str, tuple[str, ...]], version: int = 0
    ) -> int:
        """Replace the routing tables (code -> strategy names) unless ``version`` is older than those in
        force (the registry's calls may run out of order here). Returns the number of routed codes.
        """
        if not self._router.set_routes(routes, book_routes, version):
            logger.info("decoder {}: routes of version {} came after newer ones: ignored", self._id, version)
            return self._router.routed_codes
        count = self._router.routed_codes
        for names in (*routes.values(), *book_routes.values()):
            for name in names:
                self._sender(name)  # open the channel now, not with the first tick
        self._routed.set()
        return count

    def _on_batch(self, peer: Peer, number: int, missed: int, body: Any) -> None:
        conn_id, epoch, received_ns, frames = body
        if missed:
            self._frames_lost += missed
            logger.warning("decoder {}: {} frames from {} were lost on the way", self._id, missed, conn_id)
        self._inbox.append((peer, number, conn_id, epoch, received_ns, frames))

    def _on_read_end(self) -> None:
        # The batches one read brought in (several when this decoder was behind) are decoded as one, per
        # stream and session: one decode, one route and one batch per strategy instead of one each.
        inbox, self._inbox = self._inbox, []
        i = 0
        while i < len(inbox):
            peer, number, conn_id, epoch, received_ns, frames = inbox[i]
            j = i + 1
            while j < len(inbox) and inbox[j][0] is peer and inbox[j][3] == epoch:
                frames += inbox[j][5]  # the first batch's list, ours: the inbox is dropped
                number = inbox[j][1]
                j += 1
            self.decode(conn_id, epoch, frames, received_ns)  # received_ns: the oldest read's
            peer.ack(number)
            i = j

    def decode(self, conn_id: str, epoch: int, frames: list[bytes], received_ns: int) -> int:
        """Decode one batch from ``conn_id``; returns how many ticks were sent on (per strategy)."""
        # A feed that sends another form (numeric strings, seconds) pays a failed try only now and then.
        usual = self._usual or self._batches % USUAL_RETRY_BATCHES == 0
        batch = normalise.decode_batch(frames, received_ns, usual=usual)
        self._usual = batch.usual
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
            delivered += self._send(TICKS, self._router.route(batch.ticks, now_ms, sound=batch.sound))
            if self._watch:
                self._tell_watched(batch.ticks, now_ms)
        if batch.books:
            self._books += len(batch.books)
            delivered += self._send(BOOKS, self._router.route(batch.books, now_ms, books=True))
            if self._watch:
                self._tell_watched(batch.books, now_ms)
        reports = self._router.reports()
        if reports:
            self._report(reports)
        self._delivered += delivered
        slow = sum(sender.outbox.dropped for sender in self._senders.values())
        drops = (self._router.ghosts, self._router.duplicates, self._malformed, slow)
        metrics.decoded(self._id, conn_id, len(batch.ticks) + len(batch.books), drops)
        return delivered

    def _report(self, reports: list[tuple[Report, tuple[str, ...]]]) -> None:
        # Once per episode (the check decides): logged and told to every holder of the code.
        for report, holders in reports:
            logger.warning("decoder {}: {}: {}", self._id, report.code or "<empty code>", report)
            for name in holders:
                handle = self._actors.get(strategy_name(name))
                if handle is not None:
                    handle.problem.remote(report.code, str(report))  # -> Strategy.on_problem(code, reason)

    def _tell_watched(self, ticks: list[Any], now_ms: int) -> None:
        seen = self._watch.intersection(t.code for t in ticks)
        if seen:
            self._watch = self._watch - seen
            age = max(0.0, (time.time_ns() // 1_000_000 - now_ms) / 1000) if now_ms else 0.0
            self._registry.codes_ticked.remote(dict.fromkeys(seen, age))  # -> CodeLiveness.ticked

    def tick_ages(self, watch: Iterable[str] = ()) -> dict[str, float]:
        """Seconds since the last trade tick or order-book push of each held code (for the registry's
        liveness check), and from now on report the first tick or book of each ``watch`` code at once
        (``Registry.codes_ticked``).
        """
        self._watch = frozenset(watch)
        return self._ages()

    def _ages(self) -> dict[str, float]:
        now_ms = time.time_ns() // 1_000_000
        seen = self._router.trades.last_seen_ms()
        for code, at in self._router.books.last_seen_ms().items():
            if at > seen.get(code, 0):
                seen[code] = at  # a code held for both: either kind is a sign of life
        return {code: max(0.0, (now_ms - at) / 1000) for code, at in seen.items()}

    def _send(self, kind: str, per_strategy: dict[str, list[Any]]) -> int:
        sent = 0
        for name, recs in per_strategy.items():
            # -> the strategy, over its channel (actors.strategy._on_batch); dropped and counted when full
            sender = self._sender(name)
            if sender.send([kind, len(recs), [self._encode(recs)]], len(recs)):
                sent += len(recs)
            news = sender.outbox.behind_news()
            if news is not None:
                self._tell_behind(name, news, sender.outbox.records)
        return sent

    def _tell_behind(self, name: str, behind: bool, held: int) -> None:  # noqa: FBT001 - private; its one caller passes the outbox's behind/caught-up flag
        if behind:
            logger.warning(
                "decoder {}: strategy {} is falling behind: {} ticks held for it; beyond {} they are dropped "
                "and told to its on_missed ([feed] strategy_queue_ticks)",
                self._id, name, held, self._max_pending_ticks,
            )  # fmt: skip
        else:
            logger.info("decoder {}: strategy {} caught up ({} ticks held for it)", self._id, name, held)

    def _sender(self, name: str) -> Sender:
        sender = self._senders.get(name)
        if sender is None:
            outbox: Outbox[Any] = Outbox(
                max_batches=self._max_pending,
                replay=False,
                max_records=self._max_pending_ticks,
                merge=join_tick_batches,
            )
            label = f"decoder:{self._id}->{name}"
            sender = Sender(label, lambda: self._resolve(name), outbox, node=self._node)
            self._senders[name] = sender
        return sender

    async def _resolve(self, name: str) -> Address | None:
        # Looked up afresh each time: a strategy removed and added again is a new actor.
        handle = self._actors.get(strategy_name(name), cache=False)
        if handle is None:
            return None
        return await handle.channel_address.remote()

    def statistics(self) -> DecoderStats:
        """Counters of this decoder."""
        boxes = {name: sender.outbox for name, sender in self._senders.items()}
        return DecoderStats(
            decoder_id=self._id,
            batches=self._batches,
            frames=self._frames,
            ticks=self._ticks,
            books=self._books,
            delivered=self._delivered,
            duplicates=self._router.duplicates,
            ghosts=self._router.ghosts,
            malformed=self._malformed,
            dropped_for_slow={name: box.dropped for name, box in boxes.items() if box.dropped},
            pending={name: box.pending for name, box in boxes.items()},
            routes=self._router.routed_codes,
            lost_on_break={name: box.lost for name, box in boxes.items() if box.lost},
            frames_lost=self._frames_lost,
            anomalies=self._router.anomalies(),
            tick_ages=self._ages(),
            pending_ticks={name: box.records for name, box in boxes.items()},
            joined={name: box.merged for name, box in boxes.items() if box.merged},
        )
