"""actors/control.py: the address look-up and the commands' decisions without Ray, then the control path
(``Job``, ``connect``, ``status_document``, ``change_subscription``) on a running job (real Ray + simulator).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors import control
from actors.control import Job, NoJob, change_subscription, connect, status_document
from actors.core.restart import ChildEvent, EventKind
from actors.core.status import (
    NOT_OK,
    OK,
    REFUSED,
    ConnectionView,
    RegistryView,
    StatusSnapshot,
    StrategyView,
    status_exit,
)
from tests.conftest import S, System, collector_toml, start_system, wait_for

# --- no Ray ------------------------------------------------------------------------------------------


@pytest.fixture
def tmp_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The address files and ``ray start``'s leftovers go under ``tmp_path``."""
    monkeypatch.setattr(control.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    return tmp_path


def listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


class TestAddressFile:
    def test_it_is_per_user_and_per_namespace(self, tmp_dirs: Path) -> None:
        path = control.address_file("prod")
        assert path == tmp_dirs / f"tickvisor-{os.getuid()}" / "prod.ray-address"
        assert control.address_file("other") != path

    def test_publish_writes_it_private_and_unpublish_removes_only_its_own(self, tmp_dirs: Path) -> None:
        path = control.publish_address("prod", "127.0.0.1:6379")
        assert path.read_text() == "127.0.0.1:6379\n"
        assert path.parent.stat().st_mode & 0o777 == 0o700
        control.unpublish_address("prod", "127.0.0.1:7000")  # a later job's address: kept
        assert path.exists()
        control.unpublish_address("prod", "127.0.0.1:6379")
        assert not path.exists()
        control.unpublish_address("prod", "127.0.0.1:6379")  # gone already: no error


class TestFindAddress:
    def test_the_address_given_wins_then_ray_address(self, tmp_dirs: Path) -> None:
        env = {"RAY_ADDRESS": "10.0.0.2:6379"}
        assert control.find_address("prod", "10.0.0.1:6379", env) == "10.0.0.1:6379"
        assert control.find_address("prod", None, env) == "10.0.0.2:6379"
        assert control.find_address("prod", "", env) == "10.0.0.2:6379"

    def test_the_published_address_then_the_last_ray_start(self, tmp_dirs: Path) -> None:
        with listening() as published, listening() as started:
            (tmp_dirs / "ray").mkdir()
            last = f"127.0.0.1:{started.getsockname()[1]}"
            (tmp_dirs / "ray" / "ray_current_cluster").write_text(last + "\n")
            assert control.find_address("prod", None, {}) == last
            mine = f"127.0.0.1:{published.getsockname()[1]}"
            control.publish_address("prod", mine)
            assert control.find_address("prod", None, {}) == mine

    def test_no_address_anywhere_names_where_it_looked(self, tmp_dirs: Path) -> None:
        with pytest.raises(NoJob) as caught:
            control.find_address("prod", None, {})
        line = str(caught.value)
        assert line.startswith("tickvisor: no job found in namespace 'prod' at no Ray address")
        assert "prod.ray-address" in line
        assert "ray_current_cluster" in line


class TestConnectWithoutRay:
    def test_nothing_listening_is_no_job(self, tmp_dirs: Path) -> None:
        with listening() as sock:
            port = sock.getsockname()[1]
        with pytest.raises(NoJob, match=rf"at 127\.0\.0\.1:{port}: nothing listens there"):
            connect("prod", f"127.0.0.1:{port}", {})

    def test_a_remote_dashboard_is_refused_with_what_to_give(self, tmp_dirs: Path) -> None:
        with pytest.raises(NoJob, match="give the cluster's GCS address"):
            connect("prod", "http://10.1.2.3:8265", {})


class FakeJob(Job):
    """A Job whose Supervisor answers typed snapshots from a list (no Ray)."""

    def __init__(self, snapshots: list[StatusSnapshot]) -> None:
        super().__init__("prod", supervisor=None)
        self.snapshots = snapshots
        self.asked = 0

    def snapshot(self, timeout: float = 30.0) -> StatusSnapshot:
        self.asked += 1
        return self.snapshots.pop(0)


def healthy(rate: float | None) -> StatusSnapshot:
    return StatusSnapshot(
        run_id="r1",
        connections={"stock-0": ConnectionView(endpoint="stock", connected=True, frames=10)},
        strategies={"tape": StrategyView(ticks=3)},
        registry=RegistryView(in_sync=True),
        rates={"stock-0": rate},
        events=[ChildEvent(1.0, "registry", EventKind.STARTED, "pid 7")],
    )


class TestStatusDocument:
    def test_a_measured_rate_needs_one_snapshot(self) -> None:
        job = FakeJob([healthy(4.0)])
        doc = status_document(job, "127.0.0.1:6379")
        assert job.asked == 1
        assert (doc["namespace"], doc["address"], doc["run_id"]) == ("prod", "127.0.0.1:6379", "r1")
        assert doc["connections"][0]["ticks_per_s"] == 4.0
        assert status_exit(doc) == OK
        json.dumps(doc)

    def test_an_unknown_rate_asks_again(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(control, "RATE_SAMPLE_S", 0.0)
        job = FakeJob([healthy(None), healthy(2.5)])
        assert status_document(job, "")["connections"][0]["ticks_per_s"] == 2.5
        assert job.asked == 2

    def test_a_failing_job_is_not_ok(self) -> None:
        snapshot = StatusSnapshot(failure="connection:stock-0: vendor error 401", rates={"stock-0": 1.0})
        assert status_exit(status_document(FakeJob([snapshot]), "")) == NOT_OK


def test_codes_in_a_foreign_notation_are_refused_before_any_call() -> None:
    job = FakeJob([])  # any call to the job would fail: it has no Supervisor
    lines, code = change_subscription(job, "subscribe", "tape", ["aapl.us"], "trades")
    assert code == REFUSED
    assert lines == ["aapl.us: refused: codes are case-sensitive and upper-case; hint: did you mean AAPL.US?"]
    assert job.asked == 0


# --- on a running job (real Ray + simulator) ----------------------------------------------------------


@pytest.fixture(scope="module")
def system(ray_session: None, sim: Any) -> Iterator[System]:
    sys_ = start_system(sim, collector_toml("tape", ["AAPL.US", "EURUSD"]))
    yield sys_
    sys_.stop()


@pytest.mark.ray
class TestOnARunningJob:
    def test_attach_reaches_the_job_by_its_namespace(self, system: System) -> None:
        job = Job.attach(system.namespace)
        assert set(job.pids()) >= {
            "supervisor",
            "registry",
            "heartbeat",
            "connection:stock-0",
            "strategy:tape",
        }
        with pytest.raises(ValueError, match="supervisor"):
            Job.attach("no-such-namespace-" + system.namespace)

    def test_the_snapshot_is_typed(self, system: System) -> None:
        snapshot = system.snapshot()
        assert isinstance(snapshot, StatusSnapshot)
        assert set(snapshot.connections) == {"stock-0", "forex_crypto-0"}
        assert all(isinstance(c, ConnectionView) and c.error is None for c in snapshot.connections.values())
        assert isinstance(snapshot.registry, RegistryView)
        assert snapshot.registry.error is None
        assert {"AAPL.US", "EURUSD"} <= set(snapshot.registry.strategies["tape"])
        assert isinstance(snapshot.strategies["tape"], StrategyView)
        assert snapshot.decoders, "the decoders' views"
        started = [e for e in snapshot.events if e.event is EventKind.STARTED]
        assert started, snapshot.events
        assert all(isinstance(e, ChildEvent) for e in snapshot.events)

    def test_status_keeps_every_childs_own_statistics(self, system: System) -> None:
        status = system.status()
        assert {"run_id", "failure", "connections", "strategies", "registry", "rates", "events"} <= set(
            status
        )
        assert "url" in status["connections"]["stock-0"]  # the full ConnectionStats, not the view
        assert "ghosts" in next(iter(status["decoders"].values()))
        assert {e["event"] for e in status["events"]} <= {str(k) for k in EventKind}
        json.dumps(status)

    def test_connect_and_status_document(self, system: System) -> None:
        import ray

        address = ray.get_runtime_context().gcs_address
        job, found = connect(system.namespace, address, {})
        assert found == address
        assert job.namespace == system.namespace

        def document() -> dict[str, Any] | None:
            doc = status_document(job, found)
            return doc if status_exit(doc) == OK else None

        doc = wait_for(document, 30, what="an OK status document")
        assert doc["namespace"] == system.namespace
        assert {c["id"] for c in doc["connections"]} == {"stock-0", "forex_crypto-0"}
        assert all(c["ticks_per_s"] is not None for c in doc["connections"])

    def test_change_subscription_answers_per_code(self, system: System) -> None:
        lines, code = change_subscription(system, "subscribe", "tape", ["TSLA.US"], "trades", 20 * S)
        assert code == OK
        assert lines == ["TSLA.US: subscribe accepted (held 1 time(s) by this strategy)"]
        lines, code = change_subscription(system, "unsubscribe", "tape", ["TSLA.US"], "trades", 20 * S)
        assert code == OK, lines
        lines, code = change_subscription(system, "subscribe", "tape", ["AAPL.US"], "x", 20 * S)
        assert code == REFUSED
        assert lines[-1] == "kind: refused: 'x' is not 'trades' or 'book'"

    def test_an_unknown_strategy_names_the_running_ones(self, system: System) -> None:
        lines, code = change_subscription(system, "subscribe", "nobody", ["AAPL.US"], "trades", 20 * S)
        assert code == REFUSED
        assert lines == [f"tickvisor: no strategy 'nobody' in namespace {system.namespace!r}; running: tape"]
