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
Connections the registry asks for while running (``open_connection``, when a subscribe needs more
room than the start-up ones have and the plan allows it) follow the same model: the connection and
its decoder are detached, saved under ``grown`` before they exist, found again by name after a
restart of the Supervisor, restarted with the same policy, watched by the heartbeat actor, and killed
by ``close_connection`` (the registry's pool closes a connection that held nothing for a grace
period) or by ``stop``.

Placement (actors.core.placement): each connection and its decoder share one placement-group bundle,
so raw frames stay on one node. ``launch`` creates one SPREAD group with a bundle per start-up
connection (owned by the driver, like the children); ``open_connection`` creates a detached group of
one bundle per grown connection, found again by name after a restart of the Supervisor. Ray
reschedules the bundles of a lost node on the nodes left and restarts both actors of each pair there.
``close_connection`` and ``stop`` remove the groups.

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import ray
from ray.exceptions import RayTaskError
from ray.experimental import internal_kv
from ray.util.placement_group import (
    PlacementGroup,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from actors.builtin import BUILTIN
from actors.connection import Connection, ConnectionConfig
from actors.core.backoff import RestartIntensity
from actors.core.codes import endpoint_of
from actors.core.errors import (
    ChildFailed,
    ConfigError,
    ConnectFailed,
    EscalationError,
    FeedError,
    VendorError,
)
from actors.core.naming import HEARTBEAT, REGISTRY, SUPERVISOR, connection_name, decoder_name, strategy_name
from actors.core.placement import PAIR_BUNDLE, group_name, least_used
from actors.core.settings import Settings
from actors.core.status import RateWindow
from actors.core.tokens import Secret
from actors.decoder import Decoder
from actors.handles import NamedActors
from actors.heartbeat import Heartbeat
from actors.log import about, logger
from actors.registry import Registry
from actors.strategy import Strategy, strategy_actor

NAMESPACE = "tickvisor"


class ChildEvent(msgspec.Struct, frozen=True):
    at: float  # time.time()
    child: str  # a child's actor name, or "supervisor" for the Supervisor's own restarts
    event: str  # "started", "restarted", "failed", "restart", "escalated", "gave up"
    reason: str


EVENTS_KEPT = 200  # supervision events kept (and saved); the status shows the last 20


class GrownConnection(msgspec.Struct, frozen=True):
    """A connection the registry asked for while running: what recreating or finding it needs."""

    endpoint: str
    token: str  # the token's label (its environment variable's NAME), never its value
    decoder: int


class SupervisorState(msgspec.Struct):
    """What survives a restart of the Supervisor: saved to Ray's internal KV after every change, under
    ``tickvisor/<run_id>/supervisor``, read back in ``__init__``, deleted by a clean stop.
    """

    pid: int  # the process that saved it: after a restart, the one that died
    started: bool = False
    stopping: bool = False
    pids: dict[str, int] = {}
    events: list[ChildEvent] = []
    restarts: dict[str, list[float]] = {}  # child -> its restart times (time.time()) still kept
    escalated: dict[str, float] = {}  # child -> when it was escalated (time.time())
    added: list[str] = []  # actor names of the strategies added while running (detached)
    grown: dict[str, GrownConnection] = {}  # conn_id -> the connections opened while running (detached)
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
        raise ConfigError(
            key, f"cannot import {kind!r}: {exc}; is its package under the job's directory?"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(key, f"{kind!r} is not a subclass of actors.Strategy")
    return cls


def connection_ids(settings: Settings) -> dict[str, list[str]]:
    """Connection ids per configured endpoint: enough for the configured symbols within the plan
    (over every token: quotas add up). More are opened while running when subscriptions need them.
    """
    limits = settings.plan_limits()
    wanted: dict[str, set[str]] = {}
    for strategy in settings.strategies:
        for code in strategy.symbols:
            wanted.setdefault(endpoint_of(code).value, set()).add(code)
    most = limits.connections_per_token * len(settings.token_names())
    out = {}
    for endpoint in settings.endpoints:
        need = max(1, math.ceil(len(wanted.get(endpoint, ())) / limits.codes_per_connection))
        out[endpoint] = [f"{endpoint}-{i}" for i in range(min(need, most))]
    return out


def connection_tokens(settings: Settings) -> dict[str, str]:
    """The token (its variable's name) of each start-up connection: the tokens in turn, per endpoint,
    as actors.core.growth.Pool picks them for the connections it opens.
    """
    names = settings.token_names()
    return {c: names[i % len(names)] for ids in connection_ids(settings).values() for i, c in enumerate(ids)}


def token_map(settings: Settings, token: Secret | Mapping[str, Secret]) -> dict[str, Secret]:
    """Every token by the name of its variable. One ``Secret`` serves every name (tests, the simulator).

    Raises:
        ConfigError: key ``feed.token_envs``; a name has no token.

    """
    names = settings.token_names()
    if isinstance(token, Secret):
        return dict.fromkeys(names, token)
    missing = [n for n in names if n not in token]
    if missing:
        raise ConfigError("feed.token_envs", f"no token given for {', '.join(missing)}")
    return {n: token[n] for n in names}


class Launched(NamedTuple):
    """What ``launch`` created. The caller must keep it as long as the job runs: Ray ends a
    non-detached actor once the process that created it holds no handle to it any more.
    """

    supervisor: Any
    children: list[Any]


def launch(
    settings: Settings, token: Secret | Mapping[str, Secret], run_id: str, namespace: str = NAMESPACE
) -> Launched:
    """Create the Supervisor and every configured child from the calling process, the job's driver,
    which owns them all. Call ``start`` on the Supervisor next.

    Every actor's restart options are set here, in one place. ``token`` is one token, or every token
    by its variable's name (``feed.token_envs``).

    Raises:
        ValueError: an actor of one of these names already runs in ``namespace`` (another job runs
            there); whatever was created is killed again.
        ConfigError: a strategy's ``kind`` cannot be imported.

    """
    tokens = token_map(settings, token)
    # One bundle per start-up connection, shared with its decoder (actors.core.placement); owned by
    # this driver like the children, so it goes with the driver too.
    pairs = sum(len(ids) for ids in connection_ids(settings).values())
    group = placement_group([dict(PAIR_BUNDLE)] * pairs, strategy="SPREAD", name=group_name(run_id))
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
        .remote(settings, tokens, run_id, namespace, group)
    )
    created: list[Any] = []
    try:
        _create_children(settings, tokens, run_id, namespace, supervisor, created, group)
    except BaseException:
        for handle in [supervisor, *created]:
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
        with contextlib.suppress(Exception):
            remove_placement_group(group)
        raise
    return Launched(supervisor, created)


def _create_children(  # noqa: PLR0913
    settings: Settings,
    tokens: dict[str, Secret],
    run_id: str,
    namespace: str,
    supervisor: Any,
    created: list[Any],
    group: PlacementGroup,
) -> None:
    """Create every configured child, named in ``namespace``, each reporting to ``supervisor``.
    Connection ``k`` and decoder ``k`` share bundle ``k`` of ``group``.

    Nothing is awaited: their processes start in parallel, and ``Supervisor.start`` waits for them.
    """
    s = settings
    ns = namespace
    conn_ids = connection_ids(s)
    # Ray 2.60 logs once per process "Actor registry ... has constructor arguments in the object store
    # and max_restarts > 0" (ray-project/ray#53727). No argument is large: every one is inlined, and
    # what Ray counts as "in the object store" is an actor handle (here ``supervisor``; the children
    # below take handles too, the registry is only the first one created). A handle carries a
    # reference to its actor, which the restart of the child would need if that actor were gone; ours
    # are named, restarted by Ray and owned by this driver for the job's life, so a child's restart
    # finds them (tests/test_recovery.py kills each child). Passing names instead would silence the
    # log only if every child looked its peers up by name.
    registry = (
        ray.remote(Registry)
        .options(name=REGISTRY, namespace=ns, num_cpus=0, max_restarts=-1, max_task_retries=3)
        .remote(
            conn_ids,
            s.plan_limits().codes_per_connection,
            ns,
            f"tickvisor/{run_id}/registry",
            supervisor=supervisor,
            plan=s.feed.plan,
            max_connections=s.plan_limits().connections_per_token,
            tokens=s.token_names(),
            token_of=connection_tokens(s),
            close_after_s=s.feed.idle_connection_close_s,
            stale_after_s={endpoint: s.stale_after_s(endpoint) for endpoint in s.endpoints},
        )
    )
    created.append(registry)
    decoders = []
    for i in range(sum(len(ids) for ids in conn_ids.values())):
        decoder = _decoder_actor(s, ns, i, registry, supervisor, _in_bundle(group, i))
        created.append(decoder)
        decoders.append(decoder)
    connections: dict[str, Any] = {}
    token_of = connection_tokens(s)
    k = 0
    for endpoint, ids in conn_ids.items():
        for conn_id in ids:
            token = tokens[token_of[conn_id]]
            handle = _connection_actor(
                s, ns, conn_id, endpoint, token, decoders[k], registry, supervisor, _in_bundle(group, k)
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


def _in_bundle(group: PlacementGroup, index: int) -> PlacementGroupSchedulingStrategy:
    """Where a connection and its decoder run: both in bundle ``index`` of ``group``, on one node
    (actors.core.placement). Ray restarts either in that bundle, wherever the bundle is now.
    """
    return PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=index)


def _decoder_actor(  # noqa: PLR0913
    settings: Settings,
    namespace: str,
    decoder_id: int,
    registry: Any,
    supervisor: Any,
    where: PlacementGroupSchedulingStrategy,
    *,
    detached: bool = False,
) -> Any:
    lifetime = {"lifetime": "detached"} if detached else {}
    return (
        ray.remote(Decoder)
        .options(
            name=decoder_name(decoder_id),
            namespace=namespace,
            num_cpus=0,
            max_restarts=-1,
            max_task_retries=-1,
            scheduling_strategy=where,  # beside its connection: raw frames stay on the node
            **lifetime,
        )
        .remote(
            decoder_id,
            registry,
            namespace,
            settings.feed.strategy_queue_batches,
            supervisor,
            deliver_corrupt=settings.feed.deliver_corrupt,
            max_pending_ticks=settings.feed.strategy_queue_ticks,
        )
    )


def _connection_actor(
    settings: Settings,
    namespace: str,
    conn_id: str,
    endpoint: str,
    token: Secret,
    decoder: Any,
    registry: Any,
    supervisor: Any,
    where: PlacementGroupSchedulingStrategy,
    *,
    detached: bool = False,
) -> Any:
    s = settings
    cfg = ConnectionConfig(
        heartbeat_interval_s=s.feed.heartbeat_interval_s,
        silence_deadline_s=s.feed.silence_deadline_s,
        batch_max_frames=s.feed.batch_max_frames,
        batch_max_age_ms=s.feed.batch_max_age_ms,
        backoff_initial_s=s.restart.backoff_initial_s,
        backoff_max_s=s.restart.backoff_max_s,
        backoff_jitter=s.restart.backoff_jitter,
        transport=s.feed.transport,
    )
    lifetime = {"lifetime": "detached"} if detached else {}
    return (
        ray.remote(Connection)
        .options(
            name=connection_name(conn_id),
            namespace=namespace,
            num_cpus=0,
            max_restarts=-1,
            # In its pair's bundle, beside its decoder. The bundles spread over the nodes: losing
            # one node loses only its share, and Ray restarts those pairs on the nodes left.
            scheduling_strategy=where,
            **lifetime,
        )
        .remote(conn_id, endpoint, s.endpoints[endpoint].url, token, cfg, decoder, registry, supervisor)
    )


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

    def __init__(
        self,
        settings: Settings,
        token: Secret | Mapping[str, Secret],
        run_id: str,
        namespace: str = NAMESPACE,
        group: PlacementGroup | None = None,
    ) -> None:
        """``group`` holds the start-up connections' pairs (``launch`` creates it); ``stop`` removes it."""
        self._settings = settings
        self._group = group
        self._run_id = run_id
        self._namespace = namespace
        self._self = ray.get_runtime_context().current_actor
        self._conn_ids = connection_ids(settings)
        self._actors = NamedActors(namespace)
        self._children: dict[str, Any] = {}
        self._added: list[str] = []
        self._grown: dict[str, GrownConnection] = {}
        self._watching: dict[str, asyncio.Task[None]] = {}
        self._tokens = token_map(settings, token)
        self._pids: dict[str, int] = {}
        self._events: list[ChildEvent] = []
        self._intensity: dict[str, RestartIntensity] = {}
        self._escalated: dict[str, float] = {}
        self._failure: FeedError | None = None
        self._started = False
        self._stopping = False
        self._stopped = False  # the saved state is deleted: never write it again
        self._rng = random.Random()
        self._rates = RateWindow()  # frames per second of each connection, for the status view
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
        self._grown = dict(saved.grown)
        self._failure = pickle.loads(saved.failure) if saved.failure else None  # noqa: S301 - our own bytes
        missing = self._adopt()
        found = f"{len(self._children)} children found by name"
        if missing:
            found += f"; not found: {', '.join(missing)}"
        loop = asyncio.get_running_loop()
        for conn_id in self._grown:  # the heartbeat watches it once it is up (perhaps it is already)
            handle = self._children.get(connection_name(conn_id))
            if handle is not None:
                self._watching[conn_id] = loop.create_task(self._watch_when_started(conn_id, handle))
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
            grown=self._grown,
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
            *(decoder_name(g.decoder) for g in self._grown.values()),
            *(connection_name(c) for c in self._grown),
        ]

    def _adopt(self) -> list[str]:
        """Find the children by name (a handle stays valid across their restarts); returns the names
        not found.
        """
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
        try:
            await asyncio.gather(
                *(self._wait_started(c, h, s.feed.start_timeout_s) for c, h in connections.items())
            )
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

    # --- connections the registry asks for ---------------------------------------------------------

    async def open_connection(self, conn_id: str, endpoint: str, token: str, decoder_id: int) -> bool:
        """Create connection ``conn_id`` (and its decoder) on a running job, for the registry.

        Idempotent: a connection that exists (found by name) is kept. Returns whether it was created.
        """
        if self._stopping or self._stopped:
            return False
        conn_key = connection_name(conn_id)
        if self._child(conn_key) is not None:
            return False
        secret = self._tokens.get(token)
        if secret is None:
            self._record(conn_key, "failed", f"no token labelled {token!r} in feed.token_envs")
            return False
        self._grown[conn_id] = GrownConnection(endpoint, token, decoder_id)
        self._save()  # saved before it exists: a Supervisor killed right after still finds it
        registry = self._children[REGISTRY] if REGISTRY in self._children else self._child(REGISTRY)
        # Its pair's own placement group (GCS calls: off the event loop, which serves the children).
        where = _in_bundle(await asyncio.to_thread(self._grown_group, conn_id), 0)
        decoder = self._child(decoder_name(decoder_id))
        if decoder is None:
            decoder = _decoder_actor(
                self._settings, self._namespace, decoder_id, registry, self._self, where, detached=True
            )
            self._children[decoder_name(decoder_id)] = decoder
        handle = _connection_actor(
            self._settings,
            self._namespace,
            conn_id,
            endpoint,
            secret,
            decoder,
            registry,
            self._self,
            where,
            detached=True,
        )
        self._children[conn_key] = handle
        self._record(
            conn_key, "opened", f"on the registry's request: more room needed on {endpoint} (token {token})"
        )
        # Watched once the server accepted it: a process that is still starting misses pings.
        self._watching[conn_id] = asyncio.get_running_loop().create_task(
            self._watch_when_started(conn_id, handle)
        )
        return True

    def _grown_group(self, conn_id: str) -> PlacementGroup:
        """The placement group of grown connection ``conn_id``'s pair: found by name (this Supervisor
        created it before a restart), or created, detached like the pair, on the node that holds the
        fewest of the job's pairs (actors.core.placement, rule 3).
        """
        name = group_name(self._run_id, conn_id)
        with contextlib.suppress(ValueError):  # ValueError: no group of that name
            return get_placement_group(name)
        return placement_group(
            [dict(PAIR_BUNDLE)],
            strategy="STRICT_PACK",
            name=name,
            lifetime="detached",
            # A hint (Ray 2.60 honours it for STRICT_PACK only): a node that died or has no room is
            # passed over, and Ray places the group elsewhere.
            _soft_target_node_id=self._emptiest_node(),
        )

    def _emptiest_node(self) -> str | None:
        """The live node holding the fewest of this job's pairs (None: let Ray choose)."""
        need = PAIR_BUNDLE["memory"]
        try:
            nodes = sorted(
                n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("memory", 0) >= need
            )
            prefix = group_name(self._run_id, "")
            used = [
                node
                for info in placement_group_table().values()
                if str(info.get("name", "")).startswith(prefix) and info.get("state") != "REMOVED"
                for node in info.get("bundles_to_node_id", {}).values()
            ]
        except Exception as exc:  # noqa: BLE001 - only a hint: without it Ray still places the pair
            logger.warning("supervisor: no placement hint for a grown connection ({})", type(exc).__name__)
            return None
        return least_used(nodes, used)

    def _remove_group(self, conn_id: str | None) -> None:
        """Free the placement group of grown connection ``conn_id``, or (None) of the start-up pairs.
        Ray kills whatever still runs in it.
        """
        group = self._group
        if conn_id is not None:
            try:
                group = get_placement_group(group_name(self._run_id, conn_id))
            except ValueError:
                return  # removed already (a stop after a close, or retried across a restart)
        if group is not None:
            with contextlib.suppress(Exception):  # removed already
                remove_placement_group(group)

    async def _watch_when_started(self, conn_id: str, handle: Any) -> None:
        with contextlib.suppress(Exception):  # a failed start is reported by the connection itself
            await self._wait_started(conn_id, handle, self._settings.feed.start_timeout_s)
        heartbeat = self._child(HEARTBEAT)
        if heartbeat is not None and conn_id in self._grown:
            heartbeat.watch.remote(conn_id, handle)

    async def close_connection(self, conn_id: str) -> bool:
        """Close and kill connection ``conn_id`` (opened by ``open_connection``) and its decoder.
        Returns whether there was one to close.
        """
        grown = self._grown.pop(conn_id, None)
        if grown is None:
            return False
        watching = self._watching.pop(conn_id, None)
        if watching is not None:
            watching.cancel()
        self._save()
        heartbeat = self._child(HEARTBEAT)
        if heartbeat is not None:
            heartbeat.unwatch.remote(conn_id)
        conn = self._children.pop(connection_name(conn_id), None) or self._actors.get(
            connection_name(conn_id), cache=False
        )
        decoder = self._children.pop(decoder_name(grown.decoder), None) or self._actors.get(
            decoder_name(grown.decoder), cache=False
        )
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.stop.remote(), 2.0)
        for handle in (conn, decoder):
            if handle is not None:
                with contextlib.suppress(Exception):
                    ray.kill(handle, no_restart=True)
        await asyncio.to_thread(self._remove_group, conn_id)  # after the kills: its bundle is free
        self._pids.pop(connection_name(conn_id), None)
        self._pids.pop(decoder_name(grown.decoder), None)
        self._record(connection_name(conn_id), "closed", "it held nothing for the registry's grace period")
        self._save()
        return True

    def _watch_grown(self) -> None:
        heartbeat = self._child(HEARTBEAT)
        if heartbeat is None:
            return
        for conn_id in self._grown:
            handle = self._child(connection_name(conn_id))
            if handle is not None:
                heartbeat.watch.remote(conn_id, handle)

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
            if child == HEARTBEAT:
                self._watch_grown()  # Ray rebuilt it from its creation arguments: the configured ones only
        self._save()

    async def child_failed(self, child: str, cause: FeedError) -> None:
        """A child hit an error it cannot retry (e.g. 401 token invalid): the job stops.

        Except a 401 on a connection while other tokens live: that token is taken out (an event
        "token out"), the registry moves its codes to the other tokens' room, and the job goes on.
        """
        if (
            len(self._tokens) > 1
            and child.startswith("connection:")
            and isinstance(cause, VendorError)
            and cause.ret == 401
        ):
            registry = self._child(REGISTRY)
            taken = None
            if registry is not None:
                with contextlib.suppress(Exception):
                    taken = await registry.token_refused.remote(child.partition(":")[2])
            if taken is not None:
                token, live, closed = taken
                if token is None:
                    return  # that token is out already: one of its other connections reported it
                if live:
                    where = f"; closing {', '.join(closed)}" if closed else ""
                    self._record(
                        child,
                        "token out",
                        f"token {token} refused ({cause}): taken out, its codes move to the room of the "
                        f"{live} token(s) left{where}",
                    )
                    self._save()
                    return
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
        self._record(
            child, "escalated", f"more than {r.max_restarts} restarts in {r.within_s:g} s: group restart"
        )
        self._restart_group(FeedError(f"group restart: {child} restarted too often; last cause: {cause}"))
        return "escalated"

    def _restart_group(self, cause: FeedError) -> None:
        for i, (name, handle) in enumerate(sorted(self._children.items())):
            if name.startswith("connection:"):
                delay = i * 0.5 + self._rng.uniform(0, 0.5)  # spaced: never a reconnection storm
                asyncio.get_running_loop().call_later(delay, lambda h=handle: h.reconnect.remote(cause))

    def _record(self, child: str, event: str, reason: str) -> None:
        self._events = [*self._events[-(EVENTS_KEPT - 1) :], ChildEvent(time.time(), child, event, reason)]
        log = about(child.partition(":")[2]) if child.startswith("connection:") else logger
        if event == "started":
            log.debug("supervisor: {} {}: {}", child, event, reason)
        else:
            log.warning("supervisor: {} {}: {}", child, event, reason)

    # --- status and stop -----------------------------------------------------------------------------

    def handle(self, child: str) -> Any:
        """A child's handle (for tests and the control path)."""
        return self._child(child)

    def pids(self) -> dict[str, int]:
        """The current process id of every child, and of this Supervisor under ``supervisor`` (for
        SIGKILL tests and the status view).
        """
        return {**self._pids, SUPERVISOR: os.getpid()}

    def failure(self) -> FeedError | None:
        """Why the job must stop (ChildFailed or EscalationError), or None while it runs."""
        return self._failure

    async def status(self) -> dict[str, Any]:
        """A snapshot of every child, for the status view (JSON-safe)."""
        failure = "" if self._failure is None else str(self._failure)
        out: dict[str, Any] = {
            "run_id": self._run_id,
            "failure": failure,
            "connections": {},
            "strategies": {},
        }

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
        now = time.monotonic()
        out["rates"] = {
            key: self._rates.observe(key, now, value["frames"])
            for key, value in out["connections"].items()
            if isinstance(value, dict) and isinstance(value.get("frames"), int)
        }
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
            await asyncio.wait_for(
                asyncio.gather(*(h.stop.remote() for h in strategies), return_exceptions=True), 4.0
            )
        conns = [h for n, h in self._children.items() if n.startswith("connection:")]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(h.stop.remote() for h in conns), return_exceptions=True), 2.0
            )
        registry = self._children.get(REGISTRY)
        if registry is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(registry.clear_state.remote(), 1.0)
        for handle in self._children.values():
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
        self._children.clear()
        for conn_id in [*self._grown, None]:  # the pairs' bundles, grown ones and start-up ones
            await asyncio.to_thread(self._remove_group, conn_id)
        self._stopped = True
        internal_kv._internal_kv_del(self._state_key)  # noqa: SLF001
