"""Process control for scripts/bench.py: tickvisor's job and Ray.

* ``System``: a tickvisor job (actors.control.Job) as the benchmarks and tests/conftest.py start it;
  ``bench_settings`` its config for the simulator (scripts/bench/config.py builds it; scripts/bench/
  harness.py starts the simulator and reads CPU and memory from /proc); ``in_sync`` and
  ``server_set`` compare the registry with the server.
* ``setup_environment`` and ``local_ray``: this tree's code on Ray's workers, at the run's niceness, and
  the run's one ``ray.init(address="local")``.

The helpers that need no Ray (the baseline client processes, ``log``, ``hard_cap``) are
in scripts/bench/harness.py, so that scripts/bench/channels.py can use them without loading Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import scripts.bench.harness
from actors.control import Job
from actors.core.settings import Settings
from actors.core.tokens import Secret
from scripts.bench.config import build, job_config, strategy
from scripts.bench.harness import ROOT, STOCK_PATH, SimProcess, log

STOCK_SUFFIXES = (".US", ".HK", ".SH", ".SZ")


# --- tickvisor ------------------------------------------------------------------------------------------


def bench_settings(
    port: int,
    strategies: list[tuple[str, list[str]]],
    *,
    heartbeat_s: float,
    deadline_s: float,
    transport: str = "picows",
    max_codes_per_connection: int = 0,
    stock: bool = True,
) -> Settings:
    """A tickvisor config against the simulator on ``port``, reading with ``transport``, one
    ``BenchStrategy`` per (name, symbols) (at most ``max_codes_per_connection`` codes per connection if
    given: more connections for the same codes; without the stock endpoint if not ``stock``).
    """
    feed: dict[str, Any] = {
        "transport": transport,
        "token_env": "TICKVISOR_BENCH_TOKEN",
        "heartbeat_interval_s": heartbeat_s,
        "silence_deadline_s": deadline_s,
        "ping_deadline_s": 1.0,
    }
    if max_codes_per_connection:
        feed["max_codes_per_connection"] = max_codes_per_connection
    doc = job_config(
        port,
        [strategy(name, "scripts.bench.strategy:BenchStrategy", symbols) for name, symbols in strategies],
        feed=feed,
        endpoints=("stock", "forex_crypto") if stock else ("forex_crypto",),
    )
    return build(doc, source="<bench>")


class System(Job):
    """A tickvisor job as the benchmarks and the tests run it (actors.control.Job): every Ray wait of
    ``get`` scaled by ``scale``, which tests/conftest.py sets to the session's ``TICKVISOR_TEST_S``.
    """

    scale: ClassVar[float] = 1.0

    @classmethod
    def launch(
        cls,
        settings: Settings,
        token: Secret | str | Mapping[str, Secret],
        *,
        prefix: str = "tv",
        wait: bool = True,
        timeout: float = 120.0,
    ) -> System:
        """``Job.start`` (a fresh ``<prefix>-<hex>`` namespace), typed as this class; waits for the
        start within ``timeout`` x ``scale`` seconds if ``wait``.
        """
        job = cls.start(settings, token, prefix=prefix, wait=wait, timeout=timeout * cls.scale)
        assert isinstance(job, System)
        return job

    def get(self, ref: Any, timeout: float = 20.0) -> Any:
        """``ray.get`` within ``timeout`` x ``scale`` seconds."""
        return super().get(ref, timeout * self.scale)

    def stop_quietly(self, timeout: float = 20.0) -> None:
        """``stop``, logging a failure instead of raising it (a benchmark's cleanup goes on)."""
        try:
            self.stop(timeout)
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
