"""Shared fixtures: one Ray runtime per test session, a simulator per test module, a running system."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.bench.config import job_config, strategy, to_toml
from scripts.bench.job import System
from scripts.bench.wait import WaitTimeoutError
from scripts.bench.wait import wait_for as shared_wait_for

ROOT = Path(__file__).resolve().parent.parent
#: One time unit for integration waits; CI machines are shared and noisy, so waits are generous.
S = float(os.environ.get("TICKVISOR_TEST_S", "1.0"))


def wait_for(
    condition: Callable[[], Any], timeout: float, every: float = 0.1, what: str = "condition"
) -> Any:
    """scripts.bench.wait.wait_for, ``timeout`` scaled by ``S``; a timeout fails the test naming ``what``."""
    try:
        return shared_wait_for(condition, timeout * S, what=what, every=every)
    except WaitTimeoutError as exc:
        pytest.fail(str(exc))


@contextlib.contextmanager
def frozen(strategy: Any, tmp_path: Path, what: str = "the strategy") -> Iterator[Callable[[], None]]:
    """A ``tests.collector.Collector`` actor with its event loop blocked (``freeze``: it takes no
    delivery and reads nothing) until ``release()``, which also waits for the call to return; released
    on the way out if the body did not.
    """
    import ray

    fifo, marker = tmp_path / "gate", tmp_path / "frozen"
    os.mkfifo(fifo)
    call = strategy.freeze.remote(str(fifo), str(marker))
    released = False

    def release() -> None:
        nonlocal released
        with open(fifo, "wb") as gate:  # noqa: PTH123 - a named pipe
            gate.write(b"x")
        released = True
        ray.get(call, timeout=30 * S)

    try:
        wait_for(marker.exists, 30, what=f"{what} frozen")
        yield release
    finally:
        if not released and marker.exists():
            release()


def run_smoke(
    command: list[str], tag: str, timeout_s: float, extra: list[str] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Run ``python <command> --smoke <extra>`` from the repository root in a subprocess
    (``["scripts/bench.py"]``, ``["-m", "scripts.bench.channels"]``); (its last line's ``<tag> {json}``,
    every line).

    Fails unless that line comes last, the script exits 0 and the JSON says ``"ok": true``.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)  # a benchmark that uses Ray starts its own local cluster
    proc = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, *command, "--smoke", *(extra or [])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{proc.stderr[-3000:]}"
    last = lines[-1]
    assert last.startswith(f"{tag} "), f"the last line is not the {tag} line: {last!r}"
    result = json.loads(last[len(tag) + 1 :])
    # The report first: it says which part failed (the stderr tail is mostly the actors' last log lines).
    assert proc.returncode == 0, f"{last[:3000]}\nstderr:\n{proc.stderr[-2000:]}"
    assert result["ok"] is True, f"{last[:3000]}\nstderr:\n{proc.stderr[-2000:]}"
    return result, lines


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for the whole session (start-up costs seconds)."""
    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
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
#: The module-level switch of feed.transport for every test system: empty means the default (picows);
#: ``TICKVISOR_TEST_TRANSPORT=websockets scripts/test tests/test_system.py`` runs them on websockets.
TEST_TRANSPORT = os.environ.get("TICKVISOR_TEST_TRANSPORT", "")


def system_toml(port: int, strategies: str, **feed: Any) -> str:
    """A config for the system under test: short deadlines, the simulator on ``port``, then
    ``strategies`` (``[[strategies]]`` entries as TOML, from ``collector_toml`` or written out).
    """
    feed_defaults: dict[str, Any] = {
        "heartbeat_interval_s": 0.5,
        "silence_deadline_s": 1.5,
        "ping_deadline_s": 1.0,
        "token_env": "TICKVISOR_TEST_TOKEN",
    }
    if TEST_TRANSPORT:
        feed_defaults["transport"] = TEST_TRANSPORT
    feed_defaults.update(feed)
    return to_toml(job_config(port, feed=feed_defaults)) + strategies


#: Every Ray wait of a test system is scaled like the tests' own waits.
System.scale = S


def collector_toml(name: str, symbols: list[str], **options: Any) -> str:
    """A ``[[strategies]]`` entry for tests.collector:Collector."""
    extra = {"options": options} if options else {}
    return to_toml({"strategies": [strategy(name, "tests.collector:Collector", symbols, **extra)]})


def start_system(
    sim: Any, strategies: str, *, in_sync: bool = True, restart: str = "", **feed: Any
) -> System:
    """A System on ``sim`` with these ``[[strategies]]``; waits for the first subscription by default."""
    from actors.core.settings import parse_settings

    text = system_toml(sim.port, strategies, **feed)
    if restart:
        text = text.replace("max_restarts = 50", restart)
    system = System.launch(parse_settings(text), TEST_TOKEN, timeout=120)
    if in_sync:
        wait_for(lambda: system.registry().in_sync, 20, what="first subscription in sync")
    return system


#: A file of the README's user project: the fenced block after ``<!-- user-project: PATH -->``.
README_PROJECT_FILE = re.compile(r"<!-- user-project: (\S+) -->\s*```\w*\n(.*?)\n```", re.DOTALL)


def write_readme_project(into: Path) -> set[str]:
    """Write the README's user project, as written, into ``into`` (with the empty ``desk/__init__.py`` it
    says to add); returns the paths of the files the README shows.
    """
    files = dict(README_PROJECT_FILE.findall((ROOT / "README.md").read_text(encoding="utf-8")))
    for name, body in {**files, "desk/__init__.py": ""}.items():
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        (into / name).write_text(body + "\n", encoding="utf-8")
    return set(files)


def pip(*args: str) -> None:
    """Our own interpreter's pip, offline; fails the test with pip's output."""
    done = subprocess.run(  # noqa: S603 - our own interpreter's pip, no index needed
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=120 * S,
        check=False,
    )
    assert done.returncode == 0, f"pip {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the directory it is installed in with ``pip install --target``), built once a session.

    The wheel is built offline from a copy of what it is made of (pyproject.toml, README.md, actors/), so
    the build leaves nothing in the checkout and proves those files are enough. The directory holds the
    package and ``bin/tickvisor``; put it on ``PYTHONPATH`` (and ``bin`` on ``PATH``) to use it.
    """
    import shutil

    tmp = tmp_path_factory.mktemp("package")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "actors", src / "actors", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp / "dist"), str(src))
    wheels = list((tmp / "dist").glob("tickvisor-*.whl"))
    assert len(wheels) == 1, wheels
    site = tmp / "site"
    pip("install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheels[0]))
    return wheels[0], site


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    """The AllTick simulator on 127.0.0.1, fast ticks, test rate limits as the vendor's."""
    from actors.sim import SimulatorThread

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
