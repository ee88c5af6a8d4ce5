"""The control path to a tickvisor job: its Supervisor and children, reached by name in a Ray namespace.

``Job.start`` runs a Supervisor in a fresh namespace (tests and benchmarks do this); ``Job.attach``
reaches the Supervisor of a running job (``supervisor.py`` names it ``supervisor`` in its
``--namespace``); ``connect``, ``status_document`` and ``change_subscription`` are the commands
``supervisor.py status|subscribe|unsubscribe`` on such a job (their decisions: actors.core.status).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import ray
from ray.exceptions import RayTaskError

from actors.core.errors import SubscriptionRefused
from actors.core.naming import REGISTRY, SUPERVISOR, strategy_name
from actors.core.settings import Settings
from actors.core.status import (
    REFUSED,
    StatusSnapshot,
    invalid_codes,
    job_status,
    no_job_line,
    subscription_report,
)
from actors.core.tokens import Secret, redact

#: How long ``status_document`` waits before its second sample when a rate was not measurable yet.
RATE_SAMPLE_S = 1.0


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
    ) -> Self:
        """Create a Supervisor and its children (in ``namespace``, or a fresh ``<prefix>-<hex>`` one)
        and start it. The calling process owns them: they live as long as it does, or until ``stop``.
        """
        from actors.launch import launch  # noqa: PLC0415 - actors.launch loads Ray's placement-group API; only start needs it

        namespace = namespace or f"{prefix}-{uuid.uuid4().hex[:8]}"
        secret = Secret(token) if isinstance(token, str) else token  # a Mapping: every token by name
        # This process creates, and so owns, every actor of the job (see actors.launch).
        sup, children = launch(settings, secret, uuid.uuid4().hex[:12], namespace)
        job = cls(namespace, sup)
        job._children = children
        job._started = sup.start.remote()
        if wait:
            job.wait_started(timeout)
        return job

    @classmethod
    def attach(cls, namespace: str = "tickvisor") -> Self:
        """The running job in ``namespace``.

        Raises:
            ValueError: no job runs there.

        """
        return cls(namespace, ray.get_actor(SUPERVISOR, namespace=namespace))

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
        """The supervisor's JSON-safe status: every child's own statistics, rates, events."""
        return self.get(self.sup.status.remote(), timeout)

    def snapshot(self, timeout: float = 30.0) -> StatusSnapshot:
        """What the status document shows of every child, typed (actors.core.status.StatusSnapshot)."""
        return self.get(self.sup.snapshot.remote(), timeout)

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


# --- the commands on a running job (supervisor.py status / subscribe / unsubscribe) ---------------------


class NoJob(Exception):
    """No job answers in the namespace at the address; ``str`` is the one line of exit code 3."""


def address_file(namespace: str) -> Path:
    """Where a job that started its own local Ray leaves that Ray's address, for the commands on it."""
    return Path(tempfile.gettempdir()) / f"tickvisor-{os.getuid()}" / f"{namespace}.ray-address"


def publish_address(namespace: str, address: str) -> Path:
    """Write the address of the local Ray this job started (``supervisor.py`` calls it)."""
    path = address_file(namespace)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(address + "\n")
    return path


def unpublish_address(namespace: str, address: str) -> None:
    """Remove the address file, if it still names ``address`` (a later job may have replaced it)."""
    path = address_file(namespace)
    with contextlib.suppress(OSError):
        if path.read_text().strip() == address:
            path.unlink()


def _last_ray_start() -> Path:
    """Where ``ray start`` leaves the address of the cluster it started on this machine."""
    return Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray" / "ray_current_cluster"


def find_address(namespace: str, address: str | None, environ: Mapping[str, str]) -> str:
    """``--address``, else RAY_ADDRESS, else the local Ray a job on this machine started for
    ``namespace``, else the cluster the last ``ray start`` on this machine started (a job sent with
    ``ray job submit`` runs there).

    Raises:
        NoJob: none of these gives an address.

    """
    if address:
        return address
    if environ.get("RAY_ADDRESS"):
        return environ["RAY_ADDRESS"]
    for path in (address_file(namespace), _last_ray_start()):
        with contextlib.suppress(OSError):
            found = path.read_text().strip()
            if found and not _reachable(found):  # a file left by a job that was killed: the next one
                return found
    why = f"neither {address_file(namespace)} nor {_last_ray_start()} exists"
    raise NoJob(no_job_line(namespace, "", why))


def _reachable(address: str) -> str:
    """Why nothing can answer at ``address`` (host:port), or "" when something listens there."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return ""  # ray://, auto...: let ray.init judge
    try:
        socket.create_connection((host, int(port)), timeout=2.0).close()
    except OSError as exc:
        return f"nothing listens there ({exc.strerror or exc})"
    return ""


def _gcs_of_dashboard(namespace: str, url: str) -> str:
    """The cluster address behind a dashboard URL (the address ``ray job`` uses, docs/scaling.md): for
    a head on this machine, the one the last ``ray start`` left in Ray's temp directory.

    Raises:
        NoJob: the dashboard is on another machine, or no ``ray start`` left an address here.

    """
    host = url.split("://", 1)[1].rsplit(":", 1)[0].strip("[]/")
    current = _last_ray_start()
    if host in {"127.0.0.1", "localhost", "::1"} and current.exists():
        return current.read_text().strip()
    why = "that is a dashboard (the job API of `ray job`); give the cluster's GCS address, e.g. <head>:6379"
    raise NoJob(no_job_line(namespace, url, why))


def connect(namespace: str, address: str | None, environ: Mapping[str, str] | None = None) -> tuple[Job, str]:
    """Join the Ray at the job's address as a driver and reach its Supervisor; (the Job, the address).

    Raises:
        NoJob: no address, nothing listening, Ray refused, or no Supervisor in ``namespace``.

    """
    env = os.environ if environ is None else environ
    found = find_address(namespace, address, env)
    if found.startswith(("http://", "https://")):
        found = _gcs_of_dashboard(namespace, found)
    why = _reachable(found)
    if why:
        raise NoJob(no_job_line(namespace, found, why))
    if not ray.is_initialized():
        # Ray prefers RAY_ADDRESS to the address it is given; the address found already accounts for it.
        os.environ.pop("RAY_ADDRESS", None)
        try:
            ray.init(address=found, namespace=namespace, logging_level=logging.ERROR, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - any failure to join is "no job there", said once
            raise NoJob(no_job_line(namespace, found, redact(str(exc).splitlines()[0]))) from None
    try:
        return Job.attach(namespace), found
    except ValueError:
        raise NoJob(no_job_line(namespace, found, "no supervisor actor runs in that namespace")) from None


def status_document(job: Job, address: str, timeout: float = 20.0) -> dict[str, Any]:
    """The status document (actors.core.status.job_status); asks twice, 1 s apart, when a rate is unknown."""
    snapshot = job.snapshot(timeout)
    if not snapshot.rates or None in snapshot.rates.values():
        time.sleep(RATE_SAMPLE_S)  # the Supervisor had no earlier sample to measure ticks/s against
        snapshot = job.snapshot(timeout)
    return job_status(snapshot, namespace=job.namespace, address=address)


def change_subscription(  # noqa: PLR0917 - the CLI's positional words, in their order
    job: Job, action: str, strategy: str, codes: list[str], kind: str, timeout: float = 20.0
) -> tuple[list[str], int]:
    """Subscribe or unsubscribe ``codes`` for ``strategy`` through the job's registry; (lines, exit code).

    Codes not in the vendor's notation are refused here and never sent.
    """
    invalid = invalid_codes(codes)
    if invalid:
        return subscription_report(action, codes, invalid=invalid)
    try:
        handle = job.actor(strategy_name(strategy))
    except ValueError:
        running = ", ".join(sorted(job.snapshot(timeout).strategies)) or "none"
        line = f"tickvisor: no strategy {strategy!r} in namespace {job.namespace!r}; running: {running}"
        return [line], REFUSED
    # A strategy subscribes its configured symbols in ``start`` only when it holds nothing (it takes
    # holdings for a sign of its own restart): have it start first. Once per process: a no-op later.
    job.get(handle.start.remote(), timeout)
    registry = job.actor(REGISTRY)
    call = registry.subscribe if action == "subscribe" else registry.unsubscribe
    try:
        holdings = job.get(call.remote(strategy, codes, kind), timeout)
    except RayTaskError as exc:
        if not isinstance(exc.cause, SubscriptionRefused):
            raise
        return subscription_report(action, codes, refused=exc.cause.problems)
    return subscription_report(action, codes, holdings=holdings)
