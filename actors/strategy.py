"""The Strategy base class: subclass it, override ``on_ticks``; the supervisor runs it as a Ray actor.

Example::

    from actors import Strategy, Tick

    class Spread(Strategy):
        async def on_start(self) -> None:             # the configured symbols are already held
            await self.subscribe(["XAUUSD"], kind="book")

        async def on_ticks(self, ticks: list[Tick]) -> None:
            for t in ticks:
                print(t.code, t.seq, t.price)   # exact decimal strings; t.decimal_price() for Decimal

A strategy receives only the codes it holds, in per-code seq order, in batches, over a channel from
each decoder (actors.channel; not a Ray call). Delivery never waits for the strategy: while it is
behind, a decoder joins its new ticks into one waiting batch (up to ``[feed] strategy_queue_ticks``),
and the batches waiting here go to ``on_ticks`` in one call, so a strategy that pauses catches up
instead of losing ticks. Batches queue here up to ``queue_batches`` from each decoder; beyond that
its oldest batch is dropped, and every dropped tick is counted
(``statistics().missed``) and reported to ``on_missed``, never silently lost: so are the ticks a
decoder could not send (its bounded outbox was full, or this strategy was restarting). A duplicate
or older tick never reaches ``on_ticks``; after a reset of the vendor's seq counter (seq lower,
tick_time later) the ticks go on from the new seq (see actors.core.tickcheck, rule 2).
The rules live in actors.core.delivery; this shell moves bytes and calls the hooks.

A code that goes quiet is told to its holders: ``on_stale(code, silent_for_s)`` when its connection
died or it got no tick for ``[feed] stale_after_s`` seconds, ``on_recovered(code, silent_for_s)`` when
its ticks return; a code that never started, a corrupt tick or a sequence anomaly goes to
``on_problem``. A code whose trading session (``[feed.sessions]``) is closed is not stale: its holders
get ``on_session(code, False, at)`` at the close and ``on_session(code, True, at)`` at the open.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import msgspec
import ray

from actors import metrics
from actors.channel import Address, Peer, Receiver, local_node
from actors.core import normalise
from actors.core.delivery import BOOKS, TICKS, Batch, Delivery, MissedReport
from actors.core.errors import FeedError, SubscriptionRefused
from actors.core.naming import strategy_name
from actors.handles import resolve
from actors.hot import direct, freeze_heap
from actors.log import logger


class StrategyStats(msgspec.Struct, frozen=True):
    """Counters of one strategy actor, for ``statistics()`` and the status view."""

    name: str
    batches: int
    ticks: int
    books: int
    missed: int
    out_of_order: int  # duplicates or older seqs kept from on_ticks/on_books (e.g. replayed frames)
    queued_batches: int
    last_tick_age_s: float
    pid: int


class Strategy:
    """Base class of user strategies. Override ``on_ticks`` (and optionally the other ``on_*`` hooks).

    A subclass that defines ``__init__`` takes and passes on ``(name, symbols, options)``::

        def __init__(self, name: str, symbols: list[str], options: dict[str, Any]) -> None:
            super().__init__(name, symbols, options)
            self.window = int(self.options.get("window", 20))

    Read the time with ``self.clock()`` (seconds since the epoch): the test harness
    (``actors.testing``) and replay set it, so a strategy's timing is testable.

    Hooks run on the actor's event loop, one at a time per kind: ``on_ticks`` and ``on_books`` are called
    by one delivery loop, never concurrently with themselves or each other; ``on_stale``,
    ``on_recovered`` and ``on_problem`` come from the registry and may start while ``on_ticks`` awaits
    something (they interleave at ``await``, never in parallel threads). A hook that blocks (CPU work or
    a blocking call without ``await``) holds up every hook of this strategy and its channel: meanwhile
    decoders join its ticks into one waiting batch up to ``[feed] strategy_queue_ticks``, and beyond
    that they are dropped and counted (``on_missed``); the feed and other strategies are not slowed.
    """

    #: The time source of this strategy: wall-clock seconds; the harness and replay replace it.
    clock: Callable[[], float] = staticmethod(time.time)

    def __init__(
        self,
        name: str,
        symbols: Iterable[str] = (),
        options: Mapping[str, Any] | None = None,
        *,
        registry: Any = None,
        supervisor: Any = None,
        queue_batches: int | None = None,
    ) -> None:
        # The system's wiring comes from ``hosted`` (the actor) or the test harness, so a subclass's own
        # __init__ needs to pass on only (name, symbols, options); explicit keywords still win.
        wiring = _WIRING.get()
        if wiring is not None:
            registry = registry if registry is not None else wiring.registry
            supervisor = supervisor if supervisor is not None else wiring.supervisor
            queue_batches = queue_batches if queue_batches is not None else wiring.queue_batches
            self.clock = wiring.clock
        if queue_batches is None:
            queue_batches = 64
        self.name = name
        self.symbols = list(symbols)
        self.options = dict(options or {})
        self._registry = registry
        self._supervisor = supervisor
        self._delivery = Delivery(max_batches=queue_batches)
        self._wake = asyncio.Event()
        # Set while the drain loop has nothing to do: nothing queued, no missed count to report and no
        # hook running. Cleared by every enqueue, set by the loop only when it goes back to waiting.
        self._idle = asyncio.Event()
        self._idle.set()
        self._decode_ticks = msgspec.msgpack.Decoder(list[normalise.Tick]).decode
        self._decode_books = msgspec.msgpack.Decoder(list[normalise.BookTick]).decode
        self._batches = self._ticks = self._books = 0
        self._last_tick_at = 0.0
        self._stopped = False
        self._drain_task: asyncio.Task[None] | None = None
        self._receiver: Receiver | None = None
        # Called per batch: past Ray's tracing wrappers (actors.hot), the user's hooks included.
        direct(self, "_enqueue", "_dispatch", "_send_acks", "on_ticks", "on_books", "on_missed")
        with contextlib.suppress(RuntimeError):  # outside an event loop (a plain instance): on start()
            asyncio.get_running_loop()
            self._open_channel()
        freeze_heap()  # the start-up heap out of the collector's scans: no pause of tens of ms mid-feed
        if supervisor is not None:  # last: the new pid is reported once the process is ready
            supervisor.child_started.remote(strategy_name(name), os.getpid())

    # --- what users call ------------------------------------------------------------------------

    async def subscribe(self, codes: Iterable[str], kind: str = "trades") -> dict[str, int]:
        """Hold ``codes`` (refcounted per strategy): ``kind`` "trades" (22004, delivered to ``on_ticks``)
        or "book" (22002, delivered to ``on_books``). Returns this strategy's holdings of that kind.

        Raises:
            SubscriptionRefused: empty list or invalid codes; nothing changed. ``problems`` says why per code.

        """
        return await self._registry.subscribe.remote(self.name, _code_list(codes), kind)

    async def unsubscribe(self, codes: Iterable[str], kind: str = "trades") -> dict[str, int]:
        """Release one reference per code. Returns this strategy's holdings of that kind.

        Raises:
            SubscriptionRefused: a code this strategy does not hold; nothing changed.

        """
        return await self._registry.unsubscribe.remote(self.name, _code_list(codes), kind)

    # --- what users override -------------------------------------------------------------------

    async def on_start(self) -> None:
        """Called once per process start (also after a restart), after the configured ``symbols``
        are subscribed. Subscribe more here; the registry keeps what you hold across restarts.
        """

    async def on_ticks(self, ticks: list[normalise.Tick]) -> None:
        """A batch of trades, in per-code seq order."""

    async def on_books(self, books: list[normalise.BookTick]) -> None:
        """A batch of order-book snapshots, in per-code seq order."""

    async def on_missed(self, count: int) -> None:
        """``count`` ticks were dropped because this strategy was too slow. Logged by default."""
        logger.warning("strategy {}: {} ticks dropped because it was too slow", self.name, count)

    async def on_problem(self, code: str, reason: str) -> None:
        """Something is wrong with ``code``: the vendor refused it after it was accepted locally (e.g.
        600 code invalid), it never started, or its ticks were corrupt or out of sequence (once per
        episode). ``reason`` says which and what was done. Logged by default.
        """
        logger.error("strategy {}: {}: {}", self.name, code, reason)

    async def on_stale(self, code: str, silent_for_s: float) -> None:
        """``code`` got no tick for ``silent_for_s`` seconds: its connection died (every code of it at
        once) or the code alone went quiet. Pause what depends on it; logged by default.
        """
        logger.warning("strategy {}: {} is stale ({:.1f} s without a tick)", self.name, code, silent_for_s)

    async def on_recovered(self, code: str, silent_for_s: float) -> None:
        """Ticks of ``code`` are back after ``silent_for_s`` seconds without. Logged by default."""
        logger.info("strategy {}: {} recovered after {:.1f} s", self.name, code, silent_for_s)

    async def on_session(self, code: str, open: bool, at: float) -> None:  # noqa: A002, FBT001
        """The trading session of ``code`` (``[feed.sessions]``, else its market's default) opened
        (``open`` True) or closed at ``at``, wall-clock epoch seconds. While it is closed the code is
        ``closed``, never stale; at the open it has ``stale_after_s + open_grace_s`` for its first tick.
        Does nothing by default.
        """

    async def on_stop(self) -> None:
        """Called on a clean shutdown: flush what you hold."""

    # --- what the system calls (remote methods) -------------------------------------------------

    async def start(self) -> int:
        """Start delivery, subscribe the configured symbols, run ``on_start``; once per process.

        After a restart the registry still holds this strategy's codes, so the configured symbols
        are subscribed only when it holds nothing: a restart never doubles the refcounts.
        """
        if self._drain_task is None:
            self._open_channel()
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())
            if self._registry is not None and self.symbols:  # noqa: SIM102 - the local check first, the registry's remote call only when needed
                if not await self._registry.holds_anything.remote(self.name):
                    try:
                        await self.subscribe(self.symbols)
                    except SubscriptionRefused as exc:
                        for code, why in exc.problems.items():
                            await self.on_problem(code, why)
            await self.on_start()
        return os.getpid()

    def _open_channel(self) -> None:
        if self._receiver is None:
            node, host = local_node()
            # decoders -> here: one msgpack tick batch per decoder batch (actors.decoder._send)
            self._receiver = Receiver(
                f"strategy-{self.name}", self._on_batch, node=node, host=host, on_lost=self._delivery.forget
            )

    async def channel_address(self) -> Address:
        """Where decoders send this strategy's batches (actors.channel)."""
        self._open_channel()
        assert self._receiver is not None
        return await self._receiver.address()

    def _on_batch(self, peer: Peer, number: int, missed: int, body: Any) -> None:
        kind, count, payloads = body  # payloads: encoded record lists (several: the decoder joined them)
        self._enqueue(Batch(kind, payloads, count, peer, number), missed)

    async def deliver(self, kind: str, payload: bytes, missed: int = 0) -> None:
        """Queue a batch handed over by a Ray call (tests, tools); never waits for ``on_ticks``."""
        decode = self._decode_ticks if kind == TICKS else self._decode_books
        self._enqueue(Batch(kind, [payload], len(decode(payload))), missed)

    def _enqueue(self, batch: Batch, missed: int) -> None:
        if self._drain_task is None:
            # The first batch may come before the supervisor's start(): start here, once per process.
            asyncio.get_running_loop().create_task(self.start())
        self._delivery.push(batch, missed)
        self._idle.clear()
        self._wake.set()

    def _send_acks(self) -> None:
        for peer, number in self._delivery.take_acks().items():
            peer.ack(number)  # type: ignore[attr-defined]  # the sources are the channel's peers

    async def _drain(self) -> None:
        delivery = self._delivery
        while not self._stopped:
            item = delivery.next_run()
            if item is None:
                # Only here, between batches, is the strategy idle: not while a batch is in a hook.
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if isinstance(item, MissedReport):
                # Told before the next batch, so the strategy knows where the gap is.
                try:
                    await self.on_missed(item.count)
                except Exception:  # noqa: BLE001 - a user bug must not stop delivery
                    logger.exception("strategy {}: on_missed raised; delivery goes on", self.name)
                delivery.reported()
            else:
                # The batches of one kind waiting in a row: one hook call (a strategy behind catches up)
                kind = item[0].kind
                try:
                    await self._dispatch(kind, [p for batch in item for p in batch.payload])
                except Exception:  # noqa: BLE001 - a user bug must not stop delivery
                    logger.exception("strategy {}: {} raised; delivery goes on", self.name, kind)
                for batch in item:
                    delivery.finished(batch)
            self._send_acks()

    async def _dispatch(self, kind: str, payloads: list[bytes]) -> None:
        if kind == TICKS:
            ticks = self._decode_all(self._decode_ticks, payloads)
            ticks = self._delivery.in_order(ticks, TICKS)
            if ticks:
                self._batches += 1
                self._ticks += len(ticks)
                self._last_tick_at = time.monotonic()
                metrics.delivered(self.name, ticks)
                await self.on_ticks(ticks)
        else:
            books = self._delivery.in_order(self._decode_all(self._decode_books, payloads), BOOKS)
            if books:
                self._books += len(books)
                metrics.delivered(self.name, books)
                await self.on_books(books)

    @staticmethod
    def _decode_all(decode: Any, payloads: list[bytes]) -> list[Any]:
        if len(payloads) == 1:
            return decode(payloads[0])
        out: list[Any] = []
        for payload in payloads:
            out += decode(payload)
        return out

    async def problem(self, code: str, error: FeedError | str) -> None:
        """The registry reports a code the vendor refused ("*": the whole request, e.g. 603), or a
        decoder or the registry reports a problem with ``code`` in words (``error`` a str).
        """
        await self.on_problem(code, error if isinstance(error, str) else f"the vendor refused it: {error}")

    async def code_health(self, event: str, code: str, silent_for_s: float) -> None:
        """The registry reports ``event`` "stale" or "recovered" for ``code`` (actors.core.codeliveness)."""
        hook = self.on_stale if event == "stale" else self.on_recovered
        try:
            await hook(code, silent_for_s)
        except Exception:  # noqa: BLE001 - a user bug must not break the registry's reports
            logger.exception("strategy {}: on_{} raised", self.name, event)

    async def session_many(self, changes: list[tuple[str, bool, float]]) -> None:
        """The registry's session changes of one round, in order: ``(code, open, at)`` each."""
        for code, is_open, at in changes:
            try:
                await self.on_session(code, is_open, at)
            except Exception:  # noqa: BLE001 - a user bug must not break the registry's reports
                logger.exception("strategy {}: on_session raised", self.name)

    async def code_health_many(self, events: list[tuple[str, str, float]]) -> None:
        """The registry's reports of one round, in order: ``(event, code, silent_for_s)`` each."""
        for event, code, silent_for_s in events:
            await self.code_health(event, code, silent_for_s)

    async def statistics(self) -> StrategyStats:
        """Counters of this strategy."""
        age = time.monotonic() - self._last_tick_at if self._last_tick_at else -1.0
        return StrategyStats(
            name=self.name,
            batches=self._batches,
            ticks=self._ticks,
            books=self._books,
            missed=self._delivery.missed,
            out_of_order=self._delivery.out_of_order,
            queued_batches=self._delivery.queued,
            last_tick_age_s=age,
            pid=os.getpid(),
        )

    async def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every queued batch has been through its hook (for a clean stop and for tests).

        Idle means nothing queued, no missed count waiting for ``on_missed`` and no hook running: the
        last batch taken off the queue may still be inside ``on_ticks``, and that is not idle.

        Returns:
            True when idle, False when ``timeout`` seconds passed first.

        """
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Deliver what is queued and let the batch inside a hook finish (up to 3 s), then run ``on_stop``."""
        await self.wait_idle(3.0)
        self._stopped = True
        self._wake.set()
        if self._drain_task is not None:
            self._drain_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain_task
        if self._receiver is not None:
            self._receiver.close()
        await self.on_stop()


def _code_list(codes: Iterable[str]) -> list[str]:
    if isinstance(codes, str):
        raise TypeError(f"pass a list of codes, not the string {codes!r}")
    return list(codes)


class Wiring(NamedTuple):
    """What the system hands a strategy besides its own arguments (see ``hosted``)."""

    registry: Any
    supervisor: Any
    queue_batches: int
    clock: Callable[[], float] = time.time


_WIRING: contextvars.ContextVar[Wiring | None] = contextvars.ContextVar(
    "tickvisor_strategy_wiring", default=None
)


def check_init(cls: type[Strategy], kind: str) -> str | None:
    """Why ``cls`` cannot be built as ``cls(name, symbols, options)``, or None when it can."""
    try:
        inspect.signature(cls).bind("name", [], {})
    except TypeError as exc:
        return (
            f"{kind}.__init__ cannot take (name, symbols, options): {exc}; write "
            "'def __init__(self, name, symbols=(), options=None): super().__init__(name, symbols, options)'"
        )
    except ValueError:  # no signature to read (a C type): trust it
        return None
    return None


def build(
    cls: type[Strategy], name: str, symbols: Iterable[str], options: Mapping[str, Any], wiring: Wiring
) -> Any:
    """An instance of ``cls`` built with only its own arguments, the system's ``wiring`` beside them."""
    token = _WIRING.set(wiring)
    try:
        return cls(name, list(symbols), dict(options))
    finally:
        _WIRING.reset(token)


def _hosted_init(
    self: Strategy,
    name: str,
    symbols: Iterable[str] = (),
    options: Mapping[str, Any] | None = None,
    *,
    registry: Any = None,
    supervisor: Any = None,
    queue_batches: int = 64,
) -> None:
    # Module-level, so Ray pickles it by reference (a closure would drag the ContextVar along).
    cls: type[Strategy] = type(self)._tickvisor_user_class  # type: ignore[attr-defined]  # noqa: SLF001 - set by hosted()
    # The system passes its peers by name (actors.handles): looked up here, once per process.
    token = _WIRING.set(Wiring(resolve(registry), resolve(supervisor), queue_batches))
    try:
        cls.__init__(self, name, list(symbols), dict(options or {}))
    finally:
        _WIRING.reset(token)


def hosted(cls: type[Strategy]) -> type[Strategy]:
    """``cls`` as the actor runs it: it takes the wiring as keywords, and ``cls.__init__`` sees only
    ``(name, symbols, options)``, whether or not it passes unknown keyword arguments on.
    """
    attrs = {
        "__init__": _hosted_init,
        "_tickvisor_user_class": cls,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
    }
    return type(cls.__name__, (cls,), attrs)


def strategy_actor(cls: type[Strategy]) -> Any:
    """The Ray actor class for a Strategy subclass (it mostly waits: no CPU reserved)."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"{cls!r} is not a subclass of actors.Strategy")
    return ray.remote(num_cpus=0)(hosted(cls))
