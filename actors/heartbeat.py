"""The Heartbeat actor: drives the vendor heartbeat and finds dead connections. A thin async shell.

Every ``check_every_s`` it calls ``beat`` on every Connection actor at once, each with a deadline.
``beat`` sends 22000 when the connection's liveness clock says one is due (every
``heartbeat_interval_s``, and sooner on a quiet socket) and reports the verdict. A connection is
restarted through the supervisor when

- its last received frame (22001 or any push) is older than ``silence_deadline_s``: the false-alive
  socket that looks open while data stopped; the socket is dropped and opened again; or
- its actor misses the ping deadline twice in a row: the actor itself is killed and restarted by Ray.

The checks run concurrently, so one stuck connection does not delay the others, and the actor waits
on nothing else, so it keeps working when the data path is saturated.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import msgspec

from actors import metrics
from actors.core.errors import ConnectionSilent, FeedError, Unresponsive
from actors.core.liveness import Verdict
from actors.core.naming import HEARTBEAT, connection_name
from actors.log import about, logger

#: A healthy actor starved of CPU can miss one deadline; killing it then costs a Ray restart (~2 s)
#: and a resubscribe. A hung one misses every deadline: it is killed after the second in a row.
MISSES_BEFORE_KILL = 2
RAY_RESTART_S = 2.0  # a killed actor is back in ~1.2-1.9 s here: do not judge it before that


class HeartbeatStats(msgspec.Struct, frozen=True):
    rounds: int
    heartbeats_sent: int
    silent_found: int
    ping_missed: int
    last_round_s: float


class Heartbeat:
    """Wrapped with ``ray.remote`` by the supervisor."""

    def __init__(
        self,
        connections: dict[str, Any],
        supervisor: Any,
        *,
        check_every_s: float,
        ping_deadline_s: float,
    ) -> None:
        self._connections = connections
        self._supervisor = supervisor
        self._check_every_s = check_every_s
        self._ping_deadline_s = ping_deadline_s
        self._rounds = self._sent = self._silent = self._missed = 0
        self._last_round_s = 0.0
        self._restarting: dict[str, float] = {}
        self._misses: dict[str, int] = {}
        self._task = asyncio.get_running_loop().create_task(self._loop())
        supervisor.child_started.remote(HEARTBEAT, os.getpid())

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await asyncio.gather(*(self._check(c, h) for c, h in list(self._connections.items())))
            except Exception:  # noqa: BLE001 - one bad round must not end the watchdog
                logger.exception("heartbeat: round failed")
            self._rounds += 1
            self._last_round_s = time.monotonic() - started
            await asyncio.sleep(max(0.0, self._check_every_s - self._last_round_s))

    async def _check(self, conn_id: str, handle: Any) -> None:
        # A connection being restarted is left alone for one deadline, so it is not restarted twice.
        if time.monotonic() < self._restarting.get(conn_id, 0.0):
            return
        try:
            report = await asyncio.wait_for(handle.beat.remote(), self._ping_deadline_s)
        except TimeoutError:
            self._missed += 1
            misses = self._misses[conn_id] = self._misses.get(conn_id, 0) + 1
            if misses >= MISSES_BEFORE_KILL:
                self._misses[conn_id] = 0
                self._restart(
                    conn_id, Unresponsive(connection_name(conn_id), misses, self._ping_deadline_s), hard=True
                )
            return
        except Exception as exc:  # noqa: BLE001 - a dead or restarting actor: Ray brings it back
            self._missed += 1
            about(conn_id).warning(
                "heartbeat: {}: actor unreachable ({}); Ray is restarting it", conn_id, type(exc).__name__
            )
            return
        self._misses[conn_id] = 0
        if report.heartbeat_sent:
            self._sent += 1
        if report.connected and report.verdict == Verdict.SILENT:
            self._silent += 1
            metrics.observe("silence_detect_seconds", report.silent_for, connection=conn_id)
            self._restart(conn_id, ConnectionSilent(report.silent_for, report.silence_deadline_s), hard=False)

    def _restart(self, conn_id: str, cause: FeedError, *, hard: bool) -> None:
        about(conn_id).warning("heartbeat: {}: {}", conn_id, cause)
        self._restarting[conn_id] = (
            time.monotonic() + self._ping_deadline_s + (RAY_RESTART_S if hard else 0.0)
        )
        self._supervisor.restart_connection.remote(conn_id, cause, hard)

    async def watch(self, conn_id: str, handle: Any) -> None:
        """Watch a connection opened while running (the Supervisor's ``open_connection``)."""
        self._connections[conn_id] = handle

    async def unwatch(self, conn_id: str) -> None:
        """Stop watching a connection being closed."""
        self._connections.pop(conn_id, None)
        self._misses.pop(conn_id, None)
        self._restarting.pop(conn_id, None)

    async def statistics(self) -> HeartbeatStats:
        """Counters of the watchdog."""
        return HeartbeatStats(self._rounds, self._sent, self._silent, self._missed, self._last_round_s)
