"""Prometheus metrics, exported through Ray (``ray.util.metrics``). A thin shell: one call per hook.

Every metric is defined once, in ``METRICS`` (name, kind, help, label set, histogram buckets); the
metric list of docs/operations.md and configs/grafana-tickvisor.json are checked against it (test_metrics).
Ray serves them, prefixed ``ray_``, on each node's metrics export port (``ray start
--metrics-export-port=PORT``, or ``python supervisor.py --metrics-port PORT`` for a local Ray),
about every 10 s; a counter's Prometheus name also ends in ``_total``.

The hooks in the other shells are one line each (``metrics.count("frames_received", n, connection=...)``),
made per batch, never per tick. Counters are added up in the process and handed to Ray once a second
(so a count can wait up to that long, or until the process's next hook call); histograms keep at most
20 observations a second per label set. A metric object is created in each process on its first use. Metrics
can never stop the feed: a failure to record is logged once per metric and then ignored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple

from actors.log import logger


class Metric(NamedTuple):
    """One exported metric: its kind, help text, label names and histogram buckets."""

    kind: str  # "counter", "gauge" or "histogram"
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


#: Seconds, from 0.5 ms (a Ray hop on an idle machine) to 10 s (a badly backed-up strategy).
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
SILENCE_BUCKETS: Final = (1, 2, 5, 10, 15, 20, 30, 45, 60, 120)

#: Drop reasons, as the ``reason`` label says them.
DROP_REASONS: Final = ("ghost", "duplicate", "slow_strategy", "malformed", "quarantined")

PREFIX: Final = "tickvisor_"

METRICS: Final[Mapping[str, Metric]] = {
    "frames_received": Metric(
        "counter",
        "WebSocket frames read from the socket, per connection (a push frame is one tick)",
        ("connection",),
    ),
    "ticks_decoded": Metric(
        "counter", "Trade and book ticks decoded from a connection's frames", ("connection",)
    ),
    "ticks_delivered": Metric("counter", "Ticks handed to a strategy's on_ticks/on_books", ("strategy",)),
    "drops": Metric("counter", "Ticks or frames dropped, by reason: " + ", ".join(DROP_REASONS), ("reason",)),
    "reconnects": Metric(
        "counter", "Reconnects of a connection, by the cause that ended its socket", ("connection", "cause")
    ),
    "subscription_requests": Metric(
        "counter",
        "Subscription requests answered, by the vendor's result code (200 accepted)",
        ("connection", "code"),
    ),
    "codes": Metric(
        "gauge", "Codes per state (ok, pending, quarantined; stale, never_started; closed)", ("state",)
    ),
    "session_mismatches": Metric(
        "counter",
        "Codes that ticked while their trading session said closed, once per code and closed episode",
        ("connection",),
    ),
    "silence_detect_seconds": Metric(
        "histogram",
        "Seconds from a connection's last frame to its being declared silent",
        ("connection",),
        SILENCE_BUCKETS,
    ),
    "latency_seconds": Metric(
        "histogram",
        "Seconds from the socket read of a batch's oldest tick to its strategy hook",
        ("strategy",),
        LATENCY_BUCKETS,
    ),
    "batch_size": Metric(
        "histogram",
        "Batch sizes: frames per connection batch, ticks per strategy batch",
        ("stage",),
        SIZE_BUCKETS,
    ),
}

#: A Ray metric call costs 7 to 27 times a 10-item generator expression in an actor (12-30 us on the
#: loaded 2-core test machine; noisy): so counters are added up in the process and handed to Ray once
#: a second, and each histogram label set takes at most HISTOGRAM_PER_S observations a second (the
#: first ones of each second). The number of Ray calls stays bounded whatever the batch rate.
FLUSH_EVERY_S: Final = 1.0
HISTOGRAM_PER_S: Final = 20

_made: dict[str, Any] = {}
_broken: set[str] = set()
_Key = tuple[str, tuple[tuple[str, str], ...]]  # a metric's name and its sorted labels
_pending: dict[_Key, float] = {}
_observed: dict[_Key, int] = {}
_next_flush = [0.0]


def exported_names() -> dict[str, list[str]]:
    """Every name Prometheus sees for each metric (Ray's ``ray_`` prefix; ``_total``; histogram series)."""
    out = {}
    for name, metric in METRICS.items():
        base = f"ray_{PREFIX}{name}"
        if metric.kind == "counter":
            out[name] = [f"{base}_total"]
        elif metric.kind == "histogram":
            out[name] = [f"{base}_bucket", f"{base}_sum", f"{base}_count"]
        else:
            out[name] = [base]
    return out


def _metric(name: str) -> Any:
    made = _made.get(name)
    if made is None:
        from ray.util import metrics as ray_metrics  # noqa: PLC0415 - Ray's metrics API loads only in processes that export metrics

        spec = METRICS[name]
        if spec.kind == "counter":
            made = ray_metrics.Counter(PREFIX + name, spec.help, tag_keys=spec.labels)
        elif spec.kind == "gauge":
            made = ray_metrics.Gauge(PREFIX + name, spec.help, tag_keys=spec.labels)
        else:
            made = ray_metrics.Histogram(
                PREFIX + name, spec.help, boundaries=list(spec.buckets), tag_keys=spec.labels
            )
        _made[name] = made
    return made


def _record(name: str, method: str, value: float, labels: Mapping[str, str]) -> None:
    if name in _broken:
        return
    try:
        getattr(_metric(name), method)(value, tags={k: str(v) for k, v in labels.items()})
    except Exception as exc:  # noqa: BLE001 - metrics must never stop the feed
        _broken.add(name)
        logger.warning("metrics: {} not recorded from now on in this process: {}", name, exc)


def _flush_due() -> None:
    """Hand the counts added locally to Ray, at most once every FLUSH_EVERY_S (on a hook's call)."""
    now = time.monotonic()
    if now < _next_flush[0]:
        return
    _next_flush[0] = now + FLUSH_EVERY_S
    pending = list(_pending.items())
    _pending.clear()
    _observed.clear()
    for (name, labels), value in pending:
        _record(name, "inc", value, dict(labels))


def _key(name: str, **labels: object) -> _Key:
    return (name, tuple(sorted((label, str(value)) for label, value in labels.items())))


def _add(key: _Key, value: float) -> None:
    if value:
        _pending[key] = _pending.get(key, 0) + value


def _observe(key: _Key, value: float) -> None:
    """Record one observation unless this second's allowance is used up."""
    seen = _observed.get(key, 0)
    if seen < HISTOGRAM_PER_S:
        _observed[key] = seen + 1
        _record(key[0], "observe", value, dict(key[1]))


def count(name: str, value: float = 1, **labels: str) -> None:
    """Add ``value`` to counter ``name`` (nothing for 0); handed to Ray within FLUSH_EVERY_S."""
    _add(_key(name, **labels), value)
    _flush_due()


def count_now(name: str, value: float = 1, **labels: str) -> None:
    """Add ``value`` to counter ``name`` at once (a rare event in a process that may go quiet)."""
    _record(name, "inc", value, labels)


def observe(name: str, value: float, **labels: str) -> None:
    """One observation of histogram ``name``: the first HISTOGRAM_PER_S of each label set per second."""
    _flush_due()  # first: a new second starts a new allowance
    _observe(_key(name, **labels), value)


def gauge(name: str, value: float, **labels: str) -> None:
    """Set gauge ``name``."""
    _record(name, "set", value, labels)


def _seconds_since(received_ns: int) -> float:
    return max(0.0, (time.time_ns() - received_ns) / 1e9)


_code_states_at = [0.0]


def code_states(
    books: Iterable[Any], refused: Mapping[str, str], liveness: Callable[[], Mapping[str, Any]] | None = None
) -> None:
    """Set the ``codes`` gauge from the registry's subscription books (actors.core.subscriptions) and
    its per-code liveness (``liveness()``: code -> actors.core.codeliveness.CodeHealth), at most once a
    second (the registry's timer calls it on every round, and at least every few seconds).
    """
    _flush_due()  # the registry's timer also hands its counts to Ray
    now = time.monotonic()
    if now - _code_states_at[0] < 1.0:
        return
    _code_states_at[0] = now
    ok: set[str] = set()
    pending: set[str] = set()
    for book in books:
        acknowledged = book.acknowledged
        for code in book.target:
            (ok if code in acknowledged else pending).add(code)
    health = liveness() if liveness is not None else {}
    quiet = {
        state: {c for c, h in health.items() if h.state == state}
        for state in ("stale", "never_started", "closed")
    }
    ok -= pending | quiet["stale"] | quiet["never_started"] | quiet["closed"]
    gauge("codes", len(ok), state="ok")
    gauge("codes", len(pending), state="pending")
    gauge("codes", len(quiet["stale"] - pending), state="stale")
    gauge("codes", len(quiet["never_started"] - pending), state="never_started")
    gauge("codes", len(quiet["closed"] - pending), state="closed")
    gauge("codes", len(refused), state="quarantined")


# --- the hooks of the shells, one call each ---------------------------------------------------------


def connection_batch(connection: str, frames: int) -> None:
    """A connection forwards a batch of ``frames`` raw frames to its decoder."""
    (key,) = _keys_of(f"connection {connection}", ("frames_received", "connection", connection))
    _add(key, frames)
    _flush_due()
    _observe(_CONNECTION_BATCH, frames)


def reconnected(connection: str, cause: BaseException | None) -> None:
    """A connection opens a new socket after ``cause`` ended the last one (None: the server closed it)."""
    count_now("reconnects", connection=connection, cause="closed" if cause is None else type(cause).__name__)


_decoder_seen: dict[int, tuple[int, int, int, int]] = {}
# The hooks below run per batch: their label sets are built once (a sorted key costs about a
# microsecond, several per batch when batches are one tick).
_hook_keys: dict[str, tuple[_Key, ...]] = {}
_NO_DROPS: Final = (0, 0, 0, 0)
_DROP_KEYS: Final = tuple(
    _key("drops", reason=r) for r in ("ghost", "duplicate", "malformed", "slow_strategy")
)
_CONNECTION_BATCH: Final = _key("batch_size", stage="connection")
_STRATEGY_BATCH: Final = _key("batch_size", stage="strategy")


def _keys_of(slot: str, *metrics: tuple[str, str, str]) -> tuple[_Key, ...]:
    """The keys of ``metrics`` ((name, label, value) each) for one hook and label value, built once."""
    keys = _hook_keys.get(slot)
    if keys is None:
        keys = _hook_keys[slot] = tuple(_key(name, **{label: value}) for name, label, value in metrics)
    return keys


def decoded(decoder_id: int, connection: str, ticks: int, drops: tuple[int, int, int, int]) -> None:
    """A decoder decoded ``ticks`` from ``connection``. ``drops`` are its running totals of ghosts,
    duplicates, malformed frames and ticks dropped for slow strategies; what grew since its last batch
    is counted by reason.
    """
    (key,) = _keys_of(f"decoded {connection}", ("ticks_decoded", "connection", connection))
    _add(key, ticks)
    before = _decoder_seen.get(decoder_id, _NO_DROPS)
    if drops != before:
        _decoder_seen[decoder_id] = drops
        for key, new, old in zip(_DROP_KEYS, drops, before, strict=True):
            _add(key, new - old)
    _flush_due()


def delivered(strategy: str, records: list[Any]) -> None:
    """A strategy hands ``records`` (ticks or book ticks) to its hook."""
    keys = _keys_of(
        f"delivered {strategy}",
        ("ticks_delivered", "strategy", strategy),
        ("latency_seconds", "strategy", strategy),
    )
    _add(keys[0], len(records))
    _flush_due()
    _observe(_STRATEGY_BATCH, len(records))
    if records and _observed.get(keys[1], 0) < HISTOGRAM_PER_S:  # the oldest tick, only when recorded
        received_ns = min((r.received_ns for r in records if r.received_ns), default=0)
        if received_ns:
            _observe(keys[1], _seconds_since(received_ns))
