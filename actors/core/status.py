"""The status view of a running job, and the answers of the live subscribe/unsubscribe commands. Pure.

Rules of this module:

1. ``job_status`` turns the Supervisor's typed snapshot (``StatusSnapshot``, from
   ``Supervisor.snapshot()``: what the status reads of every child's statistics) into the documented
   JSON document (docs/operations.md). It never fails on a child that did not answer: that child shows
   as ``down`` (a connection) or with its ``error``.
2. Exit codes are decided here, from the document alone: ``status_exit`` (0 up and in sync, 1 anything
   else) and ``subscription_report`` (0 every code accepted, 2 any refused). 3 (no job) is ``NO_JOB``.
3. Per-code liveness (``stale``, ``never_started``, ``last_tick_age_s``) is not computed here: the
   registry's status carries it under ``codes`` (actors.core.codeliveness.CodeHealth, an age of -1
   before the first tick); a snapshot may also give it as ``code_health``. It turns an ``ok`` code
   ``stale``, ``never_started`` or ``closed`` (its trading session is closed: with ``session``, the spec
   it follows, and ``opens_at``, ISO 8601 UTC); without it a code is ``ok``, ``pending`` or
   ``quarantined``, as the registry knows them. A closed code, like a stale one, does not change the exit
   code: that is the connections' and the registry's.
   The registry learns tick times only when it looks at the decoders (at its liveness wake-ups), so
   its age is the age at that look plus the time since. The decoders' own statistics, gathered by the
   same status call, carry each code's age at the call (``tick_ages``): the freshest of the two is
   shown, so a busy code never shows an age from the registry's last look.
4. Time is a parameter (``RateWindow``); nothing here reads a clock.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from actors.core.codes import endpoint_of
from actors.core.errors import InvalidCode
from actors.core.restart import ChildEvent

OK: Final = 0
NOT_OK: Final = 1
REFUSED: Final = 2
NO_JOB: Final = 3

CONNECTION_STATES: Final = ("up", "down", "connecting")
CODE_STATES: Final = ("ok", "stale", "never_started", "closed", "quarantined", "pending")


# --- the snapshot: what the status reads of each child's statistics -----------------------------------
# Each view names the fields of a child's own statistics Struct that the status shows, with a default
# for each (a child of an older version may lack one); ``error`` is set instead when the call failed.


class ConnectionView(msgspec.Struct, frozen=True):
    """Of a connection's statistics (actors.connection.ConnectionStats)."""

    endpoint: str = ""
    connected: bool = False
    gave_up: bool = False  # a fatal failure: it waits for a reconnect order
    frames: int | None = None  # frames read since its process started: the rates are measured on it
    reconnects: int = 0
    last_error: str = ""
    last_frame_age_s: float = -1.0  # -1: no frame yet
    error: str | None = None  # the statistics call failed: why


class DecoderView(msgspec.Struct, frozen=True):
    """Of a decoder's statistics (actors.decoder.DecoderStats)."""

    tick_ages: dict[str, float] = {}  # code -> seconds since its last tick or book push, at the call
    pending_ticks: dict[str, int] = {}  # strategy -> ticks and books sent or waiting, not acknowledged
    error: str | None = None


class StrategyView(msgspec.Struct, frozen=True):
    """Of a strategy's statistics (actors.strategy.StrategyStats)."""

    queued_batches: int = 0
    ticks: int = 0
    missed: int = 0
    error: str | None = None


class RegistryConnection(msgspec.Struct, frozen=True):
    """One connection as the registry knows it (actors.registry.ConnStatus)."""

    conn_id: str
    kind: str = "trades"
    up: bool = False
    desired: list[str] = []
    acknowledged: list[str] = []


class CodeSeen(msgspec.Struct, frozen=True):
    """One code's liveness (actors.core.codeliveness.CodeHealth)."""

    state: str = ""
    reason: str = ""
    last_tick_age_s: float = -1.0  # -1: no tick yet
    session: str = ""  # the spec its trading session follows ("" from an older registry)
    opens_at: float | None = None  # wall-clock epoch seconds: when a closed session opens


class RegistryView(msgspec.Struct, frozen=True):
    """Of the registry's status (actors.registry.RegistryStatus)."""

    in_sync: bool = False
    strategies: dict[str, dict[str, int]] = {}  # strategy -> code -> refcount (trades)
    book_strategies: dict[str, dict[str, int]] = {}  # likewise, order books
    connections: list[RegistryConnection] = []
    refused: dict[str, str] = {}  # code -> the vendor's reason
    vendor_errors: list[str] = []  # "<conn_id>: <error>", newest last
    routes_awaited: dict[str, float] = {}  # decoder -> seconds it has not taken its latest routes
    codes: dict[str, CodeSeen] = {}
    error: str | None = None


class StatusSnapshot(msgspec.Struct, frozen=True):
    """What ``Supervisor.snapshot()`` returns: every child's view, by its key (``stock-0``, ``tape``,
    ``0``); a child that has no handle yet is None.
    """

    run_id: str = ""
    failure: str = ""  # why the job must stop; empty while it runs
    connections: dict[str, ConnectionView | None] = {}
    strategies: dict[str, StrategyView | None] = {}
    decoders: dict[str, DecoderView | None] = {}
    registry: RegistryView | None = None
    rates: dict[str, float | None] = {}  # conn_id -> frames per second, None until measurable
    events: list[ChildEvent] = []  # the last supervision events, oldest first
    code_health: dict[str, CodeSeen] = {}  # per-code liveness given apart from the registry's (rule 3)


class RateWindow:
    """Per-key rates of growing counters, from samples (now, count) kept for ``span_s`` seconds.

    A rate needs two samples at least ``min_span_s`` apart; a counter that went down (its actor
    restarted) starts afresh.
    """

    def __init__(self, *, span_s: float = 10.0, min_span_s: float = 0.5) -> None:
        self._span = span_s
        self._min_span = min_span_s
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def observe(self, key: str, now: float, count: int) -> float | None:
        """Record ``count`` at ``now``; returns the rate per second over the kept samples, or None."""
        samples = self._samples.setdefault(key, deque())
        if samples and count < samples[-1][1]:
            samples.clear()
        samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self._span:
            samples.popleft()  # keep the newest sample that is at least span_s old
        t0, c0 = samples[0]
        if now - t0 < self._min_span:
            return None
        return (count - c0) / (now - t0)


_VIEWS: Final = {"connections": ConnectionView, "strategies": StrategyView, "decoders": DecoderView}


def _view(kind: type[Any], value: Any) -> Any:
    if value is None:
        return None
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        return kind(error=f"unreadable statistics: {exc}")


def read_snapshot(raw: Mapping[str, Any]) -> StatusSnapshot:
    """The typed snapshot of ``Supervisor.status()``'s builtins, read once, at the boundary.

    Each child is read on its own: statistics a view cannot read (a child of another version) show as
    that child's ``error`` instead of failing the whole status.

    Raises:
        msgspec.ValidationError: the snapshot's own fields (run id, failure, rates, events) are malformed.

    """
    children = {
        key: {name: _view(view, value) for name, value in (raw.get(key) or {}).items()}
        for key, view in _VIEWS.items()
    }
    own = {k: v for k, v in raw.items() if k in {"run_id", "failure", "rates", "events", "code_health"}}
    snapshot = msgspec.convert(own, StatusSnapshot)
    return msgspec.structs.replace(snapshot, **children, registry=_view(RegistryView, raw.get("registry")))


# --- the status document -----------------------------------------------------------------------------


def _answered(view: ConnectionView | DecoderView | StrategyView | RegistryView | None) -> bool:
    return view is not None and view.error is None


def _error(view: ConnectionView | StrategyView | RegistryView | None) -> str:
    return "no answer" if view is None or view.error is None else view.error


def connection_state(stats: ConnectionView | None) -> str:
    """``up``, ``down`` or ``connecting`` from a connection's statistics (or an unanswered call)."""
    if stats is None or not _answered(stats):
        return "down"
    if stats.connected:
        return "up"
    return "down" if stats.gave_up else "connecting"


def _last_vendor_errors(vendor_errors: Iterable[str]) -> dict[str, str]:
    last: dict[str, str] = {}
    for line in vendor_errors:
        conn_id, sep, text = str(line).partition(": ")
        if sep:
            last[conn_id] = text
    return last


def _registry_codes(registry: RegistryView) -> tuple[dict[str, dict[str, Any]], list[str]]:  # noqa: C901 - one branch per registry state a code can be in
    """Code -> {state, connection, holders, kinds} from the registry, and the connections' code counts."""
    codes: dict[str, dict[str, Any]] = {}
    holders: dict[str, set[str]] = {}
    for holdings in (registry.strategies, registry.book_strategies):
        for strategy, held in holdings.items():
            for code in held:
                holders.setdefault(code, set()).add(strategy)
    for conn in registry.connections:
        acknowledged = set(conn.acknowledged)
        for code in conn.desired:
            entry = codes.setdefault(code, {"state": "ok", "connection": conn.conn_id, "kinds": []})
            entry["kinds"].append(conn.kind)
            if code not in acknowledged or not conn.up:
                entry["state"] = "pending"
    for code in holders:
        if code not in codes:  # held, not yet placed on a connection
            codes[code] = {"state": "pending", "connection": None, "kinds": []}
    for code, reason in registry.refused.items():
        codes[code] = {"state": "quarantined", "connection": None, "kinds": [], "reason": reason}
    for code, entry in codes.items():
        entry["holders"] = sorted(holders.get(code, ()))
    return codes, sorted(c for c, e in codes.items() if e["state"] == "pending")


def decoder_ages(decoders: Mapping[str, DecoderView | None]) -> dict[str, float]:
    """Code -> seconds since its last tick or book push, the freshest over the decoders that answered."""
    ages: dict[str, float] = {}
    for stats in decoders.values():
        if stats is None or not _answered(stats):
            continue
        for code, age in stats.tick_ages.items():
            if age >= 0 and (code not in ages or age < ages[code]):
                ages[code] = age
    return ages


def waiting_ticks(decoders: Mapping[str, DecoderView | None]) -> dict[str, int]:
    """Strategy -> ticks and books its decoders hold for it, sent or waiting, not yet acknowledged (how
    far behind it is), summed over the decoders that answered.
    """
    out: dict[str, int] = {}
    for stats in decoders.values():
        if stats is None or not _answered(stats):
            continue
        for name, count in stats.pending_ticks.items():
            out[name] = out.get(name, 0) + count
    return out


def _connection_entry(
    conn_id: str, stats: ConnectionView | None, codes: int, rate: float | None, vendor_error: str
) -> dict[str, Any]:
    if stats is None or not _answered(stats):
        stats = ConnectionView(error=_error(stats))
    age = stats.last_frame_age_s
    return {
        "id": conn_id,
        "endpoint": stats.endpoint or conn_id.rsplit("-", 1)[0],
        "state": connection_state(stats),
        "codes": codes,
        "last_frame_age_s": None if age < 0 else round(age, 3),
        "ticks_per_s": None if rate is None else round(float(rate), 1),
        "reconnects": stats.reconnects,
        "last_error": stats.last_error or stats.error or "",
        "last_vendor_error": vendor_error,
    }


def _strategy_entry(name: str, stats: StrategyView | None, codes: set[str], behind: int) -> dict[str, Any]:
    answered = stats is not None and _answered(stats)
    entry: dict[str, Any] = {
        "name": name,
        "codes": sorted(codes),
        "queue": stats.queued_batches if stats is not None and answered else None,
        "behind": behind,
        "ticks": stats.ticks if stats is not None and answered else None,
        "missed": stats.missed if stats is not None and answered else None,
    }
    if not answered:
        entry["error"] = _error(stats)
    return entry


def _apply_health(
    codes: dict[str, dict[str, Any]], health: Mapping[str, CodeSeen], fresh: Mapping[str, float]
) -> None:
    """Per-code liveness onto the registry's codes (rule 3)."""
    for code, seen in health.items():
        entry = codes.get(code)
        if entry is None:
            continue
        ages = [a for a in (seen.last_tick_age_s, fresh.get(code, -1.0)) if a >= 0]
        entry["last_tick_age_s"] = round(min(ages), 3) if ages else None
        if entry["state"] == "ok" and seen.state in {"stale", "never_started", "closed"}:
            entry["state"] = seen.state
            if seen.reason:
                entry["reason"] = seen.reason
        if seen.session:
            entry["session"] = seen.session
        opens = seen.opens_at if entry["state"] == "closed" else None
        entry["opens_at"] = iso_utc(opens) if opens is not None else None


def job_status(snapshot: StatusSnapshot, *, namespace: str = "", address: str = "") -> dict[str, Any]:
    """The status document (docs/operations.md, "status") from ``Supervisor.snapshot()``."""
    answered = snapshot.registry is not None and _answered(snapshot.registry)
    registry = snapshot.registry if snapshot.registry is not None and answered else RegistryView()
    codes, pending = _registry_codes(registry)
    health = snapshot.code_health or registry.codes
    fresh = decoder_ages(snapshot.decoders)
    _apply_health(codes, health, fresh)
    for entry in codes.values():
        entry.setdefault("last_tick_age_s", None)
        entry.setdefault("session", None)  # null: not watched (yet) by the registry
        entry.setdefault("opens_at", None)
    per_conn: dict[str, set[str]] = {}
    for code, entry in codes.items():
        if entry["connection"] is not None:
            per_conn.setdefault(entry["connection"], set()).add(code)
    vendor = _last_vendor_errors(registry.vendor_errors)
    connections = [
        _connection_entry(
            conn_id,
            stats,
            len(per_conn.get(conn_id, ())),
            snapshot.rates.get(conn_id),
            vendor.get(conn_id, ""),
        )
        for conn_id, stats in sorted(snapshot.connections.items())
    ]
    behind = waiting_ticks(snapshot.decoders)
    held: dict[str, set[str]] = {}
    for holdings in (registry.strategies, registry.book_strategies):
        for name, codes_of in holdings.items():
            held.setdefault(name, set()).update(codes_of)
    strategies = [
        _strategy_entry(name, stats, held.get(name, set()), behind.get(name, 0))
        for name, stats in sorted(snapshot.strategies.items())
    ]
    return {
        "namespace": namespace,
        "address": address,
        "run_id": snapshot.run_id,
        "failure": snapshot.failure,
        "in_sync": registry.in_sync,
        "connections": connections,
        "strategies": strategies,
        "codes": {code: codes[code] for code in sorted(codes)},
        "registry": {
            "pending": pending,
            "quarantined": dict(sorted(registry.refused.items())),
            "vendor_errors": list(registry.vendor_errors),
            "routes_awaited": dict(sorted(registry.routes_awaited.items())),
        }
        | ({} if answered else {"error": _error(snapshot.registry)}),
    }


def iso_utc(t: float) -> str:
    """Epoch seconds as ISO 8601 UTC, to the second: ``2026-12-07T14:30:00Z``."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_exit(doc: Mapping[str, Any]) -> int:
    """0 when every connection is up and the registry in sync; 1 when anything is down or failing."""
    if doc.get("failure") or not doc.get("connections") or not doc.get("in_sync"):
        return NOT_OK
    return OK if all(c["state"] == "up" for c in doc["connections"]) else NOT_OK


def no_job_line(namespace: str, address: str, why: str = "") -> str:
    """The one line of exit code 3."""
    where = address or "no Ray address (no --address, no RAY_ADDRESS, no local job started here)"
    tail = f": {why}" if why else ""
    return f"tickvisor: no job found in namespace {namespace!r} at {where}{tail}"


#: The three cases an operator must tell apart (actors.core.codeliveness.Reason), in the text screen.
_WHY: Final = {
    "connection": "connection dead",
    "quiet": "code quiet, socket alive",
    "never_started": "no first tick",
}


def _age(value: Any) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def render_status(doc: Mapping[str, Any]) -> str:
    """The one-screen text view of the status document."""
    verdict = "OK" if status_exit(doc) == OK else "NOT OK"
    lines = [f"tickvisor {verdict}: namespace {doc.get('namespace')!r}, run {doc.get('run_id') or '-'}"]
    if doc.get("failure"):
        lines.append(f"  FAILING: {doc['failure']}")
    rows = [["connection", "endpoint", "state", "codes", "last frame", "ticks/s", "reconnects", "last error"]]
    for c in doc["connections"]:
        errors = "; ".join(e for e in (c["last_error"], c.get("last_vendor_error", "")) if e) or "-"
        rate = "-" if c["ticks_per_s"] is None else f"{c['ticks_per_s']:.1f}"
        rows.append(
            [c["id"], c["endpoint"], c["state"], str(c["codes"]), _age(c["last_frame_age_s"]), rate,
             str(c["reconnects"]), errors]
        )  # fmt: skip
    lines += _table(rows)
    rows = [["strategy", "codes", "queue", "behind", "ticks", "missed"]]
    for s in doc["strategies"]:
        cells = [str(s[k]) if s[k] is not None else "?" for k in ("queue", "behind", "ticks", "missed")]
        rows.append([s["name"], str(len(s["codes"])), *cells])
    lines += _table(rows) if len(rows) > 1 else ["  no strategies"]
    reg = doc["registry"]
    sync = "in sync" if doc.get("in_sync") else "not in sync"
    lines.append(
        f"registry: {sync}, {len(reg['pending'])} pending, {len(reg['quarantined'])} quarantined, "
        f"{len(reg['vendor_errors'])} vendor errors"
    )
    for code, reason in reg["quarantined"].items():
        lines.append(f"  quarantined {code}: {reason}")
    for error in reg["vendor_errors"][-3:]:
        lines.append(f"  vendor error {error}")
    for decoder, waited in reg.get("routes_awaited", {}).items():
        lines.append(
            f"  {decoder} has not taken new routes for {waited:.1f} s: its connections' requests wait"
        )
    not_ok = [(code, e) for code, e in doc["codes"].items() if e["state"] not in ("ok", "closed")]
    if not_ok:
        rows = [["code", "state", "why", "connection", "last tick", "holders"]]
        for code, e in not_ok:
            holders = ",".join(e["holders"]) or "-"
            why = (
                _WHY.get(e.get("reason", ""), "-") if e["state"] != "quarantined" else "refused by the vendor"
            )
            rows.append([code, e["state"], why, e["connection"] or "-", _age(e["last_tick_age_s"]), holders])
        lines.append(f"codes not ok: {len(not_ok)} of {len(doc['codes'])}")
        lines += _table(rows)
    else:
        closed_too = " or closed" if len(not_ok) < len(doc["codes"]) else ""
        lines.append(f"codes: all {len(doc['codes'])} ok{closed_too}")
    lines += _closed_lines(doc["codes"])
    return "\n".join(lines)


def _closed_lines(codes: Mapping[str, Any]) -> list[str]:
    """The codes whose market is closed, apart from the others: a quiet market is not a problem."""
    closed = [(code, e) for code, e in codes.items() if e["state"] == "closed"]
    if not closed:
        return []
    rows = [["code", "session", "opens at", "holders"]]
    for code, e in closed:
        opens = e.get("opens_at") or "-"
        rows.append([code, e.get("session") or "-", opens, ",".join(e["holders"]) or "-"])
    return [f"codes closed (their market is closed; not a problem): {len(closed)}", *_table(rows)]


# --- subscribe / unsubscribe ---------------------------------------------------------------------------

#: The registry's reasons (actors.registry, actors.core.holdings) and what an operator can do about each.
_HINTS: Final = (
    ("is not configured in [endpoints]", "add that [endpoints.NAME] table to the config and restart the job"),
    ("the vendor refused it", "the code stays quarantined until the job restarts; check it and the plan"),
    ("holds it", "run `supervisor.py status` to see what the strategy holds"),
    ("nothing", "fix the other codes and send the whole list again"),
)


def split_reason(reason: str) -> tuple[str, str]:
    """A refusal's (reason, hint): the registry's "...; what to do" split, or the hint we know for it."""
    if reason.startswith("no room") and "; " in reason:
        head, _, hint = reason.rpartition("; ")
        return head, hint
    for needle, hint in _HINTS:
        if needle in reason:
            return reason, hint
    return reason, ""


def invalid_codes(codes: Iterable[str]) -> dict[str, InvalidCode]:
    """The codes not in the vendor's notation, with why: refused before they leave this machine."""
    invalid: dict[str, InvalidCode] = {}
    for code in codes:
        try:
            endpoint_of(code)
        except InvalidCode as exc:
            invalid[code] = exc
    return invalid


def invalid_line(exc: InvalidCode) -> tuple[str, str]:
    """(reason, hint) of a code refused before it left this machine."""
    hint = (
        f"did you mean {exc.hint}?" if exc.hint else "use the vendor's notation, e.g. AAPL.US, 700.HK, EURUSD"
    )
    return exc.reason, hint


def subscription_report(
    action: str,
    codes: Iterable[str],
    *,
    invalid: Mapping[str, InvalidCode] | None = None,
    refused: Mapping[str, str] | None = None,
    holdings: Mapping[str, int] | None = None,
) -> tuple[list[str], int]:
    """One line per code and the exit code (0 all accepted, 2 any refused) of ``subscribe``/``unsubscribe``.

    ``invalid``: codes refused here (foreign notation, never sent). ``refused``: the registry's
    problems (it changes nothing when any code is refused). ``holdings``: the strategy's holdings
    after an accepted call.
    """
    invalid = invalid or {}
    refused = refused or {}
    failed = bool(invalid or refused)
    lines: list[str] = []
    lines_for = dict.fromkeys(codes)
    for code in lines_for:
        if code in invalid:
            reason, hint = invalid_line(invalid[code])
        elif code in refused:
            reason, hint = split_reason(refused[code])
        elif failed:
            why = "not sent" if invalid else "not applied"
            lines.append(f"{code}: {why}: another code of this request was refused (nothing changed)")
            continue
        else:
            count = (holdings or {}).get(code, 0)
            lines.append(f"{code}: {action} accepted (held {count} time(s) by this strategy)")
            continue
        lines.append(f"{code}: refused: {reason}" + (f"; hint: {hint}" if hint else ""))
    for key, why in refused.items():
        if key not in lines_for:  # a problem with the request itself, e.g. its kind
            reason, hint = split_reason(why)
            lines.append(f"{key}: refused: {reason}" + (f"; hint: {hint}" if hint else ""))
    return lines, REFUSED if failed else OK
