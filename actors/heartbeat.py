"""The Heartbeat actor: drives the vendor heartbeat and finds dead connections. A thin async shell.

It pings each Connection actor with ``beat``, with a deadline. ``beat`` sends 22000 when the
connection's liveness clock (actors.core.liveness) says one is due and reports the verdict, and how
long until the clock's next wake-up (``Liveness.next_wakeup``): the next ping of that connection is
armed for then, and at the latest ``check_every_s`` later, so that a hung actor is found quickly too.
One timer serves all connections: it wakes at the earliest armed ping. A connection is restarted
through the supervisor when

- its last received frame (22001 or any push) is older than ``silence_deadline_s``: the false-alive
  socket that looks open while data stopped; the socket is dropped and opened again; or
- its actor misses the ping deadline twice in a row: the actor itself is killed and restarted by Ray.

Each ping runs as its own task, so one stuck connection does not delay the others, and the actor waits
on nothing else, so it keeps working when the data path is saturated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import msgspec

from actors import metrics
from actors.core.errors import ConnectionSilent, FeedError, Unresponsive
from actors.core.liveness import Verdict
from actors.core.naming import HEARTBEAT, connection_name
from actors.handles import resolve
from actors.log import about, logger

#: A healthy actor starved of CPU can miss one deadline; killing it then costs a Ray restart (~2 s)
#: and a resubscribe. A hung one misses every deadline: it is killed after the second in a row.
MISSES_BEFORE_KILL = 2
RAY_RESTART_S = 2.0  # a killed actor is back in ~1.2-1.9 s here: do not judge it before that


class HeartbeatStats(msgspec.Struct, frozen=True):
    """Counters of the watchdog.

    ``rounds`` counts the timer's wake-ups that started pings; ``last_round_s`` is how long the
    latest ping took (to its answer or its deadline).
    """

    rounds: int
    heartbeats_sent: int
    silent_found: int
    ping_missed: int
    last_round_s: float


class Heartbeat:
    """Wrapped with ``ray.remote`` by the supervisor.

    Args:
        connections: the Connection actors to watch, by connection id.
        supervisor: the Supervisor actor (``restart_connection``, ``child_started``).
        check_every_s: the longest gap between two pings of one connection; its liveness clock may
            ask for one sooner.
        ping_deadline_s: how long a ping may take before it counts as missed.

    """

    def __init__(
        self,
        connections: dict[str, Any],
        supervisor: Any,
        *,
        check_every_s: float,
        ping_deadline_s: float,
    ) -> None:
        # Peers come by name (actors.handles), looked up once here.
        self._connections = {conn_id: resolve(c) for conn_id, c in connections.items()}
        self._supervisor = supervisor = resolve(supervisor)
        self._check_every_s = check_every_s
        self._ping_deadline_s = ping_deadline_s
        self._rounds = self._sent = self._silent = self._missed = 0
        self._last_round_s = 0.0
        self._due = dict.fromkeys(connections, 0.0)  # conn_id -> when its next ping goes (monotonic)
        self._pinging: dict[str, asyncio.Task[None]] = {}
        self._misses: dict[str, int] = {}
        self._wake = asyncio.Event()  # a ping ended or the watched set changed: re-arm the timer
        self._task = asyncio.get_running_loop().create_task(self._loop())
        supervisor.child_started.remote(HEARTBEAT, os.getpid())

    async def _loop(self) -> None:
        """The one timer: start the pings that are due, then sleep until the next is, or until woken."""
        while True:
            self._wake.clear()
            now = time.monotonic()
            due = [c for c, at in self._due.items() if at <= now and c not in self._pinging]
            for conn_id in due:
                self._pinging[conn_id] = asyncio.create_task(self._ping(conn_id))
            if due:
                self._rounds += 1
            waiting = [at for c, at in self._due.items() if c not in self._pinging]
            timeout = max(0.0, min(waiting) - now) if waiting else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _ping(self, conn_id: str) -> None:
        started = time.monotonic()
        delay = self._check_every_s
        try:
            handle = self._connections.get(conn_id)
            if handle is not None:
                delay = await self._check(conn_id, handle)
        except Exception:  # noqa: BLE001 - one bad ping must not end the watchdog
            logger.exception("heartbeat: {}: ping failed", conn_id)
        finally:
            if self._pinging.get(conn_id) is asyncio.current_task():
                del self._pinging[conn_id]
            now = time.monotonic()
            self._last_round_s = now - started
            if conn_id in self._due:  # not unwatched meanwhile
                self._due[conn_id] = now + delay
            self._wake.set()

    async def _check(self, conn_id: str, handle: Any) -> float:
        """Ping one connection and act on its report; returns the seconds until it wants the next ping."""
        try:
            report = await asyncio.wait_for(handle.beat.remote(), self._ping_deadline_s)
        except TimeoutError:
            self._missed += 1
            misses = self._misses[conn_id] = self._misses.get(conn_id, 0) + 1
            if misses >= MISSES_BEFORE_KILL:
                self._misses[conn_id] = 0
                hung = Unresponsive(connection_name(conn_id), misses, self._ping_deadline_s)
                return self._restart(conn_id, hung, hard=True)
            return 0.0  # the deadline has passed already: ask again at once
        except Exception as exc:  # noqa: BLE001 - a dead or restarting actor: Ray brings it back
            self._missed += 1
            about(conn_id).warning(
                "heartbeat: {}: actor unreachable ({}); Ray is restarting it", conn_id, type(exc).__name__
            )
            return self._check_every_s
        self._misses[conn_id] = 0
        if report.heartbeat_sent:
            self._sent += 1
        if report.connected and report.verdict == Verdict.SILENT:
            self._silent += 1
            metrics.observe("silence_detect_seconds", report.silent_for, connection=conn_id)
            silent = ConnectionSilent(report.silent_for, report.silence_deadline_s)
            return self._restart(conn_id, silent, hard=False)
        # Armed from the connection's liveness clock (Liveness.next_wakeup), and never later than
        # check_every_s: the ping is also how a hung actor is found.
        return min(report.wake_in_s, self._check_every_s)

    def _restart(self, conn_id: str, cause: FeedError, *, hard: bool) -> float:
        """Have the supervisor restart ``conn_id``; returns the seconds to leave it alone.

        One ping deadline, and Ray's restart when the actor is killed: it is not restarted twice.
        """
        about(conn_id).warning("heartbeat: {}: {}", conn_id, cause)
        self._supervisor.restart_connection.remote(conn_id, cause, hard)
        return self._ping_deadline_s + (RAY_RESTART_S if hard else 0.0)

    async def watch(self, conn_id: str, handle: Any) -> None:
        """Watch a connection opened while running (the Supervisor's ``open_connection``)."""
        self._connections[conn_id] = handle
        self._due[conn_id] = 0.0
        self._wake.set()

    async def unwatch(self, conn_id: str) -> None:
        """Stop watching a connection being closed."""
        self._connections.pop(conn_id, None)
        self._due.pop(conn_id, None)
        self._misses.pop(conn_id, None)
        task = self._pinging.pop(conn_id, None)
        if task is not None:
            task.cancel()
        self._wake.set()

    async def statistics(self) -> HeartbeatStats:
        """Counters of the watchdog."""
        return HeartbeatStats(self._rounds, self._sent, self._silent, self._missed, self._last_round_s)
