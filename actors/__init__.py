"""tickvisor: an actor-model supervisor for real-time market-data WebSocket feeds (AllTick), on Ray.

The pure core (no Ray, no sockets): ``actors.wire``, ``actors.subscriptions``, ``actors.holdings``,
``actors.assignment``, ``actors.liveness``, ``actors.backoff``, ``actors.settings``, ``actors.errors``.
The Ray shells: ``actors.connection``, ``actors.heartbeat``, ``actors.registry``, ``actors.decoder``,
``actors.strategy``, ``actors.builtin``, ``actors.supervision``.

The public names below are imported lazily, so importing the pure core never loads Ray.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# The Ray shells log with loguru, whose default handler reads LOGURU_LEVEL when it is first imported.
# Its own default is DEBUG; ours is INFO, in every process (a job submitted to a cluster included).
os.environ.setdefault("LOGURU_LEVEL", "INFO")

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
    "BookTick": "actors.wire",
    "Endpoint": "actors.wire",
    "Tick": "actors.wire",
    "ConfigError": "actors.errors",
    "FeedError": "actors.errors",
    "InvalidCode": "actors.errors",
    "MalformedFrame": "actors.errors",
    "SubscriptionRefused": "actors.errors",
    "VendorError": "actors.errors",
    "Strategy": "actors.strategy",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'actors' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
