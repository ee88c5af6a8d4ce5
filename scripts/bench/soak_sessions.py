"""The soak's trading session: one code whose market opens and closes every few tens of seconds.

A ``Schedule`` is a seeded table of alternating open and closed stretches from a start time, written as
the explicit windows ``[feed.sessions]`` accepts (``Mon-Sun HH:MM:SS-HH:MM:SS UTC``, comma-separated),
and ``Closer`` plays it on the simulator: the code is muted a little before each close and unmuted a
little after each open, as a market that closes stops trading. Rules:

1. Boundaries are whole seconds (the windows name seconds); the table spans less than a day, so each
   daily window occurs once in it; past its last stretch the session stays open until the next day.
2. Nothing here reads the clock but ``Closer``'s thread, which waits for each boundary.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

DAY_S = 86_400.0
MUTE_BEFORE_S = 0.5  # the simulator stops pushing this long before the close: no tick after it
UNMUTE_AFTER_S = 0.2  # ... and starts again this long after the open: no tick before it


def hhmmss(t: float) -> str:
    """``t`` (epoch seconds) as a UTC time of day."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M:%S")


@dataclass(frozen=True)
class Schedule:
    """Closed stretches ``[close, open)``, in order, the session open between and around them."""

    closed: tuple[tuple[float, float], ...]

    @classmethod
    def draw(
        cls, start: float, span_s: float, rng: random.Random, stretch_s: tuple[float, float] = (20.0, 40.0)
    ) -> Schedule:
        """Alternating stretches from ``start``: open, closed, open, ... each lasting a whole number of
        seconds drawn from ``stretch_s``, until ``span_s`` seconds (at most 20 hours) are covered.
        """
        if not 0 < stretch_s[0] <= stretch_s[1]:
            raise ValueError(f"stretch_s {stretch_s}: give 0 < MIN <= MAX seconds")
        end = start + min(span_s, 20 * 3600.0)
        t = float(math.ceil(start))
        closed: list[tuple[float, float]] = []
        while t < end:
            close = t + round(rng.uniform(*stretch_s))
            opens = close + round(rng.uniform(*stretch_s))
            closed.append((close, opens))
            t = opens
        return cls(tuple(closed))

    def spec(self) -> str:
        """The session as ``[feed.sessions]`` windows: every open stretch, the last one running on to the
        first close of the next day.
        """
        if not self.closed:
            return "always"
        opens = [o for _, o in self.closed]
        closes = [c for c, _ in self.closed]
        windows = [(opens[i], closes[i + 1]) for i in range(len(closes) - 1)]
        windows.append((opens[-1], closes[0]))  # past midnight when it ends before it starts
        return ", ".join(f"Mon-Sun {hhmmss(a)}-{hhmmss(b)} UTC" for a, b in windows)

    def changes(self) -> list[tuple[float, bool]]:
        """(time, open after it) of every close and open, in order."""
        return [change for c, o in self.closed for change in ((c, False), (o, True))]

    def is_open(self, t: float) -> bool:
        """Whether the session is open at ``t`` (within the table's span)."""
        i = bisect.bisect_right([c for c, _ in self.closed], t) - 1
        return i < 0 or t >= self.closed[i][1]

    def last_open(self, t: float) -> float:
        """The latest open at or before ``t`` (0.0: none yet)."""
        return max((o for _, o in self.closed if o <= t), default=0.0)


class Closer:
    """Plays a ``Schedule`` on the simulator: ``mute(code)`` before each close, ``unmute(code)`` after
    each open, from a daemon thread; ``lock`` is held while it acts, so a caller that clears every fault
    can put the mute back under it (``closed_now``).
    """

    def __init__(
        self,
        schedule: Schedule,
        mute: Callable[[], None],
        unmute: Callable[[], None],
        clock: Callable[[], float],
        stop: threading.Event,
    ) -> None:
        self.schedule = schedule
        self.lock = threading.Lock()
        self.muted = False
        self.errors: list[str] = []
        self._mute, self._unmute, self._clock, self._stop = mute, unmute, clock, stop
        self._thread = threading.Thread(target=self._run, name="soak-sessions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        for close, opens in self.schedule.closed:
            for at, mute in ((close - MUTE_BEFORE_S, True), (opens + UNMUTE_AFTER_S, False)):
                if self._stop.wait(max(0.0, at - self._clock())):
                    return
                with self.lock:
                    try:
                        (self._mute if mute else self._unmute)()
                        self.muted = mute
                    except Exception as exc:  # noqa: BLE001 - the soak reports it
                        self.errors.append(f"{'mute' if mute else 'unmute'} at {at:.1f}: {exc}")
