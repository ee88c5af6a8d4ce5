"""SimulatorThread: a Simulator on its own event loop in a daemon thread, for synchronous callers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, Self, TypeVar

from actors.sim.server import Simulator

_T = TypeVar("_T")


class SimulatorThread:
    """A Simulator running on its own event loop in a daemon thread, for synchronous callers.

    ``start()`` returns the port; ``url()``, ``admin_url()``, ``inject()`` and ``state()`` are
    thread-safe. Use it as a context manager: ``with SimulatorThread(tick_rate=5) as sim: ...``.

    Args:
        kwargs: the Simulator's arguments.

    """

    def __init__(self, **kwargs: Any) -> None:
        self.simulator = Simulator(**kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SimulatorThread({self.simulator!r})"

    @property
    def port(self) -> int:
        """The bound port (after start())."""
        return self.simulator.port

    def start(self, timeout: float = 10.0) -> int:
        """Start the loop thread and the server; return the bound port."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="tickvisor-simulator", daemon=True)
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.simulator.start(), loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and the loop thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.simulator.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()
            self._loop = self._thread = None

    def _call(self, fn: Callable[[], _T], timeout: float = 10.0) -> _T:
        if self._loop is None:
            raise RuntimeError("simulator thread is not started")

        async def call() -> _T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout)

    def url(self, endpoint: str) -> str:
        """See Simulator.url."""
        return self.simulator.url(endpoint)

    def admin_url(self, action: str = "state", **params: object) -> str:
        """See Simulator.admin_url."""
        return self.simulator.admin_url(action, **params)

    def inject(
        self, fault: str, *, path: str | None = None, conn: int | None = None, **params: object
    ) -> list[int]:
        """See Simulator.inject; runs on the simulator's loop."""
        return self._call(lambda: self.simulator.inject(fault, path=path, conn=conn, **params))

    def revoke(self, number: int) -> int:
        """See Simulator.revoke."""
        return self._call(lambda: self.simulator.revoke(number))

    def state(self) -> dict[str, Any]:
        """See Simulator.state; runs on the simulator's loop."""
        return self._call(self.simulator.state)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
