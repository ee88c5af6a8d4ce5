"""Handles of the job's named actors, looked up once and cached (the names: ``actors.core.naming``)."""

from __future__ import annotations

from typing import Any

import ray


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
