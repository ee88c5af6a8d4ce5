"""actors/core/restart.py: the restart policy with plain numbers for time. No Ray, no clock."""

from __future__ import annotations

import pytest

from actors.core.errors import ChildFailed, ConnectionSilent, EscalationError, FeedError, VendorError
from actors.core.restart import EventKind, RestartPolicy, Verdict

CONN = "connection:forex_crypto-0"


def policy(max_restarts: int = 2, within_s: float = 60.0) -> RestartPolicy:
    return RestartPolicy(max_restarts=max_restarts, within_s=within_s)


class TestIntensity:
    def test_restarts_within_the_intensity_restart_the_child(self) -> None:
        p = policy()
        assert [p.record(CONN, "silent", t) for t in (0.0, 1.0)] == [Verdict.RESTART, Verdict.RESTART]

    def test_the_restart_beyond_it_escalates_and_the_count_starts_afresh(self) -> None:
        p = policy()
        verdicts = [p.record(CONN, "silent", t) for t in (0.0, 1.0, 2.0)]
        assert verdicts == [Verdict.RESTART, Verdict.RESTART, Verdict.ESCALATE]
        assert p.history() == {}  # reset by the escalation
        assert p.escalations() == {CONN: 2.0}

    def test_restarts_that_left_the_window_do_not_count(self) -> None:
        p = policy(within_s=10.0)
        assert [p.record(CONN, "x", t) for t in (0.0, 5.0, 10.0, 15.0)] == [Verdict.RESTART] * 4
        assert p.history() == {CONN: [10.0, 15.0]}  # exactly within_s ago has left the window

    def test_children_count_apart(self) -> None:
        p = policy(max_restarts=1)
        assert p.record(CONN, "x", 0.0) is Verdict.RESTART
        assert p.record("connection:stock-0", "x", 0.5) is Verdict.RESTART
        assert p.record(CONN, "x", 1.0) is Verdict.ESCALATE

    def test_zero_restarts_escalates_at_the_first(self) -> None:
        assert policy(max_restarts=0).record(CONN, "x", 0.0) is Verdict.ESCALATE

    def test_bad_intensity_is_refused(self) -> None:
        with pytest.raises(ValueError, match="max_restarts"):
            RestartPolicy(max_restarts=-1, within_s=1.0)
        with pytest.raises(ValueError, match="within_s"):
            RestartPolicy(max_restarts=1, within_s=0.0)


class TestEscalation:
    def exceed(self, p: RestartPolicy, start: float) -> Verdict:
        verdicts = [p.record(CONN, "silent", start + i) for i in range(p.max_restarts + 1)]
        assert verdicts[:-1] == [Verdict.RESTART] * p.max_restarts
        return verdicts[-1]

    def test_exceeding_again_within_the_window_of_the_escalation_gives_up(self) -> None:
        p = policy()
        assert self.exceed(p, 0.0) is Verdict.ESCALATE
        assert self.exceed(p, 10.0) is Verdict.GIVE_UP

    def test_exceeding_again_after_the_window_escalates_again(self) -> None:
        p = policy(within_s=60.0)
        assert self.exceed(p, 0.0) is Verdict.ESCALATE  # escalated at 2.0
        assert self.exceed(p, 62.0) is Verdict.ESCALATE  # 64.0 - 2.0 >= 60: a new escalation
        assert p.escalations() == {CONN: 64.0}

    def test_giving_up_names_the_child_the_count_and_the_last_cause(self) -> None:
        p = policy()
        self.exceed(p, 0.0)
        self.exceed(p, 10.0)
        cause = ConnectionSilent(1.6, 1.5)
        error = p.give_up_error(CONN, cause, 12.0)
        assert isinstance(error, EscalationError)
        assert (error.child, error.restarts, error.within_s, error.cause) == (CONN, 3, 60.0, str(cause))
        assert p.escalation_reason() == "more than 2 restarts in 60 s: group restart"


class TestSupervisorItself:
    def test_the_supervisor_gives_up_at_once_beyond_its_intensity(self) -> None:
        p = policy(max_restarts=1)
        assert p.record("supervisor", "process died", 0.0) is Verdict.RESTART
        assert p.record("supervisor", "process died", 1.0) is Verdict.GIVE_UP
        assert p.escalations() == {}
        error = p.give_up_error("supervisor", "process died", 1.0)
        assert isinstance(error, ChildFailed)
        assert error.child == "supervisor"
        assert str(error) == "supervisor: restarted 2 times within 60 s (restart.max_restarts 1)"


class TestFailures:
    def test_a_401_on_a_connection_with_other_tokens_takes_the_token_out(self) -> None:
        refused = VendorError(401, "token invalid", 22004, 1)
        assert policy().failed(CONN, refused, tokens=2) is Verdict.TAKE_TOKEN_OUT

    @pytest.mark.parametrize(
        ("child", "cause", "tokens"),
        [
            (CONN, VendorError(401, "token invalid", 22004, 1), 1),  # the only token
            ("registry", VendorError(401, "token invalid", 22004, 1), 2),  # not a connection
            (CONN, VendorError(604, "code unauthorized", 22004, 1), 2),  # not a refused token
            (CONN, FeedError("http 404"), 2),
        ],
    )
    def test_anything_else_gives_up(self, child: str, cause: FeedError, tokens: int) -> None:
        assert policy().failed(child, cause, tokens=tokens) is Verdict.GIVE_UP


class TestSavedState:
    def test_history_and_escalations_rebuild_the_policy(self) -> None:
        p = policy()
        self.run(p)
        again = RestartPolicy(max_restarts=2, within_s=60.0, restarts=p.history(), escalated=p.escalations())
        assert again.history() == p.history()
        assert again.escalations() == p.escalations()
        assert again.record(CONN, "x", 6.0) is p.record(CONN, "x", 6.0) is Verdict.GIVE_UP

    def run(self, p: RestartPolicy) -> None:
        for t in (0.0, 1.0, 2.0, 3.0, 4.0):  # escalates at 2.0, then two restarts
            p.record(CONN, "x", t)
        assert p.history() == {CONN: [3.0, 4.0]}


def test_event_kinds_are_the_strings_the_status_shows() -> None:
    assert [str(k) for k in EventKind] == [
        "started", "restarted", "restart", "escalated", "gave up", "failed", "token out", "opened", "closed",
    ]  # fmt: skip
    assert EventKind.GAVE_UP == "gave up"
