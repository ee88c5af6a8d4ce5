"""Reconnect and restart policy: delays and restart intensity. Pure.

Rules of this module:

1. Time is a parameter and randomness is injectable: ``backoff`` takes an ``rng``, ``RestartIntensity``
   takes ``now``. Nothing here sleeps, reads a clock, logs or imports an I/O library.
2. A delay never exceeds the cap and is never negative; jitter only ever shortens it, so the cap is a
   promise (a reconnect storm of many connections spreads out below it, never above).
3. Restart intensity follows Erlang/OTP: at most ``max_restarts`` restarts within any ``within_s``
   window. The window is half-open, ``(now - within_s, now]``: a restart exactly ``within_s`` ago has
   left it. A restart that exceeds the intensity is still recorded: it happened.

Which failures are worth a retry is decided next to the socket, by ``actors.connection.classify``.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterator


def _check_positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number, not {value!r}")


def backoff(
    *,
    initial: float = 0.5,
    factor: float = 2.0,
    cap: float = 30.0,
    jitter: float = 0.5,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """An endless series of delays, in seconds, before successive reconnect attempts.

    The n-th delay (from 0) has the base ``min(cap, initial * factor**n)`` and is drawn uniformly from
    ``[base * (1 - jitter), base]``; with ``jitter=0`` it is exactly the base.

    Args:
        initial: the first base delay, > 0.
        factor: growth per attempt, >= 1.
        cap: the largest delay, > 0.
        jitter: the fraction by which a delay may be shortened at random, in [0, 1].
        rng: the random source; a fresh ``random.Random()`` when None. Pass a seeded one in tests.

    Raises:
        ValueError: an argument is out of range (raised at once, not at the first ``next``).

    """
    _check_positive("initial", initial)
    _check_positive("cap", cap)
    if not math.isfinite(factor) or factor < 1:
        raise ValueError(f"factor must be a finite number >= 1, not {factor!r}")
    if not 0 <= jitter <= 1:
        raise ValueError(f"jitter must be in [0, 1], not {jitter!r}")
    if rng is None:
        rng = random.Random()  # noqa: S311 - jitter needs no cryptographic randomness
    return _delays(initial, factor, cap, jitter, rng)


def _delays(initial: float, factor: float, cap: float, jitter: float, rng: random.Random) -> Iterator[float]:
    def jittered(base: float) -> float:
        if jitter == 0:
            return base
        low = base * (1 - jitter)
        # Clamp: uniform() may round a hair outside [low, base] (rule 2).
        return min(base, max(low, rng.uniform(low, base)))

    base = initial  # initial * factor**n, by multiplication: it reaches inf (>= cap), never OverflowError
    while base < cap:
        yield jittered(base)
        base *= factor
    while True:  # at the cap for good
        yield jittered(cap)


class RestartIntensity:
    """At most ``max_restarts`` restarts within ``within_s`` seconds (Erlang/OTP-style intensity)."""

    def __init__(self, *, max_restarts: int, within_s: float) -> None:
        """Set the intensity.

        Args:
            max_restarts: restarts allowed in any window, >= 0 (0: every restart exceeds it).
            within_s: the window's length in seconds, > 0.

        Raises:
            ValueError: an argument is out of range.

        """
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError(f"max_restarts must be an integer >= 0, not {max_restarts!r}")
        _check_positive("within_s", within_s)
        self._max_restarts = max_restarts
        self._within_s = float(within_s)
        self._restarts: deque[float] = deque()

    @property
    def max_restarts(self) -> int:
        """Restarts allowed in one window."""
        return self._max_restarts

    @property
    def within_s(self) -> float:
        """The window's length in seconds."""
        return self._within_s

    def record(self, now: float) -> bool:
        """Record a restart at ``now``.

        Args:
            now: the time of the restart.

        Returns:
            True while the intensity holds; False when this restart exceeds it (the caller escalates).

        """
        self._restarts.append(now)
        return self.count(now) <= self._max_restarts

    def count(self, now: float) -> int:
        """Restarts inside the window ``(now - within_s, now]``.

        Args:
            now: the current time.

        """
        horizon = now - self._within_s
        restarts = self._restarts
        while restarts and restarts[0] <= horizon:  # rule 3: exactly within_s ago has left the window
            restarts.popleft()
        return len(restarts)

    def reset(self) -> None:
        """Forget every restart (after an escalation restarted the whole group)."""
        self._restarts.clear()

    def history(self) -> tuple[float, ...]:
        """The recorded restart times still kept, oldest first (some may have left the window since).

        Recording them again, in order, into a new intensity rebuilds this one: that is how the
        supervisor carries its intensities across its own restart.
        """
        return tuple(self._restarts)
