"""Shared fixtures: one Ray runtime per test session, a simulator per test module, a running system."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: One time unit for integration waits; CI machines are shared and noisy, so waits are generous.
S = float(os.environ.get("TICKVISOR_TEST_S", "1.0"))


def wait_for(condition: Callable[[], Any], timeout: float, every: float = 0.1, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout * S
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout * S:.1f} s waiting for {what}; last value {last!r}")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole session (start-up costs seconds)."""
    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    os.environ.setdefault("LOGURU_LEVEL", "INFO")
    for attempt in (1, 2):
        try:
            ray.init(
                address="local",
                num_cpus=2,
                include_dashboard=False,
                logging_level=logging.WARNING,
                namespace="tickvisor-tests",
            )
            break
        except Exception:
            # Ray gives its raylet 30 s to register; a heavily loaded machine can miss that once.
            ray.shutdown()
            if attempt == 2:
                raise
    yield
    ray.shutdown()


TEST_TOKEN = "test-token-" + uuid.uuid4().hex[:6]


def system_toml(port: int, strategies: str, **feed: Any) -> str:
    """A config for the system under test: short deadlines, the simulator on ``port``."""
    feed_defaults = {
        "heartbeat_interval_s": 0.5,
        "silence_deadline_s": 1.5,
        "ping_deadline_s": 1.0,
        "token_env": "TICKVISOR_TEST_TOKEN",
    }
    feed_defaults.update(feed)
    lines = ["[feed]"]
    for key, value in feed_defaults.items():
        lines.append(f"{key} = {value!r}".replace("'", '"'))
    lines += [
        "[restart]",
        "max_restarts = 50",
        "within_s = 60.0",
        "backoff_initial_s = 0.1",
        "backoff_max_s = 2.0",
        "[endpoints.stock]",
        f'url = "ws://127.0.0.1:{port}/quote-stock-b-ws-api"',
        "[endpoints.forex_crypto]",
        f'url = "ws://127.0.0.1:{port}/quote-b-ws-api"',
        strategies,
    ]
    return "\n".join(lines)


class System:
    """A running tickvisor (Supervisor actor and children) in its own Ray namespace."""

    def __init__(self, settings: Any, token: str) -> None:
        import ray

        from actors.settings import Secret
        from actors.supervision import Supervisor

        self.namespace = "tv-" + uuid.uuid4().hex[:8]
        self.sup = (
            ray.remote(Supervisor)
            .options(name="supervisor", namespace=self.namespace, num_cpus=0, max_concurrency=256)
            .remote(settings, Secret(token), uuid.uuid4().hex[:8], self.namespace)
        )
        self.conn_ids = ray.get(self.sup.start.remote(), timeout=120 * S)

    def get(self, ref: Any, timeout: float = 20.0) -> Any:
        import ray

        return ray.get(ref, timeout=timeout * S)

    def actor(self, name: str) -> Any:
        import ray

        return ray.get_actor(name, namespace=self.namespace)

    def registry(self) -> Any:
        return self.get(self.actor("registry").status.remote())

    def status(self) -> dict[str, Any]:
        return self.get(self.sup.status.remote())

    def pids(self) -> dict[str, int]:
        return self.get(self.sup.pids.remote())

    def stop(self) -> None:
        import ray

        try:
            self.get(self.sup.stop.remote(), timeout=15)
        finally:
            ray.kill(self.sup, no_restart=True)


def collector_toml(name: str, symbols: list[str], **options: Any) -> str:
    """A ``[[strategies]]`` entry for tests.collector:Collector."""
    import json

    opts = ", ".join(f"{k} = {json.dumps(v)}" for k, v in options.items())
    extra = f"\noptions = {{ {opts} }}" if opts else ""
    return (
        f'[[strategies]]\nname = "{name}"\nkind = "tests.collector:Collector"\n'
        f"symbols = {json.dumps(symbols)}{extra}\n"
    )


def start_system(sim: Any, strategies: str, *, in_sync: bool = True, restart: str = "", **feed: Any) -> System:
    """A System on ``sim`` with these ``[[strategies]]``; waits for the first subscription by default."""
    from actors.settings import parse_settings

    text = system_toml(sim.port, strategies, **feed)
    if restart:
        text = text.replace("max_restarts = 50", restart)
    system = System(parse_settings(text), TEST_TOKEN)
    if in_sync:
        wait_for(lambda: system.registry().in_sync, 20, what="first subscription in sync")
    return system


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    """The AllTick simulator on 127.0.0.1, fast ticks, test rate limits as the vendor's."""
    from scripts.simulator import SimulatorThread

    simulator = SimulatorThread(token=TEST_TOKEN, tick_rate=20.0, heartbeat_timeout=10.0)
    simulator.start()
    yield simulator
    simulator.stop()


def sim_sets(sim: Any) -> dict[str, set[str]]:
    """Trade sets of the simulator's open connections, by path."""
    out: dict[str, set[str]] = {}
    for conn in sim.state()["connections"]:
        if conn["open"]:
            out.setdefault(conn["path"], set()).update(conn["trades"])
    return out
