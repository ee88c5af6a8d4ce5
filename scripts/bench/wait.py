"""The one polling wait of the benchmarks, the soak and the tests: wait for a condition, never for time.

``wait_for`` calls a condition until it returns something truthy and returns that; past its deadline it
raises ``WaitTimeoutError`` naming what was awaited and the condition's last value. tests/conftest.py wraps
it (timeouts scaled by ``TICKVISOR_TEST_S``, a timeout as a test failure); a caller that only waits as
long as it may (a cleanup's grace period) catches ``WaitTimeoutError`` and reads ``last``. The clock and the
pause are parameters, so a test can drive it without time passing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

#: How often a condition is called, unless the caller says otherwise.
POLL_S = 0.02


class WaitTimeoutError(TimeoutError):
    """The awaited condition stayed falsy for ``timeout`` seconds; ``last`` is its last value."""

    def __init__(self, what: str, timeout: float, last: object) -> None:
        super().__init__(f"timed out after {timeout:.1f} s waiting for {what}; last value {last!r}")
        self.what = what
        self.timeout = timeout
        self.last = last


def wait_for(
    condition: Callable[[], T | None],
    timeout: float,
    *,
    what: str = "condition",
    every: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``condition`` until it returns something truthy; return that value.

    Args:
        condition: called at once, then every ``every`` seconds.
        timeout: seconds before giving up.
        what: what is awaited, for the error message.
        every: seconds between two calls.
        clock: monotonic seconds (tests pass a fake one).
        pause: sleeps between two calls (tests pass one that advances the fake clock).

    Raises:
        WaitTimeoutError: ``condition`` was still falsy after ``timeout`` seconds (it was called once more
            at the deadline).

    """
    deadline = clock() + timeout
    while True:
        value = condition()
        if value:
            return value
        if clock() >= deadline:
            raise WaitTimeoutError(what, timeout, value)
        pause(every)
