"""tickvisor: an actor-model supervisor for real-time market-data WebSocket feeds (AllTick), on Ray.

The pure core (no Ray, no sockets) is the package ``actors.core``: frames (``wire``), normalised ticks
(``normalise``), the per-tick check, routing and delivery, codes, plans, subscriptions, holdings,
assignment, growth, liveness, sessions, restart policy, settings, status, errors. The Ray shells:
``actors.connection``, ``actors.heartbeat``, ``actors.registry``, ``actors.decoder``, ``actors.strategy``,
``actors.builtin``, ``actors.supervisor``. For users: ``actors.Strategy``, ``actors.testing``,
``actors.replay``, ``actors.tape``; the documentation site is under ``docs/``.

The public names below are imported lazily, so importing the pure core never loads Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

#: The release; pyproject.toml reads it from here.
__version__ = "0.1.0"

__all__ = [
    "BookTick",
    "ConfigError",
    "Endpoint",
    "FeedError",
    "InvalidCode",
    "MalformedFrame",
    "Strategy",
    "SubscriptionRefused",
    "Tick",
    "VendorError",
]

_WHERE = {
    "BookTick": "actors.core.normalise",
    "Endpoint": "actors.core.codes",
    "Tick": "actors.core.normalise",
    "ConfigError": "actors.core.errors",
    "FeedError": "actors.core.errors",
    "InvalidCode": "actors.core.errors",
    "MalformedFrame": "actors.core.errors",
    "SubscriptionRefused": "actors.core.errors",
    "VendorError": "actors.core.errors",
    "Strategy": "actors.strategy",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
