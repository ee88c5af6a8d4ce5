"""Reconnect and restart policy: delays, restart intensity, and which failures are worth a retry. Pure.

Rules of this module:

1. Time is a parameter and randomness is injectable: ``backoff`` takes an ``rng``, ``RestartIntensity``
   takes ``now``. Nothing here sleeps, reads a clock, logs or imports an I/O library.
2. A delay never exceeds the cap and is never negative; jitter only ever shortens it, so the cap is a
   promise (a reconnect storm of many connections spreads out below it, never above).
3. Restart intensity follows Erlang/OTP: at most ``max_restarts`` restarts within any ``within_s``
   window. The window is half-open, ``(now - within_s, now]``: a restart exactly ``within_s`` ago has
   left it. A restart that exceeds the intensity is still recorded: it happened.
4. ``classify`` answers None ("retry after a backoff delay") only for failures a new socket can cure;
   everything else is fatal and is returned so the caller stops and reports it (STYLE.md section 6: let
   unknown exceptions propagate). websockets' exceptions are recognised by class name, so this module
   does not import websockets.
"""

from __future__ import annotations

import asyncio
import math
import random
import ssl
from collections import deque
from collections.abc import Iterator

from actors.errors import ConnectionSilent, ProtocolViolation, VendorError

#: Vendor refusals that no retry can cure (PROTOCOL.md "Error codes"): bad token, plan too small,
#: code not authorised. 400, 429, 600 and 606 are retried after a backoff delay.
FATAL_RETS = frozenset({401, 603, 604})

#: websockets exception classes (or their bases) that mean "the connection failed, try again".
RETRYABLE_NAMES = frozenset(
    {"ConnectionClosed", "ConnectionClosedError", "ConnectionClosedOK", "InvalidHandshake", "InvalidMessage"}
)

#: HTTP statuses of a refused WebSocket handshake that mean the credentials are wrong.
FATAL_HANDSHAKE_STATUSES = frozenset({401, 403})

#: Failures of the transport a new connection can cure. ``asyncio.IncompleteReadError`` is an
#: ``EOFError`` and ``TimeoutError`` an ``OSError``; they are listed for the reader.
RETRYABLE_TYPES: tuple[type[BaseException], ...] = (
    ConnectionSilent,
    ProtocolViolation,
    OSError,
    TimeoutError,
    EOFError,
    asyncio.IncompleteReadError,
)


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


def _named(exc: BaseException, names: frozenset[str] | set[str]) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _handshake_status(exc: BaseException) -> int | None:
    # websockets >= 14: InvalidStatus(response) with response.status_code; the legacy
    # InvalidStatusCode carries status_code itself.
    response = getattr(exc, "response", None)
    status = (
        getattr(response, "status_code", None) if response is not None else getattr(exc, "status_code", None)
    )
    return status if isinstance(status, int) else None


def classify(exc: BaseException) -> BaseException | None:  # noqa: PLR0911 - a decision table
    """Decide what a connection failure means.

    Args:
        exc: the exception that ended a connection attempt or a running connection.

    Returns:
        None to retry after a backoff delay; otherwise the exception itself, which is fatal: stop and
        report it. Fatal: VendorError 401/603/604, ConfigError, InvalidCode, a handshake refused with
        HTTP 401/403, a TLS certificate that fails verification, anything that is not an ``Exception``
        (KeyboardInterrupt, SystemExit, CancelledError) and every exception not known to be transient.
        An exception group is retried only when every exception in it is.
    """
    if not isinstance(exc, Exception):
        return exc  # KeyboardInterrupt, SystemExit, asyncio.CancelledError: never swallowed
    if isinstance(exc, BaseExceptionGroup):
        return None if all(classify(inner) is None for inner in exc.exceptions) else exc
    if isinstance(exc, VendorError):
        # PROTOCOL.md "Error codes": 401 token invalid, 603 token level not enough, 604 code unauthorized.
        return exc if exc.ret in FATAL_RETS else None
    if _named(exc, {"InvalidStatus", "InvalidStatusCode"}):
        return exc if _handshake_status(exc) in FATAL_HANDSHAKE_STATUSES else None
    if _named(exc, RETRYABLE_NAMES):
        return None
    if isinstance(exc, ssl.SSLCertVerificationError):
        # An OSError, but a new socket meets the same certificate: a configuration problem.
        return exc
    if isinstance(exc, RETRYABLE_TYPES):
        return None
    return exc  # ConfigError, InvalidCode, InvalidTransition, bugs: let them propagate
