"""The Registry actor: the one serialization point for subscribe/unsubscribe. A thin shell.

Every decision is the desk's (actors.core.desk.Desk: validation, refcounts, the pool of connections,
one SubscriptionBook per connection and kind, quarantine, the 603 tell-once, routes before requests,
per-code liveness). Each method here feeds the desk one event, carries out the commands it returns, in
order, and re-arms the timer from ``Desk.next_wakeup``.

Ordering, and why this is a sync actor: Ray runs a sync, single-threaded actor's calls one at a time,
each caller's in submission order (Ray ``actors/task-orders.rst``); an async actor's calls it runs out
of order (Ray 2.60 sets ``allow_out_of_order_execution`` for every async actor, and pipelined calls
from one caller were measured to start out of order), which would let a strategy's unsubscribe
overtake its subscribe. So the registry stays sync and has no thread: its timer is an ``Alarm``
(actors.alarm), an async actor it owns, which rings ``wake`` through the same ordered queue, and also
rings when the decoders' answers (routes taken, tick ages) are done, read here with a non-blocking
``ray.wait``/``ray.get(timeout=0)``. A call never waits for another actor.

Its state (holdings, the codes the vendor refused, the pool) is saved to Ray's internal KV store at
each ``Save`` command, before the call that changed it returns, and read back in ``__init__``: a
registry restarted by Ray, SIGKILL included, loses no subscription. It does not know which requests the
server acknowledged before it died, so every connection is marked as holding nothing and each whole
set is sent again (harmless: 22004 replaces the set).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import ray
from ray.experimental import internal_kv
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import metrics
from actors.alarm import Alarm
from actors.core import desk as d
from actors.core.desk import ConnStatus, Desk, RegistryState, RegistryStatus
from actors.core.naming import REGISTRY, connection_name, decoder_name, strategy_name
from actors.log import about, logger
from actors.naming import NamedActors

#: The timer's longest sleep when the desk has nothing due; it also bounds how old the ``codes`` gauge
#: and this process's metric counts may get (actors.metrics).
IDLE_WAKEUP_S = 5.0

__all__ = ["ConnStatus", "Registry", "RegistryState", "RegistryStatus"]


class Registry:
    """Wrapped with ``ray.remote`` by the supervisor; a sync actor (max_concurrency 1)."""

    def __init__(
        self,
        connections: Mapping[str, list[str]],
        max_codes: int,
        namespace: str,
        state_key: str,
        *,
        supervisor: Any = None,
        **options: Any,
    ) -> None:
        """``options``: those of actors.core.desk.Desk (plan, tokens, gaps, stale_after_s...)."""
        self._state_key = state_key.encode()
        self._supervisor = supervisor
        self._actors = NamedActors(namespace)
        raw = internal_kv._internal_kv_get(self._state_key)  # noqa: SLF001 - Ray's cluster KV store
        state = msgspec.json.decode(raw, type=RegistryState) if raw else RegistryState()
        now = time.monotonic()
        self._desk = Desk(connections, max_codes, state=state, now=now, tag=str(os.getpid()), **options)
        self._version = 0  # the last routes version sent (_execute)
        self._awaited: dict[
            Any, tuple[str, int, int]
        ] = {}  # ref -> ("routes", decoder, call) / ("ages", ...)
        self._generation = 0
        self._armed_at: float | None = None
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        self._alarm: Any = (
            ray.remote(Alarm)
            .options(num_cpus=0, max_restarts=-1, scheduling_strategy=here)
            .remote(ray.get_runtime_context().current_actor)
        )
        self._run(now)
        if supervisor is not None:
            supervisor.child_started.remote(REGISTRY, os.getpid())

    # --- strategies' calls (Strategy.subscribe / unsubscribe, the control CLI) ---------------------

    def subscribe(self, strategy: str, codes: Iterable[str], kind: str = "trades") -> dict[str, int]:
        """Hold ``codes`` for ``strategy`` (``kind`` "trades" or "book"). Returns its holdings of that kind.

        A subscribe beyond the room of today's connections gets new ones while the plan allows.

        Raises:
            SubscriptionRefused: empty list or any bad code; nothing is changed.
            QuotaExhausted: some codes fit in no connection the plan and the live tokens allow.

        """
        return self._then_run(self._desk.subscribe(strategy, codes, kind))

    def unsubscribe(self, strategy: str, codes: Iterable[str], kind: str = "trades") -> dict[str, int]:
        """Release one reference per code. Returns the strategy's holdings of that kind.

        Raises:
            SubscriptionRefused: empty list, or a code the strategy does not hold; nothing is changed.

        """
        return self._then_run(self._desk.unsubscribe(strategy, codes, kind))

    def drop_strategy(self, strategy: str) -> int:
        """Release everything ``strategy`` holds (it is being removed). Returns how many codes it held."""
        return self._then_run(self._desk.drop_strategy(strategy))

    def holdings_of(self, strategy: str, kind: str = "trades") -> dict[str, int]:
        """The codes ``strategy`` holds, with counts."""
        return self._desk.holdings_of(strategy, kind)

    def holds_anything(self, strategy: str) -> bool:
        """Whether ``strategy`` holds any code of any kind (a restarted strategy must not resubscribe)."""
        return self._desk.holds_anything(strategy)

    # --- connections' and decoders' events --------------------------------------------------------

    def connection_up(self, conn_id: str, epoch: int) -> None:
        """A new socket is open on ``conn_id``: resubscribe its whole sets."""
        self._desk.connection_up(conn_id, epoch, now := time.monotonic())
        self._run(now)

    def connection_down(self, conn_id: str, epoch: int, stopping: bool = False) -> None:  # noqa: FBT001, FBT002
        """The socket of ``epoch`` is gone (``stopping``: the connection's clean stop)."""
        self._desk.connection_down(conn_id, epoch, now := time.monotonic(), stopping=stopping)
        self._run(now)

    def on_responses(self, conn_id: str, epoch: int, responses: list[Any]) -> None:
        """Responses read on ``conn_id`` (forwarded by its decoder)."""
        self._desk.responses(conn_id, epoch, responses, now := time.monotonic())
        self._run(now)

    def token_refused(self, conn_id: str) -> tuple[str | None, int, list[str]]:
        """The server refused ``conn_id``'s token (401): take that token out (actors.core.desk)."""
        return self._then_run(self._desk.token_refused(conn_id))

    def codes_ticked(self, ages: Mapping[str, float]) -> None:
        """A decoder saw the first tick of watched codes (stale or never started), ``ages`` seconds ago."""
        self._desk.codes_ticked(ages, now := time.monotonic())
        self._run(now)

    def decoder_started(self, decoder_id: int, pid: int) -> None:  # noqa: ARG002
        """A decoder (re)started: give it the routes."""
        self._desk.decoder_started(decoder_id, now := time.monotonic())
        self._run(now)

    def wake(self) -> None:
        """The alarm rang: read the answers that are in, then do what is due."""
        ready = (
            ray.wait(list(self._awaited), num_returns=len(self._awaited), timeout=0)[0]
            if self._awaited
            else []
        )
        for ref in ready:
            what, key, number = self._awaited.pop(ref)
            try:
                answer = ray.get(ref, timeout=0)
                why = ""
            except Exception as exc:  # noqa: BLE001 - a decoder that died meanwhile: the desk decides
                answer, why = None, type(exc).__name__
            if what == "routes":
                self._desk.routes_taken(key, number, time.monotonic())
            else:
                self._desk.ages_answered(number, key, answer, time.monotonic(), why)
        now = time.monotonic()
        try:
            self._desk.tick(now)
        except Exception:  # noqa: BLE001 - the timer must survive one bad round
            logger.exception("registry: tick failed")
        self._armed_at = None  # re-armed from here (a restarted alarm has lost its timer)
        self._run(now)
        metrics.code_states(self._desk.books(), self._desk.refused, lambda: self._desk.code_health(now))

    # --- carrying out the desk's commands ---------------------------------------------------------

    def _then_run(self, result: Any) -> Any:
        self._run(time.monotonic())
        return result

    def _run(self, now: float) -> None:
        """Carry out the desk's commands in order, then re-arm the alarm from its next wake-up."""
        refs_before = len(self._awaited)
        while commands := self._desk.commands():  # carrying one out may feed the desk an event
            for command in commands:
                self._execute(command)
        if len(self._awaited) > refs_before:
            self._alarm.wake_when.remote(list(self._awaited))  # rings when the decoders answered
        due = self._desk.next_wakeup(now)
        at = now + IDLE_WAKEUP_S if due is None else min(due, now + IDLE_WAKEUP_S)
        if self._armed_at is None or at < self._armed_at:
            self._generation += 1
            self._armed_at = at
            self._alarm.arm.remote(self._generation, at - now)  # -> wake() at ``at``

    def _execute(self, command: d.Command) -> None:  # noqa: C901, PLR0912 - one case per command
        match command:
            case d.Send(conn_id, epoch, payload):
                handle = self._actors.get(connection_name(conn_id))
                if handle is None:
                    self._desk.send_failed(conn_id)
                else:
                    handle.send.remote(epoch, payload)  # -> Connection.send: the socket
            case d.SetRoutes(decoder, trades, books, call):
                handle = self._actors.get(decoder_name(decoder))
                if handle is None:
                    self._desk.routes_taken(decoder, call, time.monotonic())
                    return
                # Wall-clock nanoseconds, strictly increasing here: comparable with a previous
                # registry's (a restarted registry's tables must not be taken for old ones).
                self._version = max(time.time_ns(), self._version + 1)
                self._awaited[handle.set_routes.remote(trades, books, self._version)] = (
                    "routes",
                    decoder,
                    call,
                )
            case d.AskAges(number, decoders, watch):
                for i in decoders:
                    handle = self._actors.get(decoder_name(i))
                    if handle is None:
                        self._desk.ages_answered(number, i, {}, time.monotonic())
                    else:
                        self._awaited[handle.tick_ages.remote(list(watch))] = ("ages", i, number)
            case d.Tell(holder, code, error):
                strategy = self._actors.get(strategy_name(holder), cache=False)  # strategies come and go
                if strategy is not None:
                    strategy.problem.remote(code, error)  # -> Strategy.on_problem(code, reason)
            case d.TellHealth(holder, changes):
                strategy = self._actors.get(strategy_name(holder), cache=False)
                if strategy is not None:
                    strategy.code_health_many.remote(changes)  # -> Strategy.on_stale / on_recovered
            case d.Save(state):
                internal_kv._internal_kv_put(self._state_key, msgspec.json.encode(state), overwrite=True)  # noqa: SLF001
            case d.Open(slot) if self._supervisor is not None:
                # -> Supervisor.open_connection: creates its decoder and connection (idempotent).
                self._supervisor.open_connection.remote(
                    slot.conn_id, slot.endpoint.value, slot.token, slot.decoder
                )
            case d.Close(conn_id) if self._supervisor is not None:
                self._supervisor.close_connection.remote(conn_id)  # -> kills its actors
            case d.Fail(conn_id, error) if self._supervisor is not None:
                self._supervisor.child_failed.remote(connection_name(conn_id), error)
            case d.Announce(conn_id):
                handle = self._actors.get(connection_name(conn_id))
                if handle is not None:
                    handle.announce.remote()  # -> connection_up here when its socket is open
            case d.Log(level, text, conn):
                (about(conn) if conn else logger).log(level.upper(), "{}", text)
            case d.Count(name, labels):
                metrics.count(name, 1, **dict(labels))

    # --- status -----------------------------------------------------------------------------------

    def status(self) -> RegistryStatus:
        """Everything a status CLI shows about subscriptions."""
        return self._desk.status(time.monotonic(), os.getpid())

    def clear_state(self) -> None:
        """Forget the saved state (a clean job shutdown)."""
        internal_kv._internal_kv_del(self._state_key)  # noqa: SLF001

    def stop(self) -> None:
        """Stop the alarm: nothing is done on time any more."""
        ray.kill(self._alarm)
