"""Tests of actors.core.liveness: the liveness clock of one connection (PROTOCOL.md "Liveness").

Pure: times are plain floats fed by the test, no clock, no sleep.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.errors import InvalidTransition
from actors.core.liveness import Liveness, LivenessStats, Verdict

OK, DUE, SILENT = Verdict.OK, Verdict.HEARTBEAT_DUE, Verdict.SILENT


def standard() -> Liveness:
    """PROTOCOL.md's cadence: a heartbeat every 10 s; dead after 15 s; probe after 5 s."""
    return Liveness(heartbeat_every=10.0, silent_after=15.0)


def drive(
    liveness: Liveness,
    *,
    until: float,
    answer_after: float | None,
    push_every: float | None = None,
) -> tuple[list[float], float | None]:
    """Play a shell that sleeps until next_wakeup, sends heartbeats when due and stops at SILENT.

    The simulated server answers every heartbeat ``answer_after`` seconds later (never when None) and
    pushes a trade every ``push_every`` seconds (never when None).
    Returns the times heartbeats were sent and the time SILENT was seen (None if never).
    """
    now = 0.0
    liveness.connected(now)
    sent: list[float] = []
    answers: list[float] = []
    next_push = push_every if push_every is not None else math.inf
    for _ in range(100_000):
        verdict = liveness.verdict(now)
        if verdict is SILENT:
            return sent, now
        if verdict is DUE:
            liveness.heartbeat_sent(now)
            sent.append(now)
            if answer_after is not None:
                answers.append(now + answer_after)
        wake = min(liveness.next_wakeup(now), next_push, min(answers, default=math.inf))
        assert wake > now, "next_wakeup must move time forward"
        if wake > until:
            return sent, None
        now = wake
        if now >= next_push:
            liveness.frame_received(now)
            next_push += push_every or math.inf
        for at in [a for a in answers if a <= now]:
            answers.remove(at)
            liveness.frame_received(now)
    raise AssertionError("the shell loop did not finish")


class TestLiveness:
    """PROTOCOL.md "Liveness": the client heartbeats every 10 s; any frame proves life."""

    def test_nothing_before_connected(self) -> None:
        liveness = standard()
        calls: dict[str, Callable[[], object]] = {
            "give a verdict": lambda: liveness.verdict(0.0),
            "record a frame": lambda: liveness.frame_received(0.0),
            "record a heartbeat": lambda: liveness.heartbeat_sent(0.0),
            "measure silence": lambda: liveness.silent_for(0.0),
            "plan the next check": lambda: liveness.next_wakeup(0.0),
        }
        for action, call in calls.items():
            with pytest.raises(InvalidTransition) as caught:
                call()
            assert str(caught.value) == f"can't {action} before connected"
        assert liveness.statistics() == LivenessStats(0, 0, 0, None, None, None)

    def test_new_socket_needs_a_heartbeat_at_once(self) -> None:
        liveness = standard()
        liveness.connected(0.0)
        assert liveness.verdict(0.0) is DUE
        liveness.heartbeat_sent(0.0)
        assert liveness.verdict(0.0) is OK

    def test_example_timeline(self) -> None:
        liveness = standard()
        liveness.connected(0.0)
        liveness.heartbeat_sent(0.0)
        liveness.frame_received(0.1)  # 22001
        assert liveness.verdict(1.0) is OK
        liveness.frame_received(9.0)  # a push
        assert liveness.verdict(10.0) is DUE  # cadence: 10 s since the last heartbeat
        liveness.heartbeat_sent(10.0)
        assert liveness.verdict(10.0) is OK
        # The server never answers again: 22 s after the last frame the socket is dead.
        assert liveness.verdict(31.0) is SILENT
        assert liveness.silent_for(31.0) == 22.0

    def test_silent_strictly_after_the_deadline(self) -> None:
        liveness = Liveness(heartbeat_every=10.0, silent_after=15.0)
        liveness.connected(0.0)
        liveness.heartbeat_sent(0.0)
        liveness.frame_received(1.0)
        assert liveness.verdict(16.0) is not SILENT  # exactly 15 s: not yet
        assert liveness.verdict(math.nextafter(16.0, math.inf)) is SILENT
        assert liveness.verdict(16.5) is SILENT

    def test_silent_wins_over_a_due_heartbeat(self) -> None:
        liveness = standard()
        liveness.connected(0.0)
        assert liveness.verdict(15.0) is DUE  # never heartbeated, not silent yet
        assert liveness.verdict(15.5) is SILENT

    def test_frames_reset_silence(self) -> None:
        liveness = standard()
        liveness.connected(0.0)
        for t in (5.0, 12.0, 20.0, 34.0):
            liveness.heartbeat_sent(t)
            liveness.frame_received(t)
            assert liveness.verdict(t + 15.0) is not SILENT
            assert liveness.silent_for(t + 15.0) == 15.0
        assert liveness.verdict(49.5) is SILENT

    def test_heartbeats_every_heartbeat_every_on_a_busy_socket(self) -> None:
        sent, silent_at = drive(standard(), until=55.0, answer_after=0.1, push_every=0.5)
        assert silent_at is None
        assert sent == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]

    def test_a_new_socket_starts_afresh(self) -> None:
        liveness = standard()
        liveness.connected(0.0)
        liveness.heartbeat_sent(0.0)
        assert liveness.verdict(20.0) is SILENT
        liveness.connected(20.0)
        assert liveness.verdict(20.0) is DUE  # rule: a heartbeat is due on a new socket
        assert liveness.silent_for(21.0) == 1.0
        assert liveness.statistics() == LivenessStats(
            connects=2,
            frames=0,
            heartbeats_sent=1,
            connected_at=20.0,
            last_frame_at=20.0,
            last_heartbeat_at=None,
        )

    def test_statistics(self) -> None:
        liveness = standard()
        liveness.connected(1.0)
        liveness.heartbeat_sent(1.0)
        liveness.frame_received(1.2)
        liveness.frame_received(2.5)
        assert liveness.statistics() == LivenessStats(
            connects=1,
            frames=2,
            heartbeats_sent=1,
            connected_at=1.0,
            last_frame_at=2.5,
            last_heartbeat_at=1.0,
        )

    def test_time_never_runs_backwards(self) -> None:
        liveness = standard()
        liveness.connected(0.0)
        liveness.heartbeat_sent(5.0)
        liveness.frame_received(6.0)
        liveness.frame_received(4.0)  # reported late by another task
        liveness.heartbeat_sent(3.0)
        stats = liveness.statistics()
        assert (stats.last_frame_at, stats.last_heartbeat_at) == (6.0, 5.0)
        assert liveness.silent_for(5.0) == 0.0  # a query in the past sees no negative silence

    def test_next_wakeup(self) -> None:
        liveness = standard()  # heartbeat 10, silent 15, probe 5
        liveness.connected(0.0)
        # DUE: only SILENT can follow, just after the deadline.
        assert liveness.next_wakeup(0.0) == math.nextafter(15.0, math.inf)
        liveness.heartbeat_sent(0.0)
        assert liveness.next_wakeup(0.0) == 5.0  # the probe of a quiet socket
        liveness.frame_received(3.0)
        assert liveness.next_wakeup(3.0) == 8.0  # quiet since 3.0
        liveness.frame_received(7.0)
        assert liveness.next_wakeup(7.0) == 10.0  # cadence comes first
        assert liveness.verdict(10.0) is DUE
        # At a DUE boundary the next change is SILENT.
        assert liveness.next_wakeup(10.0) == math.nextafter(22.0, math.inf)
        assert liveness.verdict(liveness.next_wakeup(10.0)) is SILENT
        assert liveness.next_wakeup(23.0) == math.inf  # only an event ends SILENT

    def test_next_wakeup_is_always_later_than_now(self) -> None:
        liveness = standard()
        liveness.connected(0.0)
        liveness.heartbeat_sent(0.0)
        for now in (0.0, 4.999, 5.0, 9.0, 10.0, 15.0):
            assert liveness.next_wakeup(now) > now

    def test_arguments_are_checked(self) -> None:
        bad = {
            "heartbeat_every": {"heartbeat_every": 0.0, "silent_after": 15.0},
            "silent_after": {"heartbeat_every": 10.0, "silent_after": -1.0},
            "probe_after": {"heartbeat_every": 10.0, "silent_after": 15.0, "probe_after": math.nan},
        }
        for name, kwargs in bad.items():
            with pytest.raises(ValueError, match=f"^{name} must be"):
                Liveness(**kwargs)
        with pytest.raises(ValueError, match=r"^heartbeat_every must be at most 10 s .*PROTOCOL\.md"):
            Liveness(heartbeat_every=10.5, silent_after=15.0)
        with pytest.raises(ValueError, match=r"^probe_after \(15\.0 s\) must be below silent_after"):
            Liveness(heartbeat_every=10.0, silent_after=15.0, probe_after=15.0)
        with pytest.raises(ValueError, match="heartbeat_every must be a positive"):
            Liveness(heartbeat_every=True, silent_after=15.0)

    def test_periods(self) -> None:
        liveness = Liveness(heartbeat_every=2, silent_after=6)
        assert (liveness.heartbeat_every, liveness.silent_after, liveness.probe_after) == (2.0, 6.0, 2.0)


class TestProbe:
    """An idle socket is probed early, so that it answers 22001 well before the silence deadline."""

    def test_idle_but_alive_socket_is_never_silent(self) -> None:
        sent, silent_at = drive(standard(), until=300.0, answer_after=0.2)
        assert silent_at is None
        gaps = {round(b - a, 6) for a, b in itertools.pairwise(sent)}
        assert gaps == {5.2}  # answered 0.2 s after each probe, probed 5 s after the answer

    def test_probe_needs_quiet_and_no_recent_heartbeat(self) -> None:
        liveness = standard()
        liveness.connected(0.0)
        liveness.heartbeat_sent(0.0)
        liveness.frame_received(0.5)
        assert liveness.verdict(5.4) is OK  # quiet for 4.9 s only
        assert liveness.verdict(5.5) is DUE  # quiet for 5 s, last heartbeat 5.5 s ago
        liveness.heartbeat_sent(5.5)
        assert liveness.verdict(9.0) is OK  # quiet for 8.5 s, but a probe is on its way
        assert liveness.verdict(10.5) is DUE  # the probe went unanswered for 5 s: probe again

    def test_busy_socket_is_not_probed(self) -> None:
        sent, _ = drive(standard(), until=29.0, answer_after=None, push_every=1.0)
        assert sent == [0.0, 10.0, 20.0]

    def test_dead_socket_is_probed_then_declared_silent(self) -> None:
        sent, silent_at = drive(standard(), until=60.0, answer_after=None)
        assert sent == [0.0, 5.0, 10.0, 15.0]
        assert silent_at == math.nextafter(15.0, math.inf)

    def test_custom_probe(self) -> None:
        liveness = Liveness(heartbeat_every=10.0, silent_after=3.0, probe_after=1.0)
        sent, silent_at = drive(liveness, until=20.0, answer_after=0.25)
        assert silent_at is None
        assert sent[:4] == [0.0, 1.25, 2.5, 3.75]

    def test_deadline_of_one_second(self) -> None:
        # The settings allow silence_deadline_s = 1.0; probes keep a slow-ticking socket alive.
        sent, silent_at = drive(
            Liveness(heartbeat_every=10.0, silent_after=1.0), until=30.0, answer_after=0.05
        )
        assert silent_at is None
        assert len(sent) > 30


# --- properties ------------------------------------------------------------------------------------

# Quarter seconds keep float arithmetic exact, so the properties can be stated without tolerance.
QUARTERS = st.integers(min_value=0, max_value=80).map(lambda n: n / 4)
EVENTS = st.lists(
    st.tuples(st.sampled_from(["frame", "heartbeat", "connect", "check"]), QUARTERS), max_size=40
)


@st.composite
def periods(draw: st.DrawFn) -> tuple[float, float, float]:
    heartbeat_every = draw(st.integers(1, 40)) / 4
    silent_after = draw(st.integers(2, 100)) / 4
    probe_after = draw(st.integers(1, int(silent_after * 4) - 1)) / 4
    return heartbeat_every, silent_after, probe_after


class TestProperty:
    """For random event sequences the verdict follows the rules, and next_wakeup is exact."""

    @settings(max_examples=300, deadline=None)
    @given(times=periods(), events=EVENTS)
    def test_verdict_matches_the_rules(
        self, times: tuple[float, float, float], events: list[tuple[str, float]]
    ) -> None:
        heartbeat_every, silent_after, probe_after = times
        liveness = Liveness(
            heartbeat_every=heartbeat_every, silent_after=silent_after, probe_after=probe_after
        )
        now = 0.0
        liveness.connected(now)
        last_frame, last_heartbeat = now, None
        for kind, gap in events:
            now += gap
            if kind == "frame":
                liveness.frame_received(now)
                last_frame = now
            elif kind == "heartbeat":
                liveness.heartbeat_sent(now)
                last_heartbeat = now
            elif kind == "connect":
                liveness.connected(now)
                last_frame, last_heartbeat = now, None
            verdict = liveness.verdict(now)
            # SILENT iff now - last_frame > silent_after.
            assert (verdict is SILENT) == (now - last_frame > silent_after)
            if verdict is not SILENT:
                expected_due = (
                    last_heartbeat is None
                    or now - last_heartbeat >= heartbeat_every
                    or (now - last_frame >= probe_after and now - last_heartbeat >= probe_after)
                )
                assert (verdict is DUE) == expected_due
            assert liveness.silent_for(now) == now - last_frame
            # next_wakeup: later than now; the verdict holds until just before it and changes at it
            # (or an instant after it, for the strict silence deadline).
            check = liveness.next_wakeup(now)
            assert check > now
            if math.isinf(check):
                assert verdict is SILENT
                continue
            assert liveness.verdict(math.nextafter(check, -math.inf)) is verdict
            assert liveness.verdict((now + check) / 2) is verdict
            assert liveness.verdict(check) is not verdict
