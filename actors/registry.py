"""The Registry actor: the one serialization point for subscribe/unsubscribe. A thin shell.

Every decision is the desk's (actors.core.desk.Desk). Each method here feeds the desk one event,
carries out the commands it returns, in order, and re-arms the timer from ``Desk.next_wakeup``.

Why a sync actor: Ray runs a sync, single-threaded actor's calls one at a time, each caller's in
submission order (Ray ``actors/task-orders.rst``). It runs an async actor's out of order (Ray 2.60 sets
``allow_out_of_order_execution`` for every async actor; pipelined calls from one caller were measured
to start out of order): a strategy's unsubscribe could overtake its subscribe. So it has no thread: its
timer is an ``Alarm`` (actors.alarm) it owns, which rings ``wake`` through the same ordered queue, also
when the decoders' answers are in (read with a non-blocking ``ray.wait``, ``ray.get(timeout=0)``).

Its state (``RegistryState``) is saved to Ray's internal KV store at each ``Save``, before the call
returns, and read back in ``__init__``: a registry restarted by Ray, SIGKILL included, loses no
subscription; every connection is then taken to hold nothing and each whole set is sent again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import msgspec
import ray
from ray.experimental import internal_kv
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors import metrics
from actors.alarm import Alarm
from actors.calendars import session_table
from actors.core import desk as d
from actors.core.desk import ConnStatus, Desk, RegistryState, RegistryStatus
from actors.core.naming import REGISTRY, connection_name, decoder_name, strategy_name
from actors.handles import NamedActors, resolve
from actors.log import about, logger

IDLE_WAKEUP_S = 5.0  # the alarm's longest sleep: bounds the age of the ``codes`` gauge and metric counts
T = TypeVar("T")

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
        """``options``: those of actors.core.desk.Desk (plan, tokens, gaps, stale_after_s...), but
        ``sessions`` is the ``[feed.sessions]`` table, made a SessionTable here (actors.calendars).
        """
        self._state_key = state_key.encode()
        self._supervisor = supervisor = resolve(supervisor)  # by name (actors.handles)
        self._actors = NamedActors(namespace)
        raw = internal_kv._internal_kv_get(self._state_key)  # noqa: SLF001 - Ray's cluster KV store
        state = msgspec.json.decode(raw, type=RegistryState) if raw else RegistryState()
        now = time.monotonic()
        table = session_table(options.pop("sessions", None) or {})
        # Sessions are wall-clock things; the desk's clock is monotonic (actors.core.codeliveness, rule 1).
        options["wall_offset_s"] = time.time() - now
        options["sessions"] = table.session_of
        self._desk = Desk(connections, max_codes, state=state, now=now, tag=str(os.getpid()), **options)
        self._version = 0  # the last routes version sent (_execute)
        # ref -> ("routes", decoder, call) or ("ages", decoder, round): the decoders' answers awaited
        self._awaited: dict[Any, tuple[str, int, int]] = {}
        self._fresh: list[Any] = []  # refs awaited since the last _run: the alarm is to watch them
        self._generation = 0
        self._armed_at: float | None = None
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        alarm = ray.remote(Alarm).options(num_cpus=0, max_restarts=-1, scheduling_strategy=here)
        self._alarm: Any = alarm.remote(ray.get_runtime_context().current_actor)  # dies with this actor
        self._run(now)
        if supervisor is not None:
            supervisor.child_started.remote(REGISTRY, os.getpid())

    # --- strategies' calls (Strategy.subscribe / unsubscribe, the control CLI) ---------------------

    def subscribe(self, strategy: str, codes: Iterable[str], kind: str = "trades") -> dict[str, int]:
        """Hold ``codes`` for ``strategy`` (``kind`` "trades" or "book"). Returns its holdings of that kind.

        Raises:
            SubscriptionRefused: empty list or any bad code; nothing is changed.
            QuotaExhausted: some codes fit in no connection the plan and the live tokens allow.

        """
        return self._feed(self._desk.subscribe, strategy, codes, kind)

    def unsubscribe(self, strategy: str, codes: Iterable[str], kind: str = "trades") -> dict[str, int]:
        """Release one reference per code. Returns the strategy's holdings of that kind.

        Raises:
            SubscriptionRefused: empty list, or a code the strategy does not hold; nothing is changed.

        """
        return self._feed(self._desk.unsubscribe, strategy, codes, kind)

    def drop_strategy(self, strategy: str) -> int:
        """Release everything ``strategy`` holds (it is being removed). Returns how many codes it held."""
        return self._feed(self._desk.drop_strategy, strategy)

    def holdings_of(self, strategy: str, kind: str = "trades") -> dict[str, int]:
        """The codes ``strategy`` holds, with counts."""
        return self._desk.holdings_of(strategy, kind)

    def holds_anything(self, strategy: str) -> bool:
        """Whether ``strategy`` holds any code of any kind (a restarted strategy must not resubscribe)."""
        return self._desk.holds_anything(strategy)

    # --- connections' and decoders' events --------------------------------------------------------

    def connection_up(self, conn_id: str, epoch: int) -> None:
        """A new socket is open on ``conn_id``: resubscribe its whole sets."""
        self._feed(self._desk.connection_up, conn_id, epoch, time.monotonic())

    def connection_down(self, conn_id: str, epoch: int, stopping: bool = False) -> None:  # noqa: FBT001, FBT002
        """The socket of ``epoch`` is gone (``stopping``: the connection's clean stop)."""
        self._feed(self._desk.connection_down, conn_id, epoch, time.monotonic(), stopping=stopping)

    def on_responses(self, conn_id: str, epoch: int, responses: list[Any]) -> None:
        """Responses read on ``conn_id`` (forwarded by its decoder)."""
        self._feed(self._desk.responses, conn_id, epoch, responses, time.monotonic())

    def token_refused(self, conn_id: str) -> tuple[str | None, int, list[str]]:
        """The server refused ``conn_id``'s token (401): take that token out (actors.core.desk)."""
        return self._feed(self._desk.token_refused, conn_id)

    def codes_ticked(self, ages: Mapping[str, float]) -> None:
        """A decoder saw the first tick of watched codes (stale or never started), ``ages`` seconds ago."""
        self._feed(self._desk.codes_ticked, ages, time.monotonic())

    def decoder_started(self, decoder_id: int, pid: int) -> None:  # noqa: ARG002
        """A decoder (re)started: give it the routes."""
        self._feed(self._desk.decoder_started, decoder_id, time.monotonic())

    def wake(self) -> None:
        """The alarm rang: read the answers that are in, then do what is due."""
        refs = list(self._awaited)
        for ref in ray.wait(refs, num_returns=len(refs), timeout=0)[0] if refs else []:
            what, key, number = self._awaited.pop(ref)
            try:
                answer, why = ray.get(ref, timeout=0), ""
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

    def _feed(self, event: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Feed the desk ``event``, carry out its commands, re-arm; returns what the event returned."""
        result = event(*args, **kwargs)
        self._run(time.monotonic())
        return result

    def _await(self, ref: Any, what: tuple[str, int, int]) -> None:
        self._awaited[ref] = what
        self._fresh.append(ref)  # handed to the alarm at the end of this _run

    def _run(self, now: float) -> None:
        """Carry out the desk's commands in order, then re-arm the alarm from its next wake-up."""
        while commands := self._desk.commands():  # carrying one out may feed the desk an event
            for command in commands:
                self._execute(command)
        if self._fresh:
            self._alarm.wake_when.remote(self._fresh)  # rings when the decoders answered
            self._fresh = []
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
                self._await(handle.set_routes.remote(trades, books, self._version), ("routes", decoder, call))
            case d.AskAges(number, decoders, watch):
                for i in decoders:
                    handle = self._actors.get(decoder_name(i))
                    if handle is None:
                        self._desk.ages_answered(number, i, {}, time.monotonic())
                    else:
                        self._await(handle.tick_ages.remote(list(watch)), ("ages", i, number))
            case d.Tell(holder, code, error) if to := self._actors.get(strategy_name(holder), cache=False):
                to.problem.remote(code, error)  # -> Strategy.on_problem (strategies come and go: no cache)
            case d.TellHealth(holder, changes) if to := self._actors.get(strategy_name(holder), cache=False):
                to.code_health_many.remote(changes)  # -> Strategy.on_stale / on_recovered, in order
            case d.TellSession(holder, changes) if to := self._actors.get(strategy_name(holder), cache=False):
                to.session_many.remote(changes)  # -> Strategy.on_session, in order
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
