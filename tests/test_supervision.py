"""The Supervisor's wiring (actors.supervisor, actors.children, actors.launch): the children a config
asks for, the typed snapshot of their statistics, the saved state, and the restart policy's verdicts
carried out on a running job (real Ray + simulator). The policy itself: tests/test_restart.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from actors.children import connection_ids, connection_tokens, load_strategy_class, token_map
from actors.connection import ConnectionStats
from actors.control import Job
from actors.core.codeliveness import CodeHealth
from actors.core.errors import ConfigError, ConnectionSilent, EscalationError
from actors.core.restart import ChildEvent, EventKind, Verdict
from actors.core.settings import parse_settings
from actors.core.status import ConnectionView, RegistryView, read_snapshot
from actors.core.tokens import Secret
from actors.decoder import DecoderStats
from actors.registry import ConnStatus, RegistryStatus
from actors.strategy import StrategyStats
from actors.supervisor import GrownConnection, SupervisorState
from tests.conftest import System, collector_toml, start_system, wait_for

FX_PATH = "/quote-b-ws-api"


@pytest.fixture(scope="module")
def system(sim: Any) -> Iterator[System]:
    sys_ = start_system(sim, collector_toml("collector", ["EURUSD", "AAPL.US"]), restart="max_restarts = 2")
    yield sys_
    sys_.stop()


def events(system: System) -> list[dict[str, Any]]:
    return system.status()["events"]


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_restart_within_the_intensity_restarts_the_one_connection(system: System) -> None:
    """The heartbeat's restart request: the policy's verdict comes back, the event is recorded."""
    cause = ConnectionSilent(2.0, 1.5)
    verdict = system.get(system.sup.restart_connection.remote("stock-0", cause, False))
    assert verdict is Verdict.RESTART
    restarts = [e for e in events(system) if e["child"] == "connection:stock-0" and e["event"] == "restart"]
    assert [e["reason"] for e in restarts] == [str(cause)]
    assert system.get(system.sup.restart_connection.remote("no-such-0", cause, False)) is None
    wait_for(lambda: system.registry().in_sync, 20, what="stock-0 back in sync")


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
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


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_running_job_is_reachable_by_its_namespace(system: System) -> None:
    """The control path a status CLI will use: attach by namespace, read the status."""
    job = Job.attach(system.namespace)
    status = job.status()
    assert set(status["connections"]) == {"stock-0", "forex_crypto-0"}
    assert "registry" in status
    assert "events" in status
    with pytest.raises(ValueError):  # noqa: PT011 - Ray's lookup error; its wording is Ray's
        Job.attach("no-such-namespace-" + system.namespace)


TWO_TOKENS = """
[feed]
plan = "free"
token_envs = ["TOKEN_A", "TOKEN_B"]
[endpoints.stock]
url = "ws://127.0.0.1:1/quote-stock-b-ws-api"
[endpoints.forex_crypto]
url = "ws://127.0.0.1:1/quote-b-ws-api"
[[strategies]]
name = "a"
kind = "console"
symbols = ["AAPL.US", "TSLA.US", "MSFT.US", "NVDA.US", "AMZN.US", "META.US"]
"""


def test_start_up_connections_take_the_tokens_in_turn() -> None:
    settings = parse_settings(TWO_TOKENS)
    ids = connection_ids(settings)
    assert ids["stock"] == ["stock-0", "stock-1"]  # 6 codes over 5 a connection
    assert ids["forex_crypto"] == ["forex_crypto-0"]  # none asked for: one all the same
    assert connection_tokens(settings) == {
        "stock-0": "TOKEN_A",
        "stock-1": "TOKEN_B",
        "forex_crypto-0": "TOKEN_A",
    }


def test_token_map_names_a_token_missing() -> None:
    settings = parse_settings(TWO_TOKENS)
    one = Secret("x")
    assert token_map(settings, one) == {"TOKEN_A": one, "TOKEN_B": one}
    with pytest.raises(ConfigError, match="no token given for TOKEN_B"):
        token_map(settings, {"TOKEN_A": one})


def test_the_snapshot_reads_the_childrens_own_statistics() -> None:
    """The views of actors.core.status read what the children's statistics Structs carry."""
    conn = ConnectionStats("stock-0", "stock", "ws://x", True, 1, 120, 10, 2, 1, 3, "", 0.5, 0, gave_up=False)
    decoder = DecoderStats(
        0, 1, 2, 3, 0, 3, 0, 0, 0, {}, {}, 1, tick_ages={"AAPL.US": 0.2}, pending_ticks={"a": 4}
    )
    strategy = StrategyStats("a", 1, 40, 0, 2, 0, 1, 0.1, 7)
    registry = RegistryStatus(
        strategies={"a": {"AAPL.US": 1}},
        book_strategies={},
        union=["AAPL.US"],
        book_union=[],
        refused={},
        connections=[
            ConnStatus("stock-0", "trades", "stock", 1, True, ["AAPL.US"], ["AAPL.US"], True, 1, 0, 0.01)
        ],
        vendor_errors=[],
        in_sync=True,
        pid=9,
        codes={"AAPL.US": CodeHealth("stale", "quiet", "stock-0", 61.0)},
    )
    raw = {
        "run_id": "r",
        "failure": "",
        "connections": {"stock-0": msgspec.to_builtins(conn)},
        "decoders": {"0": msgspec.to_builtins(decoder)},
        "strategies": {"a": msgspec.to_builtins(strategy)},
        "registry": msgspec.to_builtins(registry),
        "rates": {"stock-0": None},
        "events": [msgspec.to_builtins(ChildEvent(1.0, "registry", EventKind.STARTED, "pid 9"))],
    }
    snapshot = read_snapshot(raw)
    assert snapshot.connections["stock-0"] == ConnectionView(
        endpoint="stock", connected=True, frames=120, reconnects=3, last_frame_age_s=0.5
    )
    assert snapshot.decoders["0"] is not None
    assert snapshot.decoders["0"].pending_ticks == {"a": 4}
    assert snapshot.strategies["a"] is not None
    assert (snapshot.strategies["a"].ticks, snapshot.strategies["a"].missed) == (40, 2)
    assert isinstance(snapshot.registry, RegistryView)
    assert snapshot.registry.codes["AAPL.US"].state == "stale"
    assert snapshot.registry.connections[0].acknowledged == ["AAPL.US"]
    assert snapshot.events == [ChildEvent(1.0, "registry", EventKind.STARTED, "pid 9")]


def test_statistics_the_view_cannot_read_show_as_that_childs_error() -> None:
    snapshot = read_snapshot({"connections": {"stock-0": {"connected": "yes"}, "stock-1": None}})
    bad = snapshot.connections["stock-0"]
    assert bad is not None
    assert bad.error is not None
    assert bad.error.startswith("unreadable statistics: ")
    assert snapshot.connections["stock-1"] is None
    assert snapshot.registry is None


def test_the_saved_state_round_trips_with_typed_events() -> None:
    state = SupervisorState(
        pid=7,
        started=True,
        pids={"registry": 9},
        events=[ChildEvent(1.0, "connection:stock-0", EventKind.TOKEN_OUT, "token TOKEN_A refused")],
        restarts={"connection:stock-0": [1.0, 2.0]},
        escalated={"connection:stock-0": 2.0},
        grown={"stock-2": GrownConnection("stock", "TOKEN_B", 3)},
    )
    again = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=SupervisorState)
    assert again == state
    assert again.events[0].event is EventKind.TOKEN_OUT
    assert msgspec.to_builtins(again.events[0])["event"] == "token out"  # the status shows the string
