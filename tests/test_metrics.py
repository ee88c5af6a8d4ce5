"""Metrics (actors/metrics.py): what Ray's Prometheus endpoint serves for a job, read with a real HTTP GET;
the Grafana dashboard and docs/operations.md name only exported metrics, and the docs list every one.

The live test runs ``python supervisor.py --metrics-port PORT`` (its own local Ray) in a subprocess,
so the session keeps its one ``ray.init``, against this module's simulator, whose faults it injects.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors import metrics
from tests.conftest import ROOT, TEST_TOKEN, S, collector_toml, system_toml, wait_for
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
        assert spec.help
        assert spec.labels
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


def test_the_docs_list_every_metric_and_no_other() -> None:
    readme = (ROOT / "docs" / "operations.md").read_text()
    section = readme.split("<!-- metrics -->", 1)[1].split("<!-- /metrics -->", 1)[0]
    listed = set(EXPORTED.findall(section))
    assert listed <= exported(), f"the docs name metrics we do not export: {sorted(listed - exported())}"
    for name, series in metrics.exported_names().items():
        assert listed & set(series), f"{name} is not in the metric list of docs/operations.md"
    # Each row's kind and labels are the definition's, and the drop reasons are the ones counted.
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()]
    rows = [row for row in rows if len(row) == 4 and EXPORTED.search(row[0])]
    for name, series in metrics.exported_names().items():
        spec = metrics.METRICS[name]
        [row] = [row for row in rows if set(EXPORTED.findall(row[0])) & set(series)]
        assert row[1] == spec.kind, f"docs: {name} is a {row[1]}, actors/metrics.py says {spec.kind}"
        labels = re.findall(r"`(\w+)`", row[2])
        assert labels == list(spec.labels), f"docs: {name} has labels {labels}, not {list(spec.labels)}"
    [drops] = [row for row in rows if "drops" in row[0]]
    assert set(re.findall(r"`(\w+)` \(", drops[3])) == set(metrics.DROP_REASONS), drops[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[str, list[tuple[str, float]]]:
    """Every tickvisor sample on the endpoint: name -> [(labels, value)]."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        m = re.match(r"(ray_tickvisor_[a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out.setdefault(m[1], []).append((m[2] or "", float(m[3])))
    return out


def total(samples: dict[str, list[tuple[str, float]]], name: str, label: str = "") -> float:
    return sum(v for labels, v in samples.get(name, []) if label in labels)


@pytest.mark.timeout(int(300 * S))  # a job start, faults, several scrapes and a stop on a shared machine
@pytest.mark.ray
def test_a_job_exports_its_metrics_through_ray(jobs: Callable[..., Job], sim: Any, tmp_path: Path) -> None:  # noqa: F811
    config = tmp_path / "job.toml"
    config.write_text(system_toml(sim.port, collector_toml("tape", ["AAPL.US", "EURUSD"])))
    port = free_port()
    args = ["--config", str(config), "--namespace", f"tv-metrics-{uuid.uuid4().hex[:8]}"]
    args += ["--status-every", "0", "--metrics-port", str(port)]
    # Ray sends each process's values every 10 s by default: every second here (as tickvisor hands them
    # to Ray), so each wait below is shorter.
    env = job_env(TICKVISOR_TEST_TOKEN=TEST_TOKEN, RAY_metrics_report_interval_ms="1000")
    job = start_job(jobs, args, env)

    def scraped(condition: Callable[[dict[str, list[tuple[str, float]]]], bool]) -> Callable[[], Any]:
        def probe() -> dict[str, list[tuple[str, float]]] | None:
            try:
                samples = scrape(port)
            except OSError:
                return None
            return samples if condition(samples) else None

        return probe

    flowing = {
        "ray_tickvisor_frames_received_total",
        "ray_tickvisor_ticks_decoded_total",
        "ray_tickvisor_ticks_delivered_total",
        "ray_tickvisor_subscription_requests_total",
        "ray_tickvisor_codes",
        "ray_tickvisor_latency_seconds_count",
        "ray_tickvisor_batch_size_count",
    }

    def flowing_checks(s: dict[str, list[tuple[str, float]]]) -> list[tuple[str, bool]]:
        def some(name: str, label: str) -> bool:
            return total(s, f"ray_tickvisor_{name}", label) > 0

        checks = [(f"every metric of a flowing feed ({sorted(flowing - set(s))} missing)", flowing <= set(s))]
        for conn in ("stock-0", "forex_crypto-0"):
            checks += [
                (f"frames of {conn}", some("frames_received_total", f'connection="{conn}"')),
                (f"ticks decoded from {conn}", some("ticks_decoded_total", f'connection="{conn}"')),
                (f"a 200 on {conn}", some("subscription_requests_total", f'code="200",connection="{conn}"')),
            ]
        return [
            *checks,
            ("ticks delivered to tape", some("ticks_delivered_total", 'strategy="tape"')),
            ("2 codes ok", total(s, "ray_tickvisor_codes", 'state="ok"') == 2),
            ("no code quarantined", total(s, "ray_tickvisor_codes", 'state="quarantined"') == 0),
            ("tape's latency observed", some("latency_seconds_count", 'strategy="tape"')),
            ("connection batches", some("batch_size_count", 'stage="connection"')),
            ("strategy batches", some("batch_size_count", 'stage="strategy"')),
        ]

    # Each process sends its own values when its turn comes: wait until every one has.
    missing: list[str] = ["no scrape yet"]

    def all_flowing(s: dict[str, list[tuple[str, float]]]) -> bool:
        missing[:] = [what for what, ok in flowing_checks(s) if not ok]
        return not missing

    try:
        samples = wait_for(
            scraped(all_flowing), 90, every=1.0, what=f"every check in the metrics on port {port}"
        )
    except pytest.fail.Exception:
        pytest.fail(f"the metrics on port {port} never showed: {missing}")

    # Faults: ghost ticks and a malformed frame are dropped and counted; a stalled socket is declared
    # silent by the watchdog (time to detect it observed) and replaced (a reconnect, with its cause).
    assert sim.inject("ghost", path="stock", count=5, code="ZZZZ.US")
    assert sim.inject("malformed", path="forex_crypto", kind="json")
    assert sim.inject("stall", path="stock")
    samples = wait_for(
        scraped(
            lambda s: total(s, "ray_tickvisor_drops_total", 'reason="ghost"') >= 5
            and total(s, "ray_tickvisor_drops_total", 'reason="malformed"') >= 1
            and total(s, "ray_tickvisor_silence_detect_seconds_count", 'connection="stock-0"') >= 1
            and total(s, "ray_tickvisor_reconnects_total", 'cause="ConnectionSilent"') >= 1
        ),
        90, every=1.0, what="drops, a silence and a reconnect in the metrics",
    )  # fmt: skip
    assert set(samples) <= exported(), sorted(set(samples) - exported())
    silence = total(samples, "ray_tickvisor_silence_detect_seconds_sum", 'connection="stock-0"')
    assert silence >= 1.5  # the test config's silence deadline: never declared before it
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert TEST_TOKEN not in response.read().decode()

    code, _ = job.stop(signal.SIGINT)
    assert code == 0, job.tail()


class Recorded:
    """Stands in for a Ray metric object in the unit test of the local batching."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, dict[str, str]]] = []

    def inc(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("inc", value, tags))

    def observe(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("observe", value, tags))


def test_counters_are_handed_to_ray_once_a_second_and_histograms_capped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: now[0])
    counter, histogram = Recorded(), Recorded()
    monkeypatch.setattr(metrics, "_made", {"ticks_delivered": counter, "batch_size": histogram})
    monkeypatch.setattr(metrics, "_pending", {})
    monkeypatch.setattr(metrics, "_observed", {})
    monkeypatch.setattr(metrics, "_next_flush", [0.0])
    metrics.count("ticks_delivered", 3, strategy="a")  # the first call flushes (nothing pending before it)
    assert counter.calls == [("inc", 3, {"strategy": "a"})]
    for _ in range(5):
        metrics.count("ticks_delivered", 2, strategy="a")
    metrics.count("ticks_delivered", 7, strategy="b")
    assert len(counter.calls) == 1  # added up, not yet handed over
    now[0] += metrics.FLUSH_EVERY_S
    metrics.count("ticks_delivered", 0, strategy="a")
    assert counter.calls[1:] == [("inc", 10, {"strategy": "a"}), ("inc", 7, {"strategy": "b"})]
    for i in range(metrics.HISTOGRAM_PER_S + 50):
        metrics.observe("batch_size", i, stage="strategy")
    assert len(histogram.calls) == metrics.HISTOGRAM_PER_S
    now[0] += metrics.FLUSH_EVERY_S
    metrics.observe("batch_size", 1, stage="strategy")
    assert len(histogram.calls) == metrics.HISTOGRAM_PER_S + 1


def test_the_per_batch_hooks_hand_over_exact_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    # decoded/delivered/connection_batch build their label sets once and add up locally: what reaches
    # Ray at the flush must still be every tick and every drop, by label.
    now = [100.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: now[0])
    made = {
        name: Recorded()
        for name in (
            "ticks_decoded",
            "drops",
            "ticks_delivered",
            "frames_received",
            "batch_size",
            "latency_seconds",
        )
    }
    monkeypatch.setattr(metrics, "_made", made)
    monkeypatch.setattr(metrics, "_pending", {})
    monkeypatch.setattr(metrics, "_observed", {})
    monkeypatch.setattr(metrics, "_decoder_seen", {})
    monkeypatch.setattr(metrics, "_next_flush", [now[0] + 10])
    metrics.decoded(0, "fx-0", 5, (1, 0, 0, 0))
    metrics.decoded(0, "fx-0", 3, (1, 2, 0, 0))
    metrics.decoded(1, "fx-1", 4, (0, 0, 1, 0))
    metrics.connection_batch("fx-0", 8)
    metrics.connection_batch("fx-0", 2)

    class Rec:
        def __init__(self, received_ns: int) -> None:
            self.received_ns = received_ns

    metrics.delivered("tape", [Rec(0), Rec(0)])  # no read time: no latency observed
    metrics.delivered("tape", [Rec(1), Rec(1), Rec(1)])
    assert not made["ticks_decoded"].calls  # nothing handed over before the second is up
    now[0] += 11
    metrics.count("ticks_delivered", 0, strategy="tape")  # any hook call flushes when due

    def incs(name: str) -> dict[str, float]:
        return {",".join(t.values()): v for kind, v, t in made[name].calls if kind == "inc"}

    assert incs("ticks_decoded") == {"fx-0": 8, "fx-1": 4}
    assert incs("drops") == {"ghost": 1, "duplicate": 2, "malformed": 1}
    assert incs("frames_received") == {"fx-0": 10}
    assert incs("ticks_delivered") == {"tape": 5}
    assert [(v, t) for _, v, t in made["batch_size"].calls] == [
        (8, {"stage": "connection"}),
        (2, {"stage": "connection"}),
        (2, {"stage": "strategy"}),
        (3, {"stage": "strategy"}),
    ]
    assert len(made["latency_seconds"].calls) == 1
