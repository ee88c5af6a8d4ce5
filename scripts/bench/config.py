"""The one config builder for a tickvisor job against the simulator: benchmarks, soak and tests alike.

``job_config`` makes the config as plain data: ``[feed]`` (only the keys given, and ``[feed.sessions]``
``"*" = "always"`` unless given: the simulator ticks around the clock), ``[restart]``,
one ``[endpoints.<name>]`` per endpoint on the simulator's port, and the ``[[strategies]]`` entries
that ``strategy`` makes. ``to_toml`` renders it (a subprocess reads a file; tests edit the text),
and ``build`` turns it into ``Settings`` through ``actors.core.settings.parse_settings``, so a
built config is validated exactly as a user's file is. No Ray, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from actors.core.settings import Settings, parse_settings

#: PROTOCOL.md "Endpoints": the path of each endpoint, as the simulator serves it.
PATHS = {"stock": "/quote-stock-b-ws-api", "forex_crypto": "/quote-b-ws-api"}
#: The restart policy every test and benchmark job runs with: quick back-off, many restarts.
RESTART: Mapping[str, Any] = {
    "max_restarts": 50,
    "within_s": 60.0,
    "backoff_initial_s": 0.1,
    "backoff_max_s": 2.0,
}
#: The trading sessions of every job against the simulator, which ticks around the clock: no market closes.
ALWAYS_OPEN: Mapping[str, str] = {"*": "always"}


def strategy(name: str, kind: str, symbols: Iterable[str], **extra: Any) -> dict[str, Any]:
    """One ``[[strategies]]`` entry; ``extra`` adds keys such as ``path`` or ``options`` (a dict)."""
    return {"name": name, "kind": kind, "symbols": list(symbols), **extra}


def job_config(
    port: int,
    strategies: Sequence[Mapping[str, Any]] = (),
    *,
    feed: Mapping[str, Any] | None = None,
    restart: Mapping[str, Any] | None = RESTART,
    endpoints: Iterable[str] = ("stock", "forex_crypto"),
) -> dict[str, Any]:
    """A job's config as data, its endpoints on the simulator at 127.0.0.1:``port``.

    Args:
        port: the simulator's port.
        strategies: entries made by ``strategy``.
        feed: the ``[feed]`` keys; the defaults of ``FeedSettings`` for the rest, but ``sessions``:
            ``ALWAYS_OPEN`` unless given.
        restart: the ``[restart]`` keys, or None for the defaults of ``RestartSettings``.
        endpoints: names from ``PATHS``, in order.

    Raises:
        KeyError: an endpoint name that ``PATHS`` does not know.

    """
    doc: dict[str, Any] = {"feed": dict(feed or {})}
    doc["feed"].setdefault("sessions", dict(ALWAYS_OPEN))
    if restart is not None:
        doc["restart"] = dict(restart)
    doc["endpoints"] = {name: {"url": f"ws://127.0.0.1:{port}{PATHS[name]}"} for name in endpoints}
    if strategies:
        doc["strategies"] = [dict(s) for s in strategies]
    return doc


def to_toml(doc: Mapping[str, Any]) -> str:
    """``doc`` as TOML text.

    A table per mapping of scalars, ``[a.b]`` per nested one, ``[[a]]`` per list of mappings, in the
    order given (``[[strategies]]`` last when built by ``job_config``).
    """
    lines: list[str] = []
    _table(lines, "", doc)
    return "\n".join(lines) + "\n"


def build(doc: Mapping[str, Any], *, source: str = "<generated config>") -> Settings:
    """``Settings`` from ``doc``, read and validated as a file with that text would be.

    Raises:
        ConfigError: see ``actors.core.settings.parse_settings``.

    """
    return parse_settings(to_toml(doc), source=source)


def _table(lines: list[str], prefix: str, table: Mapping[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not _is_table(v) and not _is_table_array(v)}
    if prefix and (scalars or not table):
        lines.append(f"[{prefix}]")
    lines.extend(f"{_key(key)} = {_value(value)}" for key, value in scalars.items())
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        if _is_table(value):
            _table(lines, name, value)
        elif _is_table_array(value):
            for entry in value:
                lines.append(f"[[{name}]]")
                lines.extend(f"{k} = {_value(v)}" for k, v in entry.items())


def _key(key: str) -> str:
    """A bare key as it is, any other (``"*.US"``) quoted."""
    return key if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key) else json.dumps(key)


def _is_table(value: object) -> bool:
    return isinstance(value, Mapping)


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value)  # TOML's basic strings and numbers read JSON's spelling of them
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML; use str, number, list or dict")
