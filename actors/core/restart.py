"""The Supervisor's restart policy (Erlang/OTP style): restart, escalate, give up, or take a token out. Pure.

Rules of this module:

1. Each child may restart at most ``max_restarts`` times within ``within_s`` seconds
   (``actors.core.backoff.RestartIntensity``); a restart within that intensity is ``Verdict.RESTART``.
2. The first restart beyond it escalates (``Verdict.ESCALATE``): the shell restarts the whole group of
   connections, and the child's count starts afresh.
3. A child that exceeds its intensity again less than ``within_s`` after its escalation makes the job
   stop (``Verdict.GIVE_UP``, ``give_up_error`` says why: an ``EscalationError``).
4. The Supervisor (``actors.core.naming.SUPERVISOR``) has no group above it: exceeding its intensity
   gives up at once, with ``ChildFailed("supervisor", ...)``.
5. A failure no retry can cure (``failed``) stops the job, except a 401 (token refused) on a
   connection while the job has other tokens: that token is taken out (``Verdict.TAKE_TOKEN_OUT``).
6. Time is a parameter, in wall-clock seconds: the shell saves the restart times, and a restarted
   Supervisor may run on another node, whose monotonic clock starts elsewhere.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import msgspec

from actors.core.backoff import RestartIntensity
from actors.core.errors import ChildFailed, EscalationError, FeedError, VendorError
from actors.core.naming import SUPERVISOR

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

TOKEN_REFUSED = 401  # PROTOCOL.md: 401 token invalid


class Verdict(enum.Enum):
    """What the Supervisor does about a child's restart or failure."""

    RESTART = "restart"  # within the intensity: restart the child alone
    ESCALATE = "escalate"  # the intensity is exceeded: restart the group of connections
    GIVE_UP = "give up"  # exceeded again after an escalation, or a failure no retry cures: the job stops
    # A token was refused while others live: the job goes on without it.
    TAKE_TOKEN_OUT = "take token out"  # noqa: S105 - a verdict, not a secret


class EventKind(enum.StrEnum):
    """The kinds of supervision events (``ChildEvent.event``; the status shows them as these strings)."""

    STARTED = "started"  # a child's process reported its first start
    RESTARTED = "restarted"  # Ray restarted a child's process (it reported a new pid)
    RESTART = "restart"  # the Supervisor restarted a connection (the heartbeat asked for it)
    ESCALATED = "escalated"  # a child exceeded its intensity: the group of connections restarts
    GAVE_UP = "gave up"  # a child exceeded its intensity after an escalation: the job stops
    FAILED = "failed"  # a child hit a failure no retry can cure: the job stops
    TOKEN_OUT = "token out"  # noqa: S105 - an event: a token was refused and taken out; the job goes on
    OPENED = "opened"  # a connection opened while running, on the registry's request
    CLOSED = "closed"  # a connection closed while running: it held nothing for the grace period


class ChildEvent(msgspec.Struct, frozen=True):
    """One supervision event, as the Supervisor saves it and the status shows it."""

    at: float  # wall-clock seconds
    child: str  # a child's actor name, or "supervisor" for the Supervisor's own restarts
    event: EventKind
    reason: str


class RestartPolicy:
    """Restart intensities and escalations of every child of one job. No I/O, no clock."""

    def __init__(
        self,
        *,
        max_restarts: int,
        within_s: float,
        restarts: Mapping[str, Iterable[float]] | None = None,
        escalated: Mapping[str, float] | None = None,
    ) -> None:
        """Set the intensity of every child, and carry over a saved state (``history``/``escalations``).

        Args:
            max_restarts: restarts allowed per child within ``within_s``, >= 0.
            within_s: the window's length in seconds, > 0.
            restarts: child -> its saved restart times, oldest first.
            escalated: child -> when it was last escalated.

        Raises:
            ValueError: ``max_restarts`` or ``within_s`` is out of range.

        """
        RestartIntensity(max_restarts=max_restarts, within_s=within_s)  # checks the arguments
        self._max_restarts = max_restarts
        self._within_s = float(within_s)
        self._intensity: dict[str, RestartIntensity] = {}
        self._escalated: dict[str, float] = dict(escalated or {})
        for child, times in (restarts or {}).items():
            intensity = self._intensity_of(child)
            for at in times:
                intensity.record(at)

    @property
    def max_restarts(self) -> int:
        """Restarts allowed per child in one window."""
        return self._max_restarts

    @property
    def within_s(self) -> float:
        """The window's length in seconds."""
        return self._within_s

    def record(self, child: str, cause: FeedError | str, now: float) -> Verdict:
        """Record a restart of ``child`` at ``now``, and decide (rules 1-4).

        Args:
            child: the child's actor name, or ``supervisor`` for the Supervisor's own restart.
            cause: why it restarted (used by ``give_up_error``; does not change the verdict).
            now: wall-clock seconds.

        Returns:
            ``RESTART``, ``ESCALATE`` (its count starts afresh) or ``GIVE_UP``.

        """
        del cause  # the verdict depends on times only; the shell names the cause in its events
        intensity = self._intensity_of(child)
        if intensity.record(now):
            return Verdict.RESTART
        if child == SUPERVISOR:
            return Verdict.GIVE_UP
        escalated_at = self._escalated.get(child)
        if escalated_at is not None and now - escalated_at < self._within_s:
            return Verdict.GIVE_UP
        self._escalated[child] = now
        intensity.reset()
        return Verdict.ESCALATE

    def failed(self, child: str, cause: FeedError, *, tokens: int) -> Verdict:
        """Decide about a failure no retry can cure (rule 5).

        Args:
            child: the child's actor name.
            cause: its failure.
            tokens: how many tokens the job runs with (``feed.token_envs``).

        Returns:
            ``TAKE_TOKEN_OUT`` for a 401 on a connection while the job has more than one token, else
            ``GIVE_UP``.

        """
        refused = isinstance(cause, VendorError) and cause.ret == TOKEN_REFUSED
        if refused and tokens > 1 and child.startswith("connection:"):
            return Verdict.TAKE_TOKEN_OUT
        return Verdict.GIVE_UP

    def give_up_error(self, child: str, cause: FeedError | str, now: float) -> FeedError:
        """Why the job stops after ``record`` gave up on ``child`` at ``now`` (rules 3 and 4)."""
        count = self._intensity_of(child).count(now)
        if child == SUPERVISOR:
            too_often = f"restarted {count} times within {self._within_s:g} s"
            return ChildFailed(
                SUPERVISOR, FeedError(f"{too_often} (restart.max_restarts {self._max_restarts})")
            )
        return EscalationError(child, count, self._within_s, str(cause))

    def escalation_reason(self) -> str:
        """Say why the group restarts (the reason of an ``escalated`` event)."""
        return f"more than {self._max_restarts} restarts in {self._within_s:g} s: group restart"

    def history(self) -> dict[str, list[float]]:
        """Child -> its restart times still kept, oldest first (to save; ``restarts=`` rebuilds them)."""
        return {c: list(i.history()) for c, i in self._intensity.items() if i.history()}

    def escalations(self) -> dict[str, float]:
        """Child -> when it was last escalated (to save; ``escalated=`` rebuilds them)."""
        return dict(self._escalated)

    def _intensity_of(self, child: str) -> RestartIntensity:
        intensity = self._intensity.get(child)
        if intensity is None:
            intensity = RestartIntensity(max_restarts=self._max_restarts, within_s=self._within_s)
            self._intensity[child] = intensity
        return intensity
