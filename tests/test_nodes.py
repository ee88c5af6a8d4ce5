"""Node loss on a multi-node Ray cluster (tests/cluster_node_loss.py), in a subprocess of its own.

The test session keeps ONE ``ray.init`` (tests/conftest.py); a cluster of three raylets cannot live
in it, so the scenario runs as a script in its own process and reports one ``NODELOSS {json}`` line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, S

pytestmark = [pytest.mark.ray]


@pytest.mark.timeout(1200)  # three raylets start on a shared 2-core machine: minutes, not seconds
def test_a_removed_node_loses_no_subscription() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(ROOT / "tests" / "cluster_node_loss.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900 * S,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("NODELOSS ")]
    assert lines, f"no report; stderr:\n{proc.stderr[-4000:]}"
    report = json.loads(lines[-1][len("NODELOSS ") :])
    print(lines[-1])  # the loss window, for the log
    assert report["ok"], f"{report}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0
    assert report["nodes_used"] >= 2, "the connections did not spread over the nodes"
    # Each decoder ran on its connection's node, before the loss and after Ray moved the lost pairs;
    # that includes the pair grown while running (its own placement group).
    assert "connection:stock-2" in report["placement"]
    assert report["apart_at_start"] == {}
    assert report["apart_after"] == {}
    assert set(report["placement_after"].values()).isdisjoint(
        {report["placement"][n] for n in report["removed"]}
    )
    assert report["lost_codes"], "the removed node held no subscribed connection"
    assert report["loss_window_s"] > 0
