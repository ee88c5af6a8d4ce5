"""Process control for scripts/bench.py: tickvisor's job, the baseline client processes, Ray, time limits.

* ``System``: tickvisor started as tests/conftest.py's System does (actors.control.Job), from a config
  that ``settings_toml`` writes for the simulator (scripts/bench_sim.py starts that one, and reads
  CPU and memory from /proc); ``in_sync`` and ``server_set`` compare the registry with the server.
* ``Client``: one baseline client process (scripts/bench_clients.py), at the run's niceness.
* ``setup_environment`` and ``local_ray``: this tree's code on Ray's workers, at the run's niceness, and
  the run's one ``ray.init(address="local")``. ``hard_cap`` stops a run that takes too long.
* ``log`` and ``wait_until``: progress on stderr, and polling with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from actors.control import Job
from scripts.bench_sim import FOREX_PATH, ROOT, STOCK_PATH, SimProcess

STOCK_SUFFIXES = (".US", ".HK", ".SH", ".SZ")
POLL_S = 0.02
NICENESS = 0  # of the baseline client processes; the same as Ray's workers (--niceness)


def log(message: str) -> None:
    """Progress on stderr (stdout carries the table and the BENCH line)."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def wait_until(condition: Callable[[], Any], timeout: float, what: str, every: float = POLL_S) -> Any:
    """Poll ``condition`` until truthy; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# --- tickvisor ------------------------------------------------------------------------------------------


def settings_toml(
    port: int, strategies: list[tuple[str, list[str]]], *, heartbeat_s: float, deadline_s: float
) -> str:
    """A tickvisor config against the simulator on ``port``."""
    lines = [
        "[feed]",
        'token_env = "TICKVISOR_BENCH_TOKEN"',
        f"heartbeat_interval_s = {heartbeat_s}",
        f"silence_deadline_s = {deadline_s}",
        "ping_deadline_s = 1.0",
        "[restart]",
        "max_restarts = 50",
        "within_s = 60.0",
        "backoff_initial_s = 0.1",
        "backoff_max_s = 2.0",
        "[endpoints.stock]",
        f'url = "ws://127.0.0.1:{port}{STOCK_PATH}"',
        "[endpoints.forex_crypto]",
        f'url = "ws://127.0.0.1:{port}{FOREX_PATH}"',
    ]
    for name, symbols in strategies:
        lines += [
            "[[strategies]]",
            f'name = "{name}"',
            'kind = "scripts.bench_strategy:BenchStrategy"',
            f"symbols = {json.dumps(symbols)}",
        ]
    return "\n".join(lines) + "\n"


class System(Job):
    """tickvisor started as the tests start it (actors.control.Job), in a ``bench-`` namespace."""

    @classmethod
    def from_toml(cls, toml: str, token: str, *, wait: bool = True) -> System:
        from actors.core.settings import parse_settings

        job = cls.start(parse_settings(toml, source="<bench>"), token, prefix="bench", wait=wait)
        assert isinstance(job, System)
        return job

    def stop(self, timeout: float = 20.0) -> None:
        try:
            super().stop(timeout)
        except Exception as exc:  # noqa: BLE001 - stopping anyway
            log(f"supervisor stop: {type(exc).__name__}: {exc}")


def server_set(sim: SimProcess, path: str) -> set[str]:
    """The union of the trade sets of the open connections on ``path``."""
    out: set[str] = set()
    for conn in sim.state()["connections"]:
        if conn["open"] and conn["path"] == path:
            out.update(conn["trades"])
    return out


def in_sync(system: System, sim: SimProcess, path: str, expected: set[str] | None = None) -> bool:
    """Registry in sync, and the server's set on ``path`` equals the registry's union there."""
    reg = system.registry()
    stock = path == STOCK_PATH
    union = {c for c in reg.union if c.endswith(STOCK_SUFFIXES) == stock}
    return reg.in_sync and server_set(sim, path) == union and (expected is None or union == expected)


# --- the baseline client processes --------------------------------------------------------------------


class Client:
    """A baseline client process (scripts/bench_clients.py), its output read line by line."""

    def __init__(self, kind: str, url: str, codes: list[str], count: int, *, latency: bool = False) -> None:
        cmd = [
            sys.executable,
            str(ROOT / "scripts" / "bench_clients.py"),
            kind,
            "--url",
            url,
            "--codes",
            ",".join(codes),
            "--count",
            str(count),
        ]
        if latency:
            cmd.append("--latency")
        nice = NICENESS
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,  # noqa: PLW1509 - os.nice only
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")

    def expect(self, prefix: str, timeout: float) -> str:
        """The next line starting with ``prefix`` (its rest)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"client printed no {prefix} within {timeout:.0f} s") from None
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"client exited ({self.proc.returncode}) before {prefix}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


# --- the run's environment ----------------------------------------------------------------------------


def setup_environment(niceness: int) -> None:
    """Make Ray's workers run this tree's code, and every measured consumer run at ``niceness``."""
    # Ray puts the driver's working directory first on its workers' sys.path: run from this tree, so that
    # the actors measured are this tree's actors.
    os.chdir(ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH", "")) if x)
    os.environ.setdefault("LOGURU_LEVEL", "WARNING")
    os.environ["RAY_worker_niceness"] = str(niceness)  # noqa: SIM112 - Ray's spelling
    global NICENESS  # noqa: PLW0603 - read by Client
    NICENESS = niceness


@contextlib.contextmanager
def local_ray() -> Iterator[None]:
    """The run's one local Ray cluster (2 CPUs, namespace ``tickvisor-bench``), shut down on exit."""
    import ray

    ray.init(
        address="local",
        include_dashboard=False,
        num_cpus=2,
        logging_level=logging.WARNING,
        log_to_driver=False,
        namespace="tickvisor-bench",
    )
    try:
        yield
    finally:
        ray.shutdown()


@contextlib.contextmanager
def hard_cap(seconds: float) -> Iterator[None]:
    """Stop the run (and clean up) if it takes longer than ``seconds``."""

    def expired(signum: int, frame: object) -> None:  # noqa: ARG001
        raise TimeoutError(f"the benchmark took longer than its hard cap of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(int(seconds))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
