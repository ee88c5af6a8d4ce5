"""The Supervisor actor: creates and owns every other actor, and owns the restart policy.

Children (all named in the job's namespace, so a status CLI can reach them through the supervisor):
``registry``, ``decoder:<i>``, ``connection:<endpoint>-<i>``, ``strategy:<name>``, ``heartbeat``.
Ray restarts a child whose process died (``max_restarts=-1``); the child reports each start with
``child_started``, so the supervisor sees every restart and its cause.

Restart policy (Erlang/OTP style, actors.core.backoff.RestartIntensity): each child may restart at most
``restart.max_restarts`` times within ``restart.within_s``. Beyond that the supervisor escalates once:
it restarts the whole group of connections, spaced with jitter (never a reconnection storm). If the
child exceeds the intensity again after that, the supervisor stops with an EscalationError that the
main job prints and exits on. Reconnects themselves back off exponentially with jitter inside each
Connection actor, and there is never more than one socket per Connection actor, so the job never
opens more connections than the plan allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import random
import time
from pathlib import Path
from typing import Any

import msgspec
import ray
from ray.exceptions import RayTaskError
from actors.log import logger

from actors.core import wire
from actors.core.backoff import RestartIntensity
from actors.builtin import BUILTIN
from actors.connection import Connection, ConnectionConfig
from actors.decoder import Decoder
from actors.core.errors import ChildFailed, ConfigError, ConnectFailed, EscalationError, FeedError
from actors.heartbeat import Heartbeat
from actors.core.naming import HEARTBEAT, REGISTRY, connection_name, decoder_name, strategy_name
from actors.registry import Registry
from actors.core.settings import Secret, Settings
from actors.strategy import Strategy, strategy_actor

NAMESPACE = "tickvisor"


class ChildEvent(msgspec.Struct, frozen=True):
    at: float  # time.time()
    child: str
    event: str  # "started", "restarted", "failed", "restart", "escalated", "gave up"
    reason: str


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


class Supervisor:
    """Wrapped with ``ray.remote`` by the main job."""

    def __init__(self, settings: Settings, token: Secret, run_id: str, namespace: str = NAMESPACE) -> None:
        self._settings = settings
        self._token = token
        self._run_id = run_id
        self._namespace = namespace
        self._self = ray.get_runtime_context().current_actor
        self._conn_ids = connection_ids(settings)
        self._children: dict[str, Any] = {}
        self._pids: dict[str, int] = {}
        self._events: list[ChildEvent] = []
        self._intensity: dict[str, RestartIntensity] = {}
        self._escalated: dict[str, float] = {}
        self._failure: FeedError | None = None
        self._started = False
        self._stopping = False
        self._rng = random.Random()

    # --- start ------------------------------------------------------------------------------------

    async def start(self, timeout_s: float = 60.0) -> dict[str, list[str]]:
        """Create every child; returns once the server accepted every connection and every strategy runs.

        Idempotent. ``timeout_s`` bounds the strategies' start; connections get ``feed.start_timeout_s``.

        Raises:
            ConnectFailed: a connection was not accepted within ``feed.start_timeout_s``.
            ChildFailed: a connection hit a failure no retry can cure (401 token invalid, HTTP 404...).
        """
        if self._started:
            return self._conn_ids
        s = self._settings
        limits = s.plan_limits()
        ns = self._namespace
        registry = (
            ray.remote(Registry)
            .options(name=REGISTRY, namespace=ns, num_cpus=0, max_restarts=-1, max_task_retries=3)
            .remote(
                self._conn_ids,
                limits.codes_per_connection,
                ns,
                f"tickvisor/{self._run_id}/registry",
                supervisor=self._self,
            )
        )
        self._children[REGISTRY] = registry
        n_decoders = sum(len(ids) for ids in self._conn_ids.values())
        decoders = []
        for i in range(n_decoders):
            decoder = (
                ray.remote(Decoder)
                .options(name=decoder_name(i), namespace=ns, num_cpus=0, max_restarts=-1, max_task_retries=-1)
                .remote(i, registry, ns, s.feed.strategy_queue_batches, self._self)
            )
            decoders.append(decoder)
            self._children[decoder_name(i)] = decoder
        cfg = ConnectionConfig(
            heartbeat_interval_s=s.feed.heartbeat_interval_s,
            silence_deadline_s=s.feed.silence_deadline_s,
            batch_max_frames=s.feed.batch_max_frames,
            batch_max_age_ms=s.feed.batch_max_age_ms,
            backoff_initial_s=s.restart.backoff_initial_s,
            backoff_max_s=s.restart.backoff_max_s,
            backoff_jitter=s.restart.backoff_jitter,
        )
        connections: dict[str, Any] = {}
        k = 0
        for endpoint, ids in self._conn_ids.items():
            for conn_id in ids:
                handle = (
                    ray.remote(Connection)
                    .options(name=connection_name(conn_id), namespace=ns, num_cpus=0, max_restarts=-1)
                    .remote(
                        conn_id,
                        endpoint,
                        s.endpoints[endpoint].url,
                        self._token,
                        cfg,
                        decoders[k],
                        registry,
                        self._self,
                    )
                )
                k += 1
                connections[conn_id] = handle
                self._children[connection_name(conn_id)] = handle
        check_every = min(s.feed.heartbeat_interval_s / 2, s.feed.silence_deadline_s / 4, 1.0)
        self._children[HEARTBEAT] = (
            ray.remote(Heartbeat)
            .options(name=HEARTBEAT, namespace=ns, num_cpus=0, max_restarts=-1)
            .remote(connections, self._self, check_every_s=check_every, ping_deadline_s=s.feed.ping_deadline_s)
        )
        strategies = [
            self._spawn_strategy(st.name, st.kind, list(st.symbols), self._options(st)) for st in s.strategies
        ]
        # Every child is created above before anything is awaited: their processes start in parallel.
        await registry.register_decoders.remote(n_decoders)
        try:
            await asyncio.gather(*(self._wait_started(c, h, s.feed.start_timeout_s) for c, h in connections.items()))
        except FeedError as exc:
            if self._failure is None:
                self._failure = exc
            raise
        await asyncio.wait_for(asyncio.gather(*(h.start.remote() for h in strategies)), timeout_s)
        self._started = True
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

    @staticmethod
    def _options(strategy: Any) -> dict[str, Any]:
        options = dict(strategy.options)
        if strategy.path:
            options["path"] = str(Path(strategy.path).expanduser().resolve())
        return options

    async def add_strategy(self, name: str, kind: str, symbols: list[str], options: dict[str, Any]) -> int:
        """Start a strategy actor on a running job (the control path a CLI will use). Returns its pid."""
        return await self._spawn_strategy(name, kind, symbols, options).start.remote()

    def _spawn_strategy(self, name: str, kind: str, symbols: list[str], options: dict[str, Any]) -> Any:
        key = strategy_name(name)
        if key in self._children:
            raise ValueError(f"a strategy named {name!r} already runs")
        cls = load_strategy_class(kind)
        handle = (
            strategy_actor(cls)
            .options(name=key, namespace=self._namespace, max_restarts=-1, max_concurrency=64)
            .remote(
                name,
                symbols,
                options,
                registry=self._children[REGISTRY],
                supervisor=self._self,
                queue_batches=self._settings.feed.strategy_queue_batches,
            )
        )
        self._children[key] = handle
        return handle

    # --- children's reports -------------------------------------------------------------------------

    def child_started(self, child: str, pid: int) -> None:
        """A child process started; a second start of the same child is a restart by Ray."""
        previous = self._pids.get(child)
        self._pids[child] = pid
        if previous is None:
            self._record(child, "started", f"pid {pid}")
            return
        self._record(child, "restarted", f"process {previous} died; Ray started pid {pid}")
        self._count_restart(child, "process died")
        if child.startswith("strategy:") and self._started:
            handle = self._children.get(child)
            if handle is not None:
                handle.start.remote()  # deliveries resume; holdings are kept by the registry

    def child_failed(self, child: str, cause: FeedError) -> None:
        """A child hit an error it cannot retry (e.g. 401 token invalid): the job stops."""
        self._record(child, "failed", str(cause))
        if self._failure is None:
            self._failure = ChildFailed(child, cause)

    async def restart_connection(self, conn_id: str, cause: FeedError, hard: bool) -> str:  # noqa: FBT001
        """Restart a connection: drop and reopen its socket, or (hard) kill its actor for Ray to restart."""
        child = connection_name(conn_id)
        handle = self._children.get(child)
        if handle is None or self._stopping:
            return "ignored"
        self._record(child, "restart", str(cause))
        verdict = self._count_restart(child, cause)
        if verdict != "ok":
            return verdict
        if hard:
            ray.kill(handle, no_restart=False)
        else:
            handle.reconnect.remote(cause)
        return "ok"

    def _count_restart(self, child: str, cause: FeedError | str) -> str:
        r = self._settings.restart
        intensity = self._intensity.setdefault(
            child, RestartIntensity(max_restarts=r.max_restarts, within_s=r.within_s)
        )
        now = time.monotonic()
        if intensity.record(now):
            return "ok"
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
        self._events = [*self._events[-199:], ChildEvent(time.time(), child, event, reason)]
        if event == "started":
            logger.debug("supervisor: {} {}: {}", child, event, reason)
        else:
            logger.warning("supervisor: {} {}: {}", child, event, reason)

    # --- status and stop -----------------------------------------------------------------------------

    def handle(self, child: str) -> Any:
        """A child's handle (for tests and the control path)."""
        return self._children.get(child)

    def pids(self) -> dict[str, int]:
        """The current process id of every child (for SIGKILL tests and the status view)."""
        return dict(self._pids)

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
        """Clean stop: strategies flush, sockets close, the saved registry state is dropped, actors go."""
        self._stopping = True
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
