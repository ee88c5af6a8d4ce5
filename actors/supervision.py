"""The Supervisor actor: owns the restart policy of every other actor, and comes back when killed.

Children (all named in the job's namespace, so a status CLI can reach them through the supervisor):
``registry``, ``decoder:<i>``, ``connection:<endpoint>-<i>``, ``strategy:<name>``, ``heartbeat``.
Ray restarts a child whose process died (``max_restarts=-1``); the child reports each start with
``child_started``, so the supervisor sees every restart and its cause.

Who creates whom. ``launch()`` runs in the job's driver (supervisor.py, actors.control.Job.start) and
creates the Supervisor and every configured child there, so the driver owns them all. Ray makes an
actor fate-share with the process that created it (unless it is detached): a Supervisor that created
its children would take them all down when its process died. Owned by the driver, they outlive a
SIGKILL of the Supervisor, and they still die with the driver, so a job whose driver dies leaves
nothing running, as before. Ray restarts the Supervisor (``max_restarts=-1``); its ``__init__`` reads
back its saved state (``SupervisorState``: children's pids, restart intensities, events, strategies
added while running), finds every child again by name, never creates one, and records the restart
as an event of the child ``supervisor``. Calls made to it meanwhile (children's reports, the
watchdog's restart requests, the driver's polls) wait for it and are retried
(``max_task_retries=-1``). The data path (connection -> decoder -> strategy) never goes through the
Supervisor: ticks keep flowing while it restarts.

Strategies added while running (``add_strategy``) are created by the Supervisor itself, so they are
detached actors (owned by it, they would die with it); their names are saved, and ``stop`` kills
them. A driver that dies without a stop leaves them behind (README, "Limits and known gaps").

Restart policy (Erlang/OTP style, actors.core.backoff.RestartIntensity): each child may restart at most
``restart.max_restarts`` times within ``restart.within_s``. Beyond that the supervisor escalates once:
it restarts the whole group of connections, spaced with jitter (never a reconnection storm). If the
child exceeds the intensity again after that, the supervisor stops with an EscalationError that the
main job prints and exits on. The Supervisor's own restarts count under the same intensity; beyond
it there is no group to restart, and it stops with ChildFailed("supervisor", ...). Reconnects
themselves back off exponentially with jitter inside each Connection actor, and there is never more
than one socket per Connection actor, so the job never opens more connections than the plan allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import os
import pickle
import random
import time
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import ray
from ray.exceptions import RayTaskError
from ray.experimental import internal_kv

from actors.log import logger

from actors.core import wire
from actors.core.backoff import RestartIntensity
from actors.builtin import BUILTIN
from actors.connection import Connection, ConnectionConfig
from actors.decoder import Decoder
from actors.core.errors import ChildFailed, ConfigError, ConnectFailed, EscalationError, FeedError
from actors.heartbeat import Heartbeat
from actors.core.naming import HEARTBEAT, REGISTRY, SUPERVISOR, connection_name, decoder_name, strategy_name
from actors.naming import NamedActors
from actors.registry import Registry
from actors.core.settings import Secret, Settings
from actors.strategy import Strategy, strategy_actor

NAMESPACE = "tickvisor"


class ChildEvent(msgspec.Struct, frozen=True):
    at: float  # time.time()
    child: str  # a child's actor name, or "supervisor" for the Supervisor's own restarts
    event: str  # "started", "restarted", "failed", "restart", "escalated", "gave up"
    reason: str


EVENTS_KEPT = 200  # supervision events kept (and saved); the status shows the last 20


class SupervisorState(msgspec.Struct):
    """What survives a restart of the Supervisor: saved to Ray's internal KV after every change, under
    ``tickvisor/<run_id>/supervisor``, read back in ``__init__``, deleted by a clean stop."""

    pid: int  # the process that saved it: after a restart, the one that died
    started: bool = False
    stopping: bool = False
    pids: dict[str, int] = {}
    events: list[ChildEvent] = []
    restarts: dict[str, list[float]] = {}  # child -> its restart times (time.time()) still kept
    escalated: dict[str, float] = {}  # child -> when it was escalated (time.time())
    added: list[str] = []  # actor names of the strategies added while running (detached)
    failure: bytes = b""  # why the job must stop, a pickled FeedError; empty while it runs


def load_strategy_class(kind: str, key: str = "strategies.kind") -> type[Strategy]:
    """The class for a strategy ``kind``: "recorder", "console" or "package.module:Class".

    Raises:
        ConfigError: (naming ``key``) the module or class cannot be imported, or is not a Strategy subclass.
    """
    if kind in BUILTIN:
        return BUILTIN[kind]
    module_name, _, class_name = kind.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(key, f"cannot import {kind!r}: {exc}; is its package under the job's directory?") from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(key, f"{kind!r} is not a subclass of actors.Strategy")
    return cls


def connection_ids(settings: Settings) -> dict[str, list[str]]:
    """Connection ids per configured endpoint: enough for the configured symbols within the plan."""
    limits = settings.plan_limits()
    wanted: dict[str, set[str]] = {}
    for strategy in settings.strategies:
        for code in strategy.symbols:
            wanted.setdefault(wire.endpoint_of(code).value, set()).add(code)
    out = {}
    for endpoint in settings.endpoints:
        need = max(1, math.ceil(len(wanted.get(endpoint, ())) / limits.codes_per_connection))
        out[endpoint] = [f"{endpoint}-{i}" for i in range(min(need, limits.connections_per_token))]
    return out


class Launched(NamedTuple):
    """What ``launch`` created. The caller must keep it as long as the job runs: Ray ends a
    non-detached actor once the process that created it holds no handle to it any more."""

    supervisor: Any
    children: list[Any]


def launch(settings: Settings, token: Secret, run_id: str, namespace: str = NAMESPACE) -> Launched:
    """Create the Supervisor and every configured child from the calling process, the job's driver,
    which owns them all. Call ``start`` on the Supervisor next.

    Every actor's restart options are set here, in one place.

    Raises:
        ValueError: an actor of one of these names already runs in ``namespace`` (another job runs
            there); whatever was created is killed again.
        ConfigError: a strategy's ``kind`` cannot be imported.
    """
    supervisor = (
        ray.remote(Supervisor)
        .options(
            name=SUPERVISOR,
            namespace=namespace,
            num_cpus=0,
            max_concurrency=256,
            max_restarts=-1,  # a killed Supervisor comes back and finds its children by name
            max_task_retries=-1,  # calls to it wait for the restart instead of failing
        )
        .remote(settings, token, run_id, namespace)
    )
    created: list[Any] = []
    try:
        _create_children(settings, token, run_id, namespace, supervisor, created)
    except BaseException:
        for handle in [supervisor, *created]:
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
        raise
    return Launched(supervisor, created)


def _create_children(
    settings: Settings, token: Secret, run_id: str, namespace: str, supervisor: Any, created: list[Any]
) -> None:
    """Create every configured child, named in ``namespace``, each reporting to ``supervisor``.

    Nothing is awaited: their processes start in parallel, and ``Supervisor.start`` waits for them.
    """
    s = settings
    ns = namespace
    conn_ids = connection_ids(s)
    registry = (
        ray.remote(Registry)
        .options(name=REGISTRY, namespace=ns, num_cpus=0, max_restarts=-1, max_task_retries=3)
        .remote(
            conn_ids,
            s.plan_limits().codes_per_connection,
            ns,
            f"tickvisor/{run_id}/registry",
            supervisor=supervisor,
            stale_after_s={c: s.stale_after_s(endpoint) for endpoint, ids in conn_ids.items() for c in ids},
        )
    )
    created.append(registry)
    decoders = []
    for i in range(sum(len(ids) for ids in conn_ids.values())):
        decoder = (
            ray.remote(Decoder)
            .options(name=decoder_name(i), namespace=ns, num_cpus=0, max_restarts=-1, max_task_retries=-1)
            .remote(
                i, registry, ns, s.feed.strategy_queue_batches, supervisor, deliver_corrupt=s.feed.deliver_corrupt
            )
        )
        created.append(decoder)
        decoders.append(decoder)
    cfg = ConnectionConfig(
        heartbeat_interval_s=s.feed.heartbeat_interval_s,
        silence_deadline_s=s.feed.silence_deadline_s,
        batch_max_frames=s.feed.batch_max_frames,
        batch_max_age_ms=s.feed.batch_max_age_ms,
        backoff_initial_s=s.restart.backoff_initial_s,
        backoff_max_s=s.restart.backoff_max_s,
        backoff_jitter=s.restart.backoff_jitter,
    )
    url_of = {endpoint: s.endpoints[endpoint].url for endpoint in conn_ids}
    connections: dict[str, Any] = {}
    k = 0
    for endpoint, ids in conn_ids.items():
        for conn_id in ids:
            handle = (
                ray.remote(Connection)
                .options(name=connection_name(conn_id), namespace=ns, num_cpus=0, max_restarts=-1)
                .remote(conn_id, endpoint, url_of[endpoint], token, cfg, decoders[k], registry, supervisor)
            )
            created.append(handle)
            k += 1
            connections[conn_id] = handle
    check_every = min(s.feed.heartbeat_interval_s / 2, s.feed.silence_deadline_s / 4, 1.0)
    created.append(
        ray.remote(Heartbeat)
        .options(name=HEARTBEAT, namespace=ns, num_cpus=0, max_restarts=-1)
        .remote(connections, supervisor, check_every_s=check_every, ping_deadline_s=s.feed.ping_deadline_s)
    )
    for st in s.strategies:
        symbols, options = list(st.symbols), _strategy_options(st)
        created.append(_strategy_actor(s, ns, registry, supervisor, st.name, st.kind, symbols, options))


def _strategy_actor(
    settings: Settings,
    namespace: str,
    registry: Any,
    supervisor: Any,
    name: str,
    kind: str,
    symbols: list[str],
    options: dict[str, Any],
    *,
    detached: bool = False,
) -> Any:
    lifetime = {"lifetime": "detached"} if detached else {}
    return (
        strategy_actor(load_strategy_class(kind))
        .options(
            name=strategy_name(name), namespace=namespace, max_restarts=-1, max_concurrency=64, **lifetime
        )
        .remote(
            name,
            symbols,
            options,
            registry=registry,
            supervisor=supervisor,
            queue_batches=settings.feed.strategy_queue_batches,
        )
    )


def _strategy_options(strategy: Any) -> dict[str, Any]:
    options = dict(strategy.options)
    if strategy.path:
        options["path"] = str(Path(strategy.path).expanduser().resolve())
    return options


def _pickled(failure: FeedError | None) -> bytes:
    if failure is None:
        return b""
    try:
        return pickle.dumps(failure)
    except Exception:  # noqa: BLE001 - keep the text when the type does not pickle
        return pickle.dumps(FeedError(str(failure)))


class Supervisor:
    """Created with ``ray.remote`` by ``launch()``, in the job's driver."""

    def __init__(self, settings: Settings, token: Secret, run_id: str, namespace: str = NAMESPACE) -> None:
        self._settings = settings
        self._token = token
        self._run_id = run_id
        self._namespace = namespace
        self._self = ray.get_runtime_context().current_actor
        self._conn_ids = connection_ids(settings)
        self._actors = NamedActors(namespace)
        self._children: dict[str, Any] = {}
        self._added: list[str] = []
        self._pids: dict[str, int] = {}
        self._events: list[ChildEvent] = []
        self._intensity: dict[str, RestartIntensity] = {}
        self._escalated: dict[str, float] = {}
        self._failure: FeedError | None = None
        self._started = False
        self._stopping = False
        self._stopped = False  # the saved state is deleted: never write it again
        self._rng = random.Random()
        self._state_key = f"tickvisor/{run_id}/supervisor".encode()
        raw = internal_kv._internal_kv_get(self._state_key)  # noqa: SLF001 - Ray's cluster KV store
        if raw:  # this run's Supervisor ran before: Ray restarted it
            self._restore(msgspec.msgpack.decode(raw, type=SupervisorState))
        self._save()

    # --- its own state, across its restarts --------------------------------------------------------

    def _restore(self, saved: SupervisorState) -> None:
        self._started = saved.started
        self._stopping = saved.stopping
        self._pids = dict(saved.pids)
        self._events = list(saved.events)
        for child, times in saved.restarts.items():
            intensity = self._intensity_of(child)
            for at in times:
                intensity.record(at)
        self._escalated = dict(saved.escalated)
        self._added = list(saved.added)
        self._failure = pickle.loads(saved.failure) if saved.failure else None  # noqa: S301 - our own bytes
        missing = self._adopt()
        found = f"{len(self._children)} children found by name"
        if missing:
            found += f"; not found: {', '.join(missing)}"
        reason = f"process {saved.pid} died; Ray started pid {os.getpid()}; {found}"
        self._record(SUPERVISOR, "restarted", reason)
        self._count_restart(SUPERVISOR, "process died")

    def _save(self) -> None:
        if self._stopped:
            return
        state = SupervisorState(
            pid=os.getpid(),
            started=self._started,
            stopping=self._stopping,
            pids=self._pids,
            events=self._events,
            restarts={c: list(i.history()) for c, i in self._intensity.items() if i.history()},
            escalated=self._escalated,
            added=self._added,
            failure=_pickled(self._failure),
        )
        raw = msgspec.msgpack.encode(state)
        internal_kv._internal_kv_put(self._state_key, raw, overwrite=True)  # noqa: SLF001

    def _child_names(self) -> list[str]:
        """Every child's actor name: the configured ones (as ``launch`` creates them), then the added ones."""
        conns = [c for ids in self._conn_ids.values() for c in ids]
        return [
            REGISTRY,
            *(decoder_name(i) for i in range(len(conns))),
            *(connection_name(c) for c in conns),
            HEARTBEAT,
            *(strategy_name(st.name) for st in self._settings.strategies),
            *self._added,
        ]

    def _adopt(self) -> list[str]:
        """Find the children by name (a handle stays valid across their restarts); returns the names
        not found."""
        missing = []
        for name in self._child_names():
            if name not in self._children:
                handle = self._actors.get(name, cache=False)
                if handle is None:
                    missing.append(name)
                else:
                    self._children[name] = handle
        return missing

    def _child(self, name: str) -> Any:
        """A child's handle, looked up by name if it was not found yet (None if it does not exist)."""
        if name not in self._children and name in self._child_names():
            self._adopt()
        return self._children.get(name)

    # --- start ------------------------------------------------------------------------------------

    async def start(self, timeout_s: float = 60.0) -> dict[str, list[str]]:
        """Once the server accepted every connection and every strategy runs, returns the connection ids.

        The children exist already (``launch`` created them); this waits for them. Idempotent.
        ``timeout_s`` bounds the strategies' start; connections get ``feed.start_timeout_s``.

        Raises:
            ConnectFailed: a connection was not accepted within ``feed.start_timeout_s``.
            ChildFailed: a connection hit a failure no retry can cure (401 token invalid, HTTP 404...).
            FeedError: a child is missing (the job was not created with ``launch``).
        """
        if self._started:
            return self._conn_ids
        s = self._settings
        missing = self._adopt()  # Ray registers a name when the actor is created, before it runs
        if missing:
            names = ", ".join(missing)
            raise FeedError(f"no actor {names} in namespace {self._namespace!r}; create a job with launch()")
        connections = {c: self._children[connection_name(c)] for ids in self._conn_ids.values() for c in ids}
        await self._children[REGISTRY].register_decoders.remote(len(connections))
        try:
            await asyncio.gather(*(self._wait_started(c, h, s.feed.start_timeout_s) for c, h in connections.items()))
        except FeedError as exc:
            if self._failure is None:
                self._failure = exc
                self._save()
            raise
        strategies = [self._children[strategy_name(st.name)] for st in s.strategies]
        await asyncio.wait_for(asyncio.gather(*(h.start.remote() for h in strategies)), timeout_s)
        self._started = True
        self._save()
        return self._conn_ids

    async def _wait_started(self, conn_id: str, handle: Any, timeout_s: float) -> int:
        """Until the server accepted ``conn_id``; its failure comes back typed (see Connection.wait_started).

        Raises:
            ConnectFailed: not accepted within ``timeout_s`` (it names the endpoint and the last error).
            ChildFailed: a failure no retry can cure, e.g. 401 token invalid.
        """
        try:
            return await handle.wait_started.remote(timeout_s)
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, ConnectFailed):
                raise cause from None
            if isinstance(cause, FeedError):
                raise ChildFailed(connection_name(conn_id), cause) from None
            raise

    async def add_strategy(self, name: str, kind: str, symbols: list[str], options: dict[str, Any]) -> int:
        """Start a strategy actor on a running job (the control path a CLI will use). Returns its pid.

        It is detached, so that it outlives a restart of this Supervisor; ``stop`` kills it.

        Raises:
            ValueError: a strategy of that name already runs.
            ConfigError: ``kind`` cannot be imported.
        """
        key = strategy_name(name)
        if self._child(key) is not None:
            raise ValueError(f"a strategy named {name!r} already runs")
        load_strategy_class(kind)
        self._added.append(key)
        self._save()  # saved before it exists: a Supervisor killed right after creating it still knows it
        try:
            handle = _strategy_actor(
                self._settings,
                self._namespace,
                self._children[REGISTRY],
                self._self,
                name,
                kind,
                symbols,
                options,
                detached=True,
            )
        except BaseException:
            self._added.remove(key)
            self._save()
            raise
        self._children[key] = handle
        return await handle.start.remote()

    # --- children's reports -------------------------------------------------------------------------

    def child_started(self, child: str, pid: int) -> None:
        """A child process started; a second start of the same child is a restart by Ray."""
        previous = self._pids.get(child)
        if previous == pid:
            return  # the same report again: Ray retried it across a restart of this Supervisor
        self._pids[child] = pid
        if previous is None:
            self._record(child, "started", f"pid {pid}")
        else:
            self._record(child, "restarted", f"process {previous} died; Ray started pid {pid}")
            self._count_restart(child, "process died")
            if child.startswith("strategy:") and self._started:
                handle = self._child(child)
                if handle is not None:
                    handle.start.remote()  # deliveries resume; holdings are kept by the registry
        self._save()

    def child_failed(self, child: str, cause: FeedError) -> None:
        """A child hit an error it cannot retry (e.g. 401 token invalid): the job stops."""
        self._record(child, "failed", str(cause))
        if self._failure is None:
            self._failure = ChildFailed(child, cause)
        self._save()

    async def restart_connection(self, conn_id: str, cause: FeedError, hard: bool) -> str:  # noqa: FBT001
        """Restart a connection: drop and reopen its socket, or (hard) kill its actor for Ray to restart."""
        child = connection_name(conn_id)
        handle = self._child(child)
        if handle is None or self._stopping:
            return "ignored"
        self._record(child, "restart", str(cause))
        verdict = self._count_restart(child, cause)
        self._save()
        if verdict != "ok":
            return verdict
        if hard:
            ray.kill(handle, no_restart=False)
        else:
            handle.reconnect.remote(cause)
        return "ok"

    def _intensity_of(self, child: str) -> RestartIntensity:
        r = self._settings.restart
        if child not in self._intensity:
            self._intensity[child] = RestartIntensity(max_restarts=r.max_restarts, within_s=r.within_s)
        return self._intensity[child]

    def _count_restart(self, child: str, cause: FeedError | str) -> str:
        r = self._settings.restart
        intensity = self._intensity_of(child)
        # Wall-clock time, not monotonic: the times are saved, and a restarted Supervisor may run on
        # another node, whose monotonic clock starts elsewhere.
        now = time.time()
        if intensity.record(now):
            return "ok"
        if child == SUPERVISOR:  # no group above it to restart: the job stops
            too_often = f"restarted {intensity.count(now)} times within {r.within_s:g} s"
            error = ChildFailed(SUPERVISOR, FeedError(f"{too_often} (restart.max_restarts {r.max_restarts})"))
            self._record(child, "gave up", str(error))
            if self._failure is None:
                self._failure = error
            return "gave up"
        escalated_at = self._escalated.get(child)
        if escalated_at is not None and now - escalated_at < r.within_s:
            error = EscalationError(child, intensity.count(now), r.within_s, str(cause))
            self._record(child, "gave up", str(error))
            if self._failure is None:
                self._failure = error
            return "gave up"
        self._escalated[child] = now
        intensity.reset()
        self._record(child, "escalated", f"more than {r.max_restarts} restarts in {r.within_s:g} s: group restart")
        self._restart_group(FeedError(f"group restart: {child} restarted too often; last cause: {cause}"))
        return "escalated"

    def _restart_group(self, cause: FeedError) -> None:
        for i, (name, handle) in enumerate(sorted(self._children.items())):
            if name.startswith("connection:"):
                delay = i * 0.5 + self._rng.uniform(0, 0.5)  # spaced: never a reconnection storm
                asyncio.get_running_loop().call_later(delay, lambda h=handle: h.reconnect.remote(cause))

    def _record(self, child: str, event: str, reason: str) -> None:
        self._events = [*self._events[-(EVENTS_KEPT - 1) :], ChildEvent(time.time(), child, event, reason)]
        if event == "started":
            logger.debug("supervisor: {} {}: {}", child, event, reason)
        else:
            logger.warning("supervisor: {} {}: {}", child, event, reason)

    # --- status and stop -----------------------------------------------------------------------------

    def handle(self, child: str) -> Any:
        """A child's handle (for tests and the control path)."""
        return self._child(child)

    def pids(self) -> dict[str, int]:
        """The current process id of every child, and of this Supervisor under ``supervisor`` (for
        SIGKILL tests and the status view)."""
        return {**self._pids, SUPERVISOR: os.getpid()}

    def failure(self) -> FeedError | None:
        """Why the job must stop (ChildFailed or EscalationError), or None while it runs."""
        return self._failure

    async def status(self) -> dict[str, Any]:
        """A snapshot of every child, for the status view (JSON-safe)."""
        failure = "" if self._failure is None else str(self._failure)
        out: dict[str, Any] = {"run_id": self._run_id, "failure": failure, "connections": {}, "strategies": {}}

        async def ask(name: str, method: str) -> Any:
            handle = self._children.get(name)
            if handle is None:
                return None
            try:
                return await asyncio.wait_for(getattr(handle, method).remote(), 2.0)
            except Exception as exc:  # noqa: BLE001 - status shows what failed instead of failing
                return {"error": f"{type(exc).__name__}: {exc}"}

        names = list(self._children)
        methods = ["status" if n == REGISTRY else "statistics" for n in names]
        results = await asyncio.gather(*(ask(n, m) for n, m in zip(names, methods, strict=True)))
        for name, result in zip(names, results, strict=True):
            value = msgspec.to_builtins(result) if result is not None else None
            kind, _, key = name.partition(":")
            if kind == "connection":
                out["connections"][key] = value
            elif kind == "strategy":
                out["strategies"][key] = value
            elif kind == "decoder":
                out.setdefault("decoders", {})[key] = value
            else:
                out[kind] = value
        out["events"] = [msgspec.to_builtins(e) for e in self._events[-20:]]
        return out

    async def stop(self) -> None:
        """Clean stop: strategies flush, sockets close, the saved state is dropped, every child goes.

        Every child is found by name first, so a stop right after a restart of this Supervisor, or after
        a start that failed, leaves none behind. Idempotent (Ray retries it across a restart).
        """
        self._stopping = True
        self._save()
        self._adopt()
        hb = self._children.get(HEARTBEAT)
        if hb is not None:
            ray.kill(hb, no_restart=True)
        strategies = [h for n, h in self._children.items() if n.startswith("strategy:")]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(h.stop.remote() for h in strategies), return_exceptions=True), 4.0)
        conns = [h for n, h in self._children.items() if n.startswith("connection:")]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(h.stop.remote() for h in conns), return_exceptions=True), 2.0)
        registry = self._children.get(REGISTRY)
        if registry is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(registry.clear_state.remote(), 1.0)
        for handle in self._children.values():
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
        self._children.clear()
        self._stopped = True
        internal_kv._internal_kv_del(self._state_key)  # noqa: SLF001
