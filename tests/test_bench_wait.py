"""scripts/bench/wait.py: the one polling wait, driven by a fake clock (no time passes)."""

from __future__ import annotations

import pytest

from scripts.bench.wait import WaitTimeoutError, wait_for


class FakeClock:
    """Monotonic seconds that move only when the wait pauses."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def test_returns_the_first_truthy_value_without_pausing_when_it_is_there() -> None:
    clock = FakeClock()
    assert wait_for(lambda: [1], 5.0, clock=clock, pause=clock.pause) == [1]
    assert clock.pauses == []


def test_polls_every_interval_until_the_condition_holds() -> None:
    clock = FakeClock()
    values = iter([0, None, "", "ready"])
    assert wait_for(lambda: next(values), 5.0, every=0.5, clock=clock, pause=clock.pause) == "ready"
    assert clock.pauses == [0.5, 0.5, 0.5]


def test_a_timeout_names_what_was_awaited_and_the_last_value() -> None:
    clock = FakeClock()
    calls = []

    def never() -> int:
        calls.append(clock.now)
        return 0

    with pytest.raises(WaitTimeoutError) as caught:
        wait_for(never, 1.0, what="the registry in sync", every=0.25, clock=clock, pause=clock.pause)
    assert str(caught.value) == "timed out after 1.0 s waiting for the registry in sync; last value 0"
    assert (caught.value.what, caught.value.timeout, caught.value.last) == ("the registry in sync", 1.0, 0)
    assert calls == [0.0, 0.25, 0.5, 0.75, 1.0]  # called once more at the deadline
    assert isinstance(caught.value, TimeoutError)
