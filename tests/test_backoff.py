"""Tests of actors.core.backoff: reconnect delays and restart intensity. Pure."""

from __future__ import annotations

import itertools
import random
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.core.backoff import RestartIntensity, backoff

if TYPE_CHECKING:
    from collections.abc import Iterator
from typing import Any


def take(delays: Iterator[float], n: int) -> list[float]:
    return list(itertools.islice(delays, n))


class BackoffTests:
    """Delays grow geometrically to a cap; jitter only shortens them."""

    def test_grows_until_the_cap_without_jitter(self) -> None:
        assert take(backoff(jitter=0.0), 10) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]

    def test_custom_series(self) -> None:
        assert take(backoff(initial=1.0, factor=3.0, cap=20.0, jitter=0.0), 5) == [1.0, 3.0, 9.0, 20.0, 20.0]
        assert take(backoff(initial=2.0, factor=1.0, cap=5.0, jitter=0.0), 3) == [2.0, 2.0, 2.0]
        assert take(backoff(initial=50.0, cap=30.0, jitter=0.0), 2) == [30.0, 30.0]

    def test_seeded_rng_is_reproducible(self) -> None:
        first = take(backoff(rng=random.Random(7)), 20)
        second = take(backoff(rng=random.Random(7)), 20)
        assert first == second
        assert first != take(backoff(rng=random.Random(8)), 20)

    def test_jitter_stays_within_bounds(self) -> None:
        delays = take(backoff(jitter=0.5, rng=random.Random(1)), 200)
        bases = take(backoff(jitter=0.0), 200)
        for delay, base in zip(delays, bases, strict=True):
            assert delay >= base * 0.5
            assert delay <= base
        assert len(set(delays[10:])) > 100  # at the cap, still spread out

    def test_full_jitter_is_never_negative(self) -> None:
        delays = take(backoff(jitter=1.0, rng=random.Random(3)), 500)
        assert all(0.0 <= d <= 30.0 for d in delays)

    def test_endless_and_never_overflows(self) -> None:
        delays = backoff(initial=1e-300, factor=1e10, cap=1e300, jitter=0.0)
        assert take(delays, 5000)[-1] == 1e300

    def test_arguments_are_checked_at_once(self) -> None:
        bad: dict[str, dict[str, Any]] = {
            "initial": {"initial": 0.0},
            "cap": {"cap": -1.0},
            "factor": {"factor": 0.5},
            "jitter": {"jitter": 1.5},
        }
        for name, kwargs in bad.items():
            with pytest.raises(ValueError, match=f"^{name} must"):
                backoff(**kwargs)  # no next(): the error is raised on the call


class PropertyTests:
    """Every delay lies in [base * (1 - jitter), base] and never above the cap."""

    @given(
        initial=st.floats(min_value=1e-3, max_value=100.0),
        factor=st.floats(min_value=1.0, max_value=10.0),
        cap=st.floats(min_value=1e-3, max_value=1000.0),
        jitter=st.floats(min_value=0.0, max_value=1.0),
        seed=st.integers(0, 2**32),
    )
    def test_delays_are_bounded(
        self, initial: float, factor: float, cap: float, jitter: float, seed: int
    ) -> None:
        delays = backoff(initial=initial, factor=factor, cap=cap, jitter=jitter, rng=random.Random(seed))
        previous_base = 0.0
        for n, delay in enumerate(take(delays, 40)):
            base = min(cap, initial * factor**n)
            assert 0.0 <= delay <= cap
            assert base * (1 - jitter) * (1 - 1e-9) <= delay <= base * (1 + 1e-9)
            assert base >= previous_base
            previous_base = base


class RestartIntensityTests:
    """Erlang/OTP intensity: at most max_restarts within any within_s window."""

    def test_three_in_ten_seconds(self) -> None:
        intensity = RestartIntensity(max_restarts=3, within_s=10.0)
        assert [intensity.record(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
        assert not intensity.record(3.0)  # the 4th within 10 s
        assert intensity.count(3.0) == 4
        # At 11.0 the restarts at 0.0 and 1.0 have left the window (exactly 10 s ago counts as left).
        assert intensity.count(11.0) == 2
        assert intensity.record(11.0)
        assert not intensity.record(11.5)

    def test_window_slides(self) -> None:
        intensity = RestartIntensity(max_restarts=2, within_s=5.0)
        results = [intensity.record(t) for t in (0.0, 4.0, 5.0, 9.0, 9.5, 20.0)]
        assert results == [True, True, True, True, False, True]
        assert intensity.count(20.0) == 1
        assert intensity.count(100.0) == 0

    def test_reset_forgets_everything(self) -> None:
        intensity = RestartIntensity(max_restarts=1, within_s=60.0)
        intensity.record(0.0)
        assert not intensity.record(1.0)
        intensity.reset()
        assert intensity.count(1.0) == 0
        assert intensity.record(2.0)

    def test_history_replayed_rebuilds_the_intensity(self) -> None:
        intensity = RestartIntensity(max_restarts=2, within_s=5.0)
        for t in (0.0, 4.0, 6.0):
            intensity.record(t)
        assert intensity.history() == (4.0, 6.0)  # 0.0 left the window when 6.0 was recorded
        copy = RestartIntensity(max_restarts=2, within_s=5.0)
        for t in intensity.history():
            copy.record(t)
        assert copy.history() == intensity.history()
        assert [copy.record(7.0), intensity.record(7.0)] == [False, False]  # the 3rd within 5 s, in both
        assert RestartIntensity(max_restarts=1, within_s=1.0).history() == ()

    def test_zero_restarts_allowed(self) -> None:
        assert not RestartIntensity(max_restarts=0, within_s=1.0).record(0.0)

    def test_arguments_are_checked(self) -> None:
        with pytest.raises(ValueError, match=r"^max_restarts must"):
            RestartIntensity(max_restarts=-1, within_s=1.0)
        with pytest.raises(ValueError, match=r"^max_restarts must"):
            RestartIntensity(max_restarts=2.5, within_s=1.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"^within_s must"):
            RestartIntensity(max_restarts=1, within_s=0.0)
        intensity = RestartIntensity(max_restarts=4, within_s=30)
        assert (intensity.max_restarts, intensity.within_s) == (4, 30.0)
