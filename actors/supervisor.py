"""The Supervisor actor: watches every child of a job, applies the restart policy, comes back when killed.

Children (all named in the job's namespace, so a status CLI can reach them through the supervisor):
``registry``, ``decoder:<i>``, ``connection:<endpoint>-<i>``, ``strategy:<name>``, ``heartbeat``.
The driver creates the configured ones (``actors.launch``); Ray restarts a child whose process died
(``max_restarts=-1``), and the child reports each start with ``child_started``, so the Supervisor sees
every restart and its cause. What each restart or failure leads to is decided by the pure policy
(``actors.core.restart.RestartPolicy``); this shell carries the verdict out.

Rules of this module:

1. The Supervisor never creates a configured child. Ray restarts it (``max_restarts=-1``); its
   ``__init__`` reads back its saved state (``SupervisorState``), finds every child again by name, and
   records the restart as an event of the child ``supervisor``, counted under the same intensity.
   The data path (connection -> decoder -> strategy) never goes through it: ticks keep flowing while
   it restarts.
2. Children created while running are detached (owned by the Supervisor, they would die with it):
   strategies added with ``add_strategy``, and connections the registry asks for (``open_connection``),
   each with its decoder in a placement group of its own (``actors.groups``). Their names are saved
   before they exist, found again after a restart, and killed by ``close_connection`` or ``stop``. A
   driver that dies without a stop leaves them behind (docs/limits.md).
3. Verdicts (``actors.core.restart``): ``RESTART`` restarts the one connection; ``ESCALATE`` reconnects
   the whole group of connections, spaced with jitter (never a reconnection storm); ``GIVE_UP`` records
   why the job must stop (``failure()``: an EscalationError or ChildFailed, which the driver prints and
   exits on); ``TAKE_TOKEN_OUT`` has the registry move a refused token's codes to the tokens left.
   Reconnects themselves back off inside each Connection actor, with never more than one socket each.
4. Every change of its state is saved to Ray's internal KV (``tickvisor/<run_id>/supervisor``) before
   it acts on it; a clean ``stop`` deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import random
import time
from collections.abc import Mapping
from typing import Any

import msgspec
import ray
from ray.exceptions import RayTaskError
from ray.experimental import internal_kv
from ray.util.placement_group import PlacementGroup

from actors.children import (
    connection_ids,
    create_connection,
    create_decoder,
    create_strategy,
    load_strategy_class,
    token_map,
)
from actors.core.errors import ChildFailed, ConnectFailed, FeedError
from actors.core.naming import HEARTBEAT, REGISTRY, SUPERVISOR, connection_name, decoder_name, strategy_name
from actors.core.restart import ChildEvent, EventKind, RestartPolicy, Verdict
from actors.core.settings import Settings
from actors.core.status import RateWindow, StatusSnapshot, read_snapshot
from actors.core.tokens import Secret
from actors.groups import grown_group, in_bundle, remove_group
from actors.handles import NamedActors
from actors.log import about, logger

EVENTS_KEPT = 200  # supervision events kept (and saved); the status shows the last EVENTS_SHOWN
EVENTS_SHOWN = 20
STATUS_CALL_S = 2.0  # how long the status waits for each child's statistics


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


def _pickled(failure: FeedError | None) -> bytes:
    if failure is None:
        return b""
    try:
        return pickle.dumps(failure)
    except Exception:  # noqa: BLE001 - keep the text when the type does not pickle
        return pickle.dumps(FeedError(str(failure)))


class Supervisor:
    """Created with ``ray.remote`` by ``actors.launch.launch()``, in the job's driver."""

    def __init__(
        self,
        settings: Settings,
        token: Secret | Mapping[str, Secret],
        run_id: str,
        namespace: str,
        group: PlacementGroup | None = None,
    ) -> None:
        """``group`` holds the start-up connections' pairs (``launch`` creates it); ``stop`` removes it."""
        self._settings = settings
        self._group = group
        self._run_id = run_id
        self._namespace = namespace
        self._conn_ids = connection_ids(settings)
        self._actors = NamedActors(namespace)
        self._children: dict[str, Any] = {}
        self._added: list[str] = []
        self._grown: dict[str, GrownConnection] = {}
        self._watching: dict[str, asyncio.Task[None]] = {}
        self._tokens = token_map(settings, token)
        self._pids: dict[str, int] = {}
        self._events: list[ChildEvent] = []
        self._policy = RestartPolicy(
            max_restarts=settings.restart.max_restarts, within_s=settings.restart.within_s
        )
        self._failure: FeedError | None = None
        self._started = False
        self._stopping = False
        self._stopped = False  # the saved state is deleted: never write it again
        self._rng = random.Random()  # noqa: S311 - restart jitter, not a secret
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
        r = self._settings.restart
        self._policy = RestartPolicy(
            max_restarts=r.max_restarts,
            within_s=r.within_s,
            restarts=saved.restarts,
            escalated=saved.escalated,
        )
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
        self._record(SUPERVISOR, EventKind.RESTARTED, reason)
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
            restarts=self._policy.history(),
            escalated=self._policy.escalations(),
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
            handle = create_strategy(
                self._settings, self._namespace, name, kind, symbols, options, detached=True
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
            self._record(conn_key, EventKind.FAILED, f"no token labelled {token!r} in feed.token_envs")
            return False
        self._grown[conn_id] = GrownConnection(endpoint, token, decoder_id)
        self._save()  # saved before it exists: a Supervisor killed right after still finds it
        # Its pair's own placement group (GCS calls: off the event loop, which serves the children).
        where = in_bundle(await asyncio.to_thread(grown_group, self._run_id, conn_id), 0)
        decoder = self._child(decoder_name(decoder_id))
        if decoder is None:
            decoder = create_decoder(self._settings, self._namespace, decoder_id, where, detached=True)
            self._children[decoder_name(decoder_id)] = decoder
        handle = create_connection(
            self._settings,
            self._namespace,
            conn_id,
            endpoint,
            secret,
            decoder_id,
            where,
            detached=True,
        )
        self._children[conn_key] = handle
        self._record(
            conn_key,
            EventKind.OPENED,
            f"on the registry's request: more room needed on {endpoint} (token {token})",
        )
        # Watched once the server accepted it: a process that is still starting misses pings.
        self._watching[conn_id] = asyncio.get_running_loop().create_task(
            self._watch_when_started(conn_id, handle)
        )
        return True

    def _remove_group(self, conn_id: str | None) -> None:
        """Free the placement group of grown connection ``conn_id``, or (None) of the start-up pairs."""
        remove_group(self._group if conn_id is None else None, self._run_id, conn_id)

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
        self._record(
            connection_name(conn_id), EventKind.CLOSED, "it held nothing for the registry's grace period"
        )
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
            self._record(child, EventKind.STARTED, f"pid {pid}")
        else:
            self._record(child, EventKind.RESTARTED, f"process {previous} died; Ray started pid {pid}")
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

        Except a 401 on a connection while other tokens live (``Verdict.TAKE_TOKEN_OUT``): that token is
        taken out (an event "token out"), the registry moves its codes to the other tokens' room, and
        the job goes on.
        """
        verdict = self._policy.failed(child, cause, tokens=len(self._tokens))
        if verdict is Verdict.TAKE_TOKEN_OUT:
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
                        EventKind.TOKEN_OUT,
                        f"token {token} refused ({cause}): taken out, its codes move to the room of the "
                        f"{live} token(s) left{where}",
                    )
                    self._save()
                    return
        self._record(child, EventKind.FAILED, str(cause))
        if self._failure is None:
            self._failure = ChildFailed(child, cause)
        self._save()

    async def restart_connection(self, conn_id: str, cause: FeedError, hard: bool) -> Verdict | None:  # noqa: FBT001
        """Restart a connection: drop and reopen its socket, or (hard) kill its actor for Ray to restart.

        Returns the policy's verdict, or None when there is nothing to restart (unknown, or stopping).
        """
        child = connection_name(conn_id)
        handle = self._child(child)
        if handle is None or self._stopping:
            return None
        self._record(child, EventKind.RESTART, str(cause))
        verdict = self._count_restart(child, cause)
        self._save()
        if verdict is Verdict.RESTART:
            if hard:
                ray.kill(handle, no_restart=False)
            else:
                handle.reconnect.remote(cause)
        return verdict

    def _count_restart(self, child: str, cause: FeedError | str) -> Verdict:
        """Feed a restart to the policy and carry out an escalation or giving up (rule 3)."""
        # Wall-clock time, not monotonic: the times are saved, and a restarted Supervisor may run on
        # another node, whose monotonic clock starts elsewhere.
        now = time.time()
        verdict = self._policy.record(child, cause, now)
        if verdict is Verdict.GIVE_UP:
            error = self._policy.give_up_error(child, cause, now)
            self._record(child, EventKind.GAVE_UP, str(error))
            if self._failure is None:
                self._failure = error
        elif verdict is Verdict.ESCALATE:
            self._record(child, EventKind.ESCALATED, self._policy.escalation_reason())
            self._restart_group(FeedError(f"group restart: {child} restarted too often; last cause: {cause}"))
        return verdict

    def _restart_group(self, cause: FeedError) -> None:
        for i, (name, handle) in enumerate(sorted(self._children.items())):
            if name.startswith("connection:"):
                delay = i * 0.5 + self._rng.uniform(0, 0.5)  # spaced: never a reconnection storm
                asyncio.get_running_loop().call_later(delay, handle.reconnect.remote, cause)

    def _record(self, child: str, event: EventKind, reason: str) -> None:
        self._events = [*self._events[-(EVENTS_KEPT - 1) :], ChildEvent(time.time(), child, event, reason)]
        log = about(child.partition(":")[2]) if child.startswith("connection:") else logger
        if event is EventKind.STARTED:
            log.debug("supervisor: {} {}: {}", child, event, reason)  # noqa: PLE1205 - loguru formats with {}
        else:
            log.warning("supervisor: {} {}: {}", child, event, reason)  # noqa: PLE1205 - loguru formats with {}

    # --- status and stop -----------------------------------------------------------------------------

    def pids(self) -> dict[str, int]:
        """The current process id of every child, and of this Supervisor under ``supervisor`` (for
        SIGKILL tests and the status view).
        """
        return {**self._pids, SUPERVISOR: os.getpid()}

    def failure(self) -> FeedError | None:
        """Why the job must stop (ChildFailed or EscalationError), or None while it runs."""
        return self._failure

    async def status(self) -> dict[str, Any]:
        """Every child's own statistics (JSON-safe builtins; a call that failed is ``{"error": ...}``),
        the connections' frame rates and the last supervision events.
        """
        out: dict[str, Any] = {
            "run_id": self._run_id,
            "failure": "" if self._failure is None else str(self._failure),
            "connections": {},
            "strategies": {},
        }

        async def ask(name: str, method: str) -> Any:
            handle = self._children.get(name)
            if handle is None:
                return None
            try:
                return await asyncio.wait_for(getattr(handle, method).remote(), STATUS_CALL_S)
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
        out["events"] = [msgspec.to_builtins(e) for e in self._events[-EVENTS_SHOWN:]]
        return out

    async def snapshot(self) -> StatusSnapshot:
        """What the status document shows of every child, typed (actors.core.status.job_status)."""
        return read_snapshot(await self.status())

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
