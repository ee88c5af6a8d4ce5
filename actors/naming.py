"""Names of the job's actors, and a cached lookup of them. Every child is a named actor in the
job's Ray namespace, so any actor (or a CLI) can reach any other by name."""

from __future__ import annotations

from typing import Any

import ray


def connection_name(conn_id: str) -> str:
    """The actor name of a connection."""
    return f"connection:{conn_id}"


def decoder_name(decoder_id: int) -> str:
    """The actor name of a decoder."""
    return f"decoder:{decoder_id}"


def strategy_name(name: str) -> str:
    """The actor name of a strategy."""
    return f"strategy:{name}"


class NamedActors:
    """Handles looked up by name in one namespace, cached (a handle stays valid across restarts)."""

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._handles: dict[str, Any] = {}

    def get(self, name: str, *, cache: bool = True) -> Any:
        """The handle of actor ``name``, or None when no such actor exists (yet)."""
        handle = self._handles.get(name)
        if handle is None:
            try:
                handle = ray.get_actor(name, namespace=self._namespace)
            except ValueError:
                return None
            if cache:
                self._handles[name] = handle
        return handle

    def cached(self) -> dict[str, Any]:
        """The handles found so far, by name."""
        return dict(self._handles)
