"""Supervision: restart intensity, escalation to a group restart, then giving up (real Ray + simulator)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actors.control import Job
from actors.core.errors import ConfigError, EscalationError
from actors.core.settings import parse_settings
from actors.children import connection_ids, load_strategy_class
from tests.conftest import System, collector_toml, start_system, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

FX_PATH = "/quote-b-ws-api"


@pytest.fixture(scope="module")
def system(sim: Any) -> Iterator[System]:
    sys_ = start_system(sim, collector_toml("collector", ["EURUSD", "AAPL.US"]), restart="max_restarts = 2")
    yield sys_
    sys_.stop()


def events(system: System) -> list[dict[str, Any]]:
    return system.status()["events"]


def test_repeated_silence_escalates_then_gives_up(system: System, sim: Any) -> None:
    def stall_current() -> None:
        conns = [c for c in sim.state()["connections"] if c["open"] and c["path"] == FX_PATH]
        if conns and "stall" not in conns[-1]["faults"]:
            sim.inject("stall", conn=conns[-1]["id"])

    def gave_up() -> EscalationError | None:
        stall_current()
        return system.get(system.sup.failure.remote())

    failure = wait_for(gave_up, 90, every=0.3, what="the supervisor to give up")
    assert isinstance(failure, EscalationError), failure  # typed: a caller can branch on it
    assert failure.child == "connection:forex_crypto-0"
    assert "connection silent" in failure.cause
    kinds = [e["event"] for e in events(system) if e["child"] == "connection:forex_crypto-0"]
    assert "escalated" in kinds
    assert kinds.index("escalated") < kinds.index("gave up")
    # Before escalating, the child was restarted exactly max_restarts times.
    assert kinds[: kinds.index("escalated")].count("restart") == 3  # the third one exceeds 2
    sim.inject("clear")


def test_connection_ids_follow_the_plan_limits() -> None:
    toml = """
[feed]
plan = "free"
[endpoints.stock]
url = "ws://127.0.0.1:1/quote-stock-b-ws-api"
[endpoints.forex_crypto]
url = "ws://127.0.0.1:1/quote-b-ws-api"
[[strategies]]
name = "a"
kind = "console"
symbols = ["AAPL.US", "TSLA.US", "EURUSD"]
"""
    assert connection_ids(parse_settings(toml)) == {"stock": ["stock-0"], "forex_crypto": ["forex_crypto-0"]}


def test_load_strategy_class_names_the_bad_kind() -> None:
    assert load_strategy_class("recorder").__name__ == "Recorder"
    with pytest.raises(ConfigError, match="no_such_module"):
        load_strategy_class("no_such_module:Thing")
    with pytest.raises(ConfigError, match="not a subclass"):
        load_strategy_class("collections:OrderedDict")


def test_a_running_job_is_reachable_by_its_namespace(system: System) -> None:
    """The control path a status CLI will use: attach by namespace, read the status."""
    job = Job.attach(system.namespace)
    status = job.status()
    assert set(status["connections"]) == {"stock-0", "forex_crypto-0"}
    assert "registry" in status and "events" in status
    with pytest.raises(ValueError):
        Job.attach("no-such-namespace-" + system.namespace)
