"""Handles of the job's named actors, looked up by name (the names: ``actors.core.naming``).

Rules of this module:

1. A restartable actor's constructor takes its peers as ``ActorName``, never as handles. Ray logs an
   error for every actor created with ``max_restarts`` whose constructor arguments hold an actor handle
   (ray-project/ray#53727: a handle is a reference that its restart would need). A name holds none, and a
   restarted actor finds its peers again by name, as the first start did.
2. The actor resolves each peer once, in ``__init__`` (``resolve``); a handle stays valid across the
   peer's restarts.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import ray


class ActorName(NamedTuple):
    """A named actor of the job, passed to a constructor in place of its handle (rule 1)."""

    name: str
    namespace: str


def resolve(peer: Any) -> Any:
    """The handle of ``peer``, looked up by name when it is an ``ActorName``; anything else (a handle,
    or None) as it is.

    Raises:
        LookupError: no actor of that name runs in that namespace (it was killed for good, or the job
            was not created with ``actors.launch.launch``).

    """
    if not isinstance(peer, ActorName):
        return peer
    try:
        return ray.get_actor(peer.name, namespace=peer.namespace)
    except ValueError:
        raise LookupError(
            f"no actor {peer.name!r} in namespace {peer.namespace!r}; create the job with launch()"
        ) from None


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
