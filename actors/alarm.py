"""An alarm clock for a sync actor: the timer of actors/registry.py, which has no thread of its own.

A sync, single-threaded Ray actor runs its calls one at a time in each caller's submission order, and
nothing of its own between them. Its ``Alarm`` (an async actor it creates and owns, so the alarm dies
with it) rings it, with a call of its ``wake`` method that queues behind the calls already there:

* ``arm(generation, delay_s)``: ring once after ``delay_s``; a later arm replaces it. Ray runs an async
  actor's calls out of order, so an arm older than the newest one seen (``generation``) is ignored.
* ``wake_when(refs)``: ring once every ref is done (failed counts as done): the owner then reads them
  with a non-blocking ``ray.wait``/``ray.get(timeout=0)``.

A restarted alarm rings at once: its owner re-arms it from there.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Alarm:
    """Rings ``target.wake`` (``target`` an actor handle); wrapped with ``ray.remote`` by its owner."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self._generation = -1
        self._timer: asyncio.TimerHandle | None = None
        self._waits: set[asyncio.Task[None]] = set()
        self._ring()  # a restarted alarm has lost its timer: the owner re-arms on this ring

    async def arm(self, generation: int, delay_s: float) -> None:
        """Ring after ``delay_s`` seconds instead of any earlier arm (unless ``generation`` is older)."""
        if generation < self._generation:
            return
        self._generation = generation
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(max(0.0, delay_s), self._ring)

    async def wake_when(self, refs: list[Any]) -> None:
        """Ring once each of ``refs`` is done (the owner reads them itself)."""
        task = asyncio.get_running_loop().create_task(self._after(refs))
        self._waits.add(task)
        task.add_done_callback(self._waits.discard)

    async def _after(self, refs: list[Any]) -> None:
        await asyncio.gather(*refs, return_exceptions=True)
        self._ring()

    def _ring(self) -> None:
        self._target.wake.remote()  # -> the owner's wake(): queued behind the calls already there
