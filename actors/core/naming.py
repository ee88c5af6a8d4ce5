"""Names of the job's actors. Every child is a named actor in the job's Ray namespace, so any actor
(or a CLI) can reach any other by name. Pure: the lookup by name lives in ``actors.handles``.
"""

from __future__ import annotations

from typing import Final

SUPERVISOR: Final = "supervisor"
REGISTRY: Final = "registry"
HEARTBEAT: Final = "heartbeat"


def connection_name(conn_id: str) -> str:
    """The actor name of a connection."""
    return f"connection:{conn_id}"


def decoder_name(decoder_id: int) -> str:
    """The actor name of a decoder."""
    return f"decoder:{decoder_id}"


def strategy_name(name: str) -> str:
    """The actor name of a strategy."""
    return f"strategy:{name}"
