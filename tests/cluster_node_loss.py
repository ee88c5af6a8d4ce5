"""Node loss on a real multi-node Ray cluster on this machine: run by tests/test_nodes.py in a subprocess.

Not collected by pytest (its name does not start with ``test_``): the test session keeps ONE
``ray.init``, and this scenario needs a cluster of its own (``ray.cluster_utils.Cluster``: a head and
two worker nodes, each a raylet of its own). It prints one line ``NODELOSS {json}`` and exits 0 when
every check held, 1 otherwise.

Scenario: a job on the cluster, against the simulator (loopback), with 4 stock codes on 2 stock
connections (2 codes each) and 2 forex codes on 1 forex connection; the connections spread over the
nodes. A fifth stock code subscribed while running opens a third stock connection (a grown pair, in
a placement group of its own). The worker node that holds a connection is removed. Checks, through
public APIs only (the simulator's state, the registry's status, what the strategy received):

- each connection's decoder runs on its connection's node (the pair shares a placement-group bundle:
  actors.core.placement), at start and after the lost pairs came back on a surviving node;
- the lost connection comes back on a surviving node and its codes are subscribed again;
- no subscription is lost: the simulator serves the whole union again;
- every code ticks again at the strategy, with no duplicate and no out-of-order seq per code;
- the loss window (from the node's removal to the first tick of every lost code) is reported.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
os.environ.pop("RAY_ADDRESS", None)
# ray.cluster_utils starts the head in this process and asks the GCS for each node's info without
# the cluster token: with token authentication on (any local Ray writes ~/.ray/auth_token) the head
# never answers and start-up times out. This throwaway cluster lives on this machine only.
os.environ["RAY_AUTH_MODE"] = "disabled"

SCALE = float(os.environ.get("TICKVISOR_TEST_S", "1.0"))
STOCK_PATH = "/quote-stock-b-ws-api"
STOCK = ["AAPL.US", "TSLA.US", "700.HK", "MSFT.US"]
FX = ["EURUSD", "BTCUSDT"]
GROWN = "NVDA.US"  # subscribed while running: a third stock connection opens for it
TOKEN = "node-loss-token"
# The GCS declares a node dead after health_check_failure_threshold failed checks, one every
# health_check_period_ms (Ray's defaults: 5 every 3 s, so 15 s). A removed raylet refuses the check at
# once, so a check a second finds it in about 5 s; a raylet that is only slow still has
# health_check_timeout_ms (10 s) to answer each.
HEAD_NODE_ARGS = {
    "num_cpus": 2,
    "include_dashboard": False,
    "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 5},
}


def wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout * SCALE
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout * SCALE:.0f} s waiting for {what}; last {last!r}")


def _start_cluster(cluster_class: Any) -> Any:
    # Ray gives a raylet 30 s to register; a loaded machine can miss that: try three times.
    for attempt in (1, 2, 3):
        try:
            return cluster_class(initialize_head=True, head_node_args=HEAD_NODE_ARGS)
        except Exception:
            if attempt == 3:
                raise
            time.sleep(5)
    raise AssertionError("unreachable")


def main() -> int:
    import logging

    import ray
    from ray._private import state as gcs_state  # the GCS actor table: ray.util.state needs a dashboard
    from ray.cluster_utils import Cluster

    from actors.children import connection_ids
    from actors.control import Job
    from actors.core.settings import parse_settings
    from scripts.simulator import SimulatorThread
    from tests.conftest import collector_toml, system_toml

    report: dict[str, Any] = {"ok": False}
    sim = SimulatorThread(token=TOKEN, tick_rate=20.0, heartbeat_timeout=10.0, plan="premium", max_codes=2)
    sim.start()
    cluster = _start_cluster(Cluster)
    job = None
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="tickvisor-nodes", logging_level=logging.WARNING)
        text = system_toml(
            sim.port,
            collector_toml("watcher", STOCK + FX),
            plan="premium",
            max_codes_per_connection=2,
            # Three raylets on a loaded machine: liveness deadlines that a starved process still meets.
            heartbeat_interval_s=1.0,
            silence_deadline_s=5.0,
            ping_deadline_s=3.0,
        )
        settings = parse_settings(text)
        job = Job.start(settings, TOKEN, timeout=180 * SCALE)
        namespace = job.namespace

        def registry_status() -> Any:
            registry: Any = ray.get_actor("registry", namespace)  # a handle: Ray types its methods Never
            return ray.get(registry.status.remote())

        wait(lambda: registry_status().in_sync, 60, "in sync")
        # Connection k of the configured ones reads into decoder k (actors.launch).
        conns = [f"connection:{c}" for ids in connection_ids(settings).values() for c in ids]
        pairs = {conn: f"decoder:{k}" for k, conn in enumerate(conns)}

        def alive_nodes() -> dict[str, str]:
            actors = gcs_state.actors(actor_state_name="ALIVE").values()
            return {a["Name"]: a["Address"]["NodeID"] for a in actors if a["Name"]}

        def placement() -> dict[str, str]:
            return {n: node for n, node in alive_nodes().items() if n.startswith("connection:")}

        def apart() -> dict[str, tuple[str, str]]:
            """The pairs whose connection and decoder are not both alive on one node."""
            now = alive_nodes()
            return {
                c: (now.get(c, "-")[:8], now.get(d, "-")[:8])
                for c, d in pairs.items()
                if c not in now or now.get(d) != now[c]
            }

        wait(lambda: len(placement()) == len(pairs), 60, "every connection alive")
        # A grown pair: the registry's pool gives the next connection the next decoder id.
        strategy: Any = ray.get_actor("strategy:watcher", job.namespace)  # a handle, as registry above
        assert ray.get(strategy.do_subscribe.remote([GROWN]), timeout=60).get(GROWN) == 1
        pairs["connection:stock-2"] = f"decoder:{len(pairs)}"
        wait(lambda: len(placement()) == len(pairs), 120, "the grown connection alive")
        wait(lambda: registry_status().in_sync, 60, "in sync")
        wait(lambda: not apart(), 60, "the grown decoder alive")
        report["apart_at_start"] = apart()
        assert not report["apart_at_start"], (
            f"a decoder is not on its connection's node: {report['apart_at_start']}"
        )
        where = placement()
        report["nodes_used"] = len(set(where.values()))
        worker_ids = {w.node_id: w for w in workers}
        alive = gcs_state.actors(actor_state_name="ALIVE").values()
        report["all_actors"] = {a["Name"]: a["Address"]["NodeID"][:8] for a in alive}
        report["head"] = cluster.head_node.node_id[:8]

        def strategy_node() -> str:
            actors = gcs_state.actors(actor_state_name="ALIVE").values()
            return next(a["Address"]["NodeID"] for a in actors if a["Name"] == "strategy:watcher")

        # The strategy's record of what it received is the public output this test reads: the node
        # removed must not be its node (its restart would start that record afresh).
        keep = strategy_node()
        # The three pairs are the bundles of one SPREAD placement group: one per node on these three
        # nodes, so a worker node without the strategy holds one.
        on_workers = sorted(n for n, node in where.items() if node in worker_ids and node != keep)
        assert on_workers, f"no connection on a worker node without the strategy: {where}"
        victim_name = next((n for n in on_workers if "stock" in n), on_workers[0])
        victim_node = where[victim_name]
        lost = sorted(n for n, node in where.items() if node == victim_node)
        status = registry_status()
        lost_codes = sorted(
            code for c in status.connections if f"connection:{c.conn_id}" in lost for code in c.desired
        )
        report |= {"placement": where, "removed": lost, "lost_codes": lost_codes}
        before = ray.get(strategy.collected.remote())["seen"]
        counts = {code: len(before.get(code, [])) for code in lost_codes}

        removed_at = time.monotonic()
        cluster.remove_node(worker_ids[victim_node], allow_graceful=False)

        def back() -> bool:
            now = placement()
            return all(n in now and now[n] != victim_node for n in lost)

        wait(back, 120, "the lost connections alive on a surviving node")
        report["back_s"] = round(time.monotonic() - removed_at, 2)
        report["placement_after"] = placement()
        # Their decoders came back with them, in the same bundle on the same surviving node.
        wait(lambda: not apart(), 120, "each decoder alive beside its connection again")
        report["apart_after"] = apart()
        assert not report["apart_after"], (
            f"a decoder is not on its connection's node: {report['apart_after']}"
        )

        def served() -> bool:
            sets = [set(c["trades"]) for c in sim.state()["connections"] if c["open"]]
            return set().union(*sets) >= {*STOCK, *FX, GROWN} if sets else False

        wait(served, 120, "the simulator serving the whole union again")
        report["resubscribed_s"] = round(time.monotonic() - removed_at, 2)

        def ticking() -> bool:
            seen = ray.get(strategy.collected.remote())["seen"]
            return all(len(seen.get(code, [])) > counts[code] for code in lost_codes)

        wait(ticking, 120, "ticks of every lost code at the strategy")
        report["loss_window_s"] = round(time.monotonic() - removed_at, 2)
        collected = ray.get(strategy.collected.remote())
        assert collected["violations"] == [], collected["violations"][:5]
        assert set(collected["seen"]) >= {*STOCK, *FX, GROWN}
        final = registry_status()
        assert set(final.union) == {*STOCK, *FX, GROWN}, final.union
        report["ok"] = True
    except AssertionError as exc:
        report["error"] = str(exc)
    finally:
        if job is not None:
            try:
                job.stop(timeout=30)
            except Exception as exc:  # noqa: BLE001 - the report says what failed
                report["stop_error"] = f"{type(exc).__name__}: {exc}"
        ray.shutdown()
        cluster.shutdown()
        sim.stop()
    print("NODELOSS " + json.dumps(report), flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
