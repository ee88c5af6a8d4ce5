"""The control path to a tickvisor job: its Supervisor and children, reached by name in a Ray namespace.

``Job.start`` runs a Supervisor in a fresh namespace (tests and benchmarks do this); ``Job.attach``
reaches the Supervisor of a running job (``supervisor.py`` names it ``supervisor`` in its
``--namespace``), which is what a status CLI or a live subscribe/unsubscribe will use.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from typing import Any

import ray

from actors.core.naming import REGISTRY, SUPERVISOR
from actors.core.settings import Secret, Settings

SUPERVISOR_NAME = SUPERVISOR


class Job:
    """Handles to one job's actors. Every call is a Ray call with a timeout."""

    def __init__(self, namespace: str, supervisor: Any) -> None:
        self.namespace = namespace
        self.sup = supervisor
        self.conn_ids: dict[str, list[str]] = {}
        self._started: Any = None
        self._children: list[Any] = []  # the handles that keep the children of a job started here alive

    @classmethod
    def start(
        cls,
        settings: Settings,
        token: Secret | str | Mapping[str, Secret],
        *,
        namespace: str | None = None,
        prefix: str = "tv",
        wait: bool = True,
        timeout: float = 120.0,
    ) -> Job:
        """Create a Supervisor and its children (in ``namespace``, or a fresh ``<prefix>-<hex>`` one)
        and start it. The calling process owns them: they live as long as it does, or until ``stop``."""
        from actors.supervision import launch

        namespace = namespace or f"{prefix}-{uuid.uuid4().hex[:8]}"
        secret = Secret(token) if isinstance(token, str) else token  # a Mapping: every token by name
        # This process creates, and so owns, every actor of the job (see actors.supervision.launch).
        sup, children = launch(settings, secret, uuid.uuid4().hex[:12], namespace)
        job = cls(namespace, sup)
        job._children = children
        job._started = sup.start.remote()
        if wait:
            job.wait_started(timeout)
        return job

    @classmethod
    def attach(cls, namespace: str = "tickvisor") -> Job:
        """The running job in ``namespace``.

        Raises:
            ValueError: no job runs there.
        """
        return cls(namespace, ray.get_actor(SUPERVISOR_NAME, namespace=namespace))

    def wait_started(self, timeout: float = 120.0) -> dict[str, list[str]]:
        """Wait until every child runs and every connection is open; returns the connection ids."""
        if self._started is not None:
            self.conn_ids = ray.get(self._started, timeout=timeout)
        return self.conn_ids

    def get(self, ref: Any, timeout: float = 30.0) -> Any:
        """``ray.get`` with a timeout."""
        return ray.get(ref, timeout=timeout)

    def actor(self, name: str) -> Any:
        """A child's handle by name (``registry``, ``connection:stock-0``, ``strategy:tape``...)."""
        return ray.get_actor(name, namespace=self.namespace)

    def registry(self, timeout: float = 30.0) -> Any:
        """The registry's status (actors.registry.RegistryStatus)."""
        return self.get(self.actor(REGISTRY).status.remote(), timeout)

    def status(self, timeout: float = 30.0) -> dict[str, Any]:
        """The supervisor's JSON-safe status of every child."""
        return self.get(self.sup.status.remote(), timeout)

    def pids(self, timeout: float = 30.0) -> dict[str, int]:
        """The current process id of every child."""
        return self.get(self.sup.pids.remote(), timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the job cleanly (strategies flush, sockets close), then remove the supervisor."""
        try:
            self.get(self.sup.stop.remote(), timeout)
        finally:
            with contextlib.suppress(Exception):
                ray.kill(self.sup, no_restart=True)
