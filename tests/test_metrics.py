"""Metrics (actors/metrics.py): what Ray's Prometheus endpoint serves for a job, read with a real HTTP GET;
the Grafana dashboard and the README name only exported metrics, and the README lists every one.

The live test runs ``python supervisor.py --metrics-port PORT`` (its own local Ray, the bundled
simulator) in a subprocess: the session keeps its one ``ray.init``.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import urllib.request
import uuid
from collections.abc import Callable

import pytest

from actors import metrics
from tests.conftest import ROOT, S, wait_for
from tests.test_cli import start_job
from tests.test_job import Job, job_env, jobs  # noqa: F401 - the fixture, reused

DASHBOARD = ROOT / "configs" / "grafana-tickvisor.json"
EXPORTED = re.compile(r"\bray_tickvisor_[a-z_]+")


def exported() -> set[str]:
    return {name for names in metrics.exported_names().values() for name in names}


def test_every_metric_has_a_valid_definition() -> None:
    for name, spec in metrics.METRICS.items():
        assert re.fullmatch(r"[a-z_]+", name)
        assert spec.kind in {"counter", "gauge", "histogram"}
        assert spec.help and spec.labels
        assert bool(spec.buckets) == (spec.kind == "histogram"), name
        assert list(spec.buckets) == sorted(spec.buckets)


def test_the_dashboard_queries_only_exported_metrics_and_shows_each() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    named = {m for expr in exprs for m in EXPORTED.findall(expr)}
    assert named, "the dashboard names no metric"
    assert named <= exported(), f"not exported: {sorted(named - exported())}"
    shown = {name for name, series in metrics.exported_names().items() if named & set(series)}
    assert shown == set(metrics.METRICS), f"not on the dashboard: {sorted(set(metrics.METRICS) - shown)}"


def test_the_readme_lists_every_metric_and_no_other() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- metrics -->", 1)[1].split("<!-- /metrics -->", 1)[0]
    listed = set(EXPORTED.findall(section))
    assert listed <= exported(), f"the README names metrics we do not export: {sorted(listed - exported())}"
    for name, series in metrics.exported_names().items():
        assert listed & set(series), f"{name} is not in the README's metric list"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, list[tuple[str, float]]]:
    """Every tickvisor sample on the endpoint: name -> [(labels, value)]."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    out: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        m = re.match(r"(ray_tickvisor_[a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out.setdefault(m[1], []).append((m[2] or "", float(m[3])))
    return out


def total(samples: dict[str, list[tuple[str, float]]], name: str, label: str = "") -> float:
    return sum(v for labels, v in samples.get(name, []) if label in labels)


@pytest.mark.timeout(int(240 * S))  # a job start, several commands and a stop on a shared machine
@pytest.mark.ray
def test_a_job_exports_its_metrics_through_ray(jobs: Callable[..., Job]) -> None:  # noqa: F811
    port = free_port()
    args = ["--namespace", f"tv-metrics-{uuid.uuid4().hex[:8]}", "--status-every", "0", "--metrics-port", str(port)]
    job = start_job(jobs, args, job_env())

    wanted = {
        "ray_tickvisor_frames_received_total",
        "ray_tickvisor_ticks_decoded_total",
        "ray_tickvisor_ticks_delivered_total",
        "ray_tickvisor_subscription_requests_total",
        "ray_tickvisor_codes",
        "ray_tickvisor_latency_seconds_count",
        "ray_tickvisor_batch_size_count",
    }

    def ready() -> dict[str, list[tuple[str, float]]] | None:
        try:
            samples = scrape(port)
        except OSError:
            return None
        return samples if wanted <= set(samples) and total(samples, "ray_tickvisor_ticks_delivered_total") else None

    samples = wait_for(ready, 90, every=2.0, what=f"the tickvisor metrics on port {port}")
    assert set(samples) <= exported(), sorted(set(samples) - exported())
    for conn in ("stock-0", "forex_crypto-0"):
        assert total(samples, "ray_tickvisor_frames_received_total", f'connection="{conn}"') > 0
        assert total(samples, "ray_tickvisor_ticks_decoded_total", f'connection="{conn}"') > 0
        assert total(samples, "ray_tickvisor_subscription_requests_total", f'code="200",connection="{conn}"') >= 1
    assert total(samples, "ray_tickvisor_ticks_delivered_total", 'strategy="console"') > 0
    assert total(samples, "ray_tickvisor_codes", 'state="ok"') == 6
    assert total(samples, "ray_tickvisor_codes", 'state="quarantined"') == 0
    assert total(samples, "ray_tickvisor_latency_seconds_count", 'strategy="console"') > 0
    assert total(samples, "ray_tickvisor_batch_size_count", 'stage="connection"') > 0
    assert total(samples, "ray_tickvisor_batch_size_count", 'stage="strategy"') > 0

    code, _ = job.stop(signal.SIGINT)
    assert code == 0, job.tail()
