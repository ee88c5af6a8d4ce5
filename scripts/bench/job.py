"""Process control for scripts/bench.py: tickvisor's job and Ray.

* ``System``: tickvisor started as tests/conftest.py's System does (actors.control.Job), from a config
  that ``settings_toml`` writes for the simulator (scripts/bench/harness.py starts that one, and reads
  CPU and memory from /proc); ``in_sync`` and ``server_set`` compare the registry with the server.
* ``setup_environment`` and ``local_ray``: this tree's code on Ray's workers, at the run's niceness, and
  the run's one ``ray.init(address="local")``.

The helpers that need no Ray (the baseline client processes, ``log``, ``hard_cap``) are
in scripts/bench/harness.py, so that scripts/bench/channels.py can use them without loading Ray.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator

import scripts.bench.harness
from actors.control import Job
from scripts.bench.harness import FOREX_PATH, ROOT, STOCK_PATH, SimProcess, log

STOCK_SUFFIXES = (".US", ".HK", ".SH", ".SZ")


# --- tickvisor ------------------------------------------------------------------------------------------


def settings_toml(
    port: int,
    strategies: list[tuple[str, list[str]]],
    *,
    heartbeat_s: float,
    deadline_s: float,
    transport: str = "picows",
    max_codes_per_connection: int = 0,
    stock: bool = True,
) -> str:
    """A tickvisor config against the simulator on ``port``, reading with ``transport`` (at most
    ``max_codes_per_connection`` codes per connection if given: more connections for the same codes; without the stock endpoint if not ``stock``).
    """
    lines = [
        "[feed]",
        f'transport = "{transport}"',
        'token_env = "TICKVISOR_BENCH_TOKEN"',
        f"heartbeat_interval_s = {heartbeat_s}",
        f"silence_deadline_s = {deadline_s}",
        "ping_deadline_s = 1.0",
        *([f"max_codes_per_connection = {max_codes_per_connection}"] if max_codes_per_connection else []),
        "[restart]",
        "max_restarts = 50",
        "within_s = 60.0",
        "backoff_initial_s = 0.1",
        "backoff_max_s = 2.0",
        *(["[endpoints.stock]", f'url = "ws://127.0.0.1:{port}{STOCK_PATH}"'] if stock else []),
        "[endpoints.forex_crypto]",
        f'url = "ws://127.0.0.1:{port}{FOREX_PATH}"',
    ]
    for name, symbols in strategies:
        lines += [
            "[[strategies]]",
            f'name = "{name}"',
            'kind = "scripts.bench.strategy:BenchStrategy"',
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


# --- the run's environment ----------------------------------------------------------------------------


def setup_environment(niceness: int) -> None:
    """Make Ray's workers run this tree's code, and every measured consumer run at ``niceness``."""
    # Ray puts the driver's working directory first on its workers' sys.path: run from this tree, so that
    # the actors measured are this tree's actors.
    os.chdir(ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH", "")) if x)
    os.environ.setdefault("LOGURU_LEVEL", "WARNING")
    os.environ["RAY_worker_niceness"] = str(niceness)  # noqa: SIM112 - Ray's spelling
    scripts.bench.harness.NICENESS = niceness  # read by Client


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
