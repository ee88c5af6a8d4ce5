"""The liveness clock of one connection: is the socket alive, and is a heartbeat due? Pure: no I/O, no clock.

Rules of this module:

1. Time is a parameter. Every method that needs the time takes ``now`` in seconds (the shell passes
   ``time.monotonic()``, tests pass ``0.0, 10.0, 31.0``). Nothing here reads a clock, sleeps or logs.
2. The server sends no heartbeats of its own (PROTOCOL.md "Liveness"), so ANY received frame, a 22001
   answer or a push, proves the socket alive. Silence is measured from the last frame, and a fresh
   socket (``connected``) counts as a frame.
3. SILENT wins. Once ``now - last_frame > silent_after`` (strictly) the verdict is SILENT whatever the
   heartbeat clock says; only a frame or a new socket ends it.
4. Otherwise a heartbeat is due when none was sent on this socket yet, when ``heartbeat_every`` has
   passed since the last one (PROTOCOL.md: the client sends 22000 every 10 s), or when the socket has
   been quiet for ``probe_after`` and no heartbeat went out meanwhile. The probe makes an idle but
   alive socket answer 22001 well before the silence deadline, so idleness is never taken for death.
5. Clocks never run backwards. A timestamp older than one already recorded (an out-of-order report
   from another task) does not move a clock back, and a query in the past sees no negative silence.
6. Nothing is valid before ``connected``: such calls raise InvalidTransition and change nothing.
"""

from __future__ import annotations

import enum
import math
from typing import Final

import msgspec

from actors.core.errors import InvalidTransition

HEARTBEAT_INTERVAL_S: Final = 10.0  # PROTOCOL.md "Liveness": the client sends 22000 every 10 s
#: ``probe_after`` defaults to this fraction of ``silent_after``: two probes fit before the deadline.
DEFAULT_PROBE_FRACTION: Final = 1 / 3


class Verdict(enum.IntEnum):
    """What the shell should do now."""

    OK = 0  # nothing to do until next_wakeup()
    HEARTBEAT_DUE = 1  # send a 22000 and report it with heartbeat_sent()
    SILENT = 2  # no frame within silent_after: the socket is dead, close it


class LivenessStats(msgspec.Struct, frozen=True):
    """Counters of one ``Liveness``; ``connects``, ``frames`` and ``heartbeats_sent`` span all sockets.

    ``connected_at``, ``last_frame_at`` and ``last_heartbeat_at`` describe the current socket (None
    before the first ``connected``, and ``last_heartbeat_at`` None until a heartbeat went out on it).
    """

    connects: int
    frames: int
    heartbeats_sent: int
    connected_at: float | None
    last_frame_at: float | None
    last_heartbeat_at: float | None


def _positive(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive, finite number of seconds, not {value!r}")
    return float(value)


class Liveness:
    """Liveness clock of one connection.

    The client sends 22000 every ``heartbeat_every`` seconds (PROTOCOL.md: every 10 s); the server sends
    no heartbeats of its own, so any received frame (22001 or push) proves life. The shell reports
    events (``connected``, ``frame_received``, ``heartbeat_sent``), asks for a ``verdict`` and arms its
    timer for ``next_wakeup``.
    """

    def __init__(
        self, *, heartbeat_every: float, silent_after: float, probe_after: float | None = None
    ) -> None:
        """Set the three periods, in seconds.

        Args:
            heartbeat_every: the longest gap between two heartbeats on a socket; at most 10.0
                (PROTOCOL.md "Liveness": the client sends 22000 every 10 s).
            silent_after: the socket is dead once no frame arrived for strictly longer than this.
            probe_after: send a heartbeat early once the socket was quiet this long; below
                ``silent_after``. Defaults to ``silent_after / 3``.

        Raises:
            ValueError: an argument is not a positive finite number, ``heartbeat_every`` is above 10.0,
                or ``probe_after`` is not below ``silent_after``. The message names the argument.

        """
        self._heartbeat_every = _positive("heartbeat_every", heartbeat_every)
        self._silent_after = _positive("silent_after", silent_after)
        if probe_after is None:
            probe_after = silent_after * DEFAULT_PROBE_FRACTION
        self._probe_after = _positive("probe_after", probe_after)
        if self._heartbeat_every > HEARTBEAT_INTERVAL_S:
            raise ValueError(
                f"heartbeat_every must be at most {HEARTBEAT_INTERVAL_S:g} s (PROTOCOL.md: the client sends "
                f"22000 every 10 s), not {heartbeat_every!r}"
            )
        if self._probe_after >= self._silent_after:
            raise ValueError(
                f"probe_after ({probe_after!r} s) must be below silent_after ({silent_after!r} s): "
                "the probe's answer has to arrive before the deadline"
            )
        self._connected_at: float | None = None
        self._last_frame: float | None = None
        self._last_heartbeat: float | None = None
        self._connects = 0
        self._frames = 0
        self._heartbeats_sent = 0

    # --- configuration -----------------------------------------------------------------------------

    @property
    def heartbeat_every(self) -> float:
        """Seconds between two heartbeats on a busy socket."""
        return self._heartbeat_every

    @property
    def silent_after(self) -> float:
        """Seconds of silence after which the socket is dead."""
        return self._silent_after

    @property
    def probe_after(self) -> float:
        """Seconds of quiet after which a heartbeat is sent early."""
        return self._probe_after

    # --- events ------------------------------------------------------------------------------------

    def connected(self, now: float) -> None:
        """A new socket is open: the silence clock restarts and a heartbeat is due at once.

        Args:
            now: the time the socket opened.

        """
        self._connects += 1
        self._connected_at = now
        self._last_frame = now  # rule 2: a fresh socket counts as a frame
        self._last_heartbeat = None  # rule 4: none sent on this socket yet

    def frame_received(self, now: float) -> None:
        """Any frame arrived (a 22001, another ack or a push): the socket is alive.

        Args:
            now: the time the frame was read.

        Raises:
            InvalidTransition: before ``connected``.

        """
        last_frame = self._require("record a frame")[0]
        self._frames += 1
        self._last_frame = max(last_frame, now)  # rule 5

    def heartbeat_sent(self, now: float) -> None:
        """A 22000 went out on the current socket.

        Args:
            now: the time it was sent.

        Raises:
            InvalidTransition: before ``connected``.

        """
        last_heartbeat = self._require("record a heartbeat")[1]
        self._heartbeats_sent += 1
        self._last_heartbeat = now if last_heartbeat is None else max(last_heartbeat, now)  # rule 5

    # --- queries -----------------------------------------------------------------------------------

    def verdict(self, now: float) -> Verdict:
        """What the shell should do at ``now``.

        Args:
            now: the current time.

        Raises:
            InvalidTransition: before ``connected``.

        """
        last_frame, last_heartbeat = self._require("give a verdict")
        return self._verdict(now, last_frame, last_heartbeat)

    def silent_for(self, now: float) -> float:
        """Seconds since the last frame (or since ``connected``), never negative.

        Args:
            now: the current time.

        Raises:
            InvalidTransition: before ``connected``.

        """
        last_frame = self._require("measure silence")[0]
        return max(0.0, now - last_frame)

    def next_wakeup(self, now: float) -> float:
        """The earliest time the verdict can change if no event comes in: arm the timer for it.

        Always later than ``now``, so a timer loop always advances; ``math.inf`` when only an event
        can change the verdict (SILENT). Float rounding may make it an instant early: the verdict is
        then unchanged and the shell simply asks again.

        Args:
            now: the current time.

        Raises:
            InvalidTransition: before ``connected``.

        """
        last_frame, last_heartbeat = self._require("plan the next check")
        verdict = self._verdict(now, last_frame, last_heartbeat)
        if verdict is Verdict.SILENT:
            return math.inf
        # SILENT begins just after the deadline (rule 3: strictly longer than silent_after).
        earliest = math.nextafter(last_frame + self._silent_after, math.inf)
        if verdict is Verdict.OK and last_heartbeat is not None:
            # OK means a heartbeat went out on this socket; it becomes due by cadence or by probe.
            earliest = min(
                earliest,
                last_heartbeat + self._heartbeat_every,
                max(last_frame, last_heartbeat) + self._probe_after,
            )
        return earliest if earliest > now else math.nextafter(now, math.inf)

    def statistics(self) -> LivenessStats:
        """A snapshot of the counters and of the current socket's clocks."""
        return LivenessStats(
            connects=self._connects,
            frames=self._frames,
            heartbeats_sent=self._heartbeats_sent,
            connected_at=self._connected_at,
            last_frame_at=self._last_frame,
            last_heartbeat_at=self._last_heartbeat,
        )

    # --- internals ---------------------------------------------------------------------------------

    def _require(self, action: str) -> tuple[float, float | None]:
        if self._last_frame is None:
            raise InvalidTransition(f"can't {action} before connected")
        return self._last_frame, self._last_heartbeat

    def _verdict(self, now: float, last_frame: float, last_heartbeat: float | None) -> Verdict:
        silent = now - last_frame
        if silent > self._silent_after:  # rule 3
            return Verdict.SILENT
        if last_heartbeat is None:  # rule 4: a new socket starts with a heartbeat
            return Verdict.HEARTBEAT_DUE
        since_heartbeat = now - last_heartbeat
        if since_heartbeat >= self._heartbeat_every:  # PROTOCOL.md: the client sends 22000 every 10 s
            return Verdict.HEARTBEAT_DUE
        if silent >= self._probe_after and since_heartbeat >= self._probe_after:  # rule 4: probe
            return Verdict.HEARTBEAT_DUE
        return Verdict.OK
