"""The naive Ray pipeline of scripts/bench.py: one Ray call per tick.

``NaiveConnection`` is what a first Ray port of the seed would look like: an async actor owning the
socket (websockets, like actors.connection), decoding each frame with the same ``actors.core.wire`` code
the decoder actor uses, and calling ``NaiveSink.on_tick.remote(tick)`` once per tick. At most
``MAX_IN_FLIGHT`` calls are outstanding (the same kind of backpressure tickvisor's connection applies
to its batches), so the socket is not read faster than the sink can take. ``NaiveSink`` is a sync actor
(calls from one caller run in order) doing scripts.bench.count.TickCounter's work per tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from typing import Any

from actors.core import wire
from actors.core.normalise import Tick, decode_batch
from scripts.bench.count import TickCounter

MAX_IN_FLIGHT = 1000
RETRY_AFTER_S = 1.1  # PROTOCOL.md "Limits": one subscription request per second per connection


class NaiveSink:
    """Receives one tick per call."""

    def __init__(self) -> None:
        self.counter = TickCounter()

    def on_tick(self, tick: Tick) -> None:
        """One tick."""
        self.counter.add(tick.code, tick.seq, time.monotonic())

    def result(self) -> dict[str, Any]:
        """The measurement."""
        return self.counter.result()


class NaiveConnection:
    """Reads the socket, decodes each frame, one Ray call per tick."""

    def __init__(self, url: str, codes: list[str], sink: Any) -> None:
        self._url = url
        self._codes = codes
        self._sink = sink
        self._ready = asyncio.Event()
        self._error = ""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        from websockets.asyncio.client import connect

        try:
            async with connect(
                self._url, compression=None, ping_interval=None, max_queue=None, max_size=2**22
            ) as ws:
                await self._subscribe(ws)
                in_flight: deque[Any] = deque()
                on_tick = self._sink.on_tick
                while True:
                    frame = await ws.recv(decode=False)
                    batch = decode_batch([frame], time.time_ns())
                    for tick in batch.ticks:
                        in_flight.append(on_tick.remote(tick))
                    while len(in_flight) > MAX_IN_FLIGHT:
                        await in_flight.popleft()
        except Exception as exc:  # noqa: BLE001 - reported by wait_ready / stop
            self._error = f"{type(exc).__name__}: {exc}"
            self._ready.set()

    async def _subscribe(self, ws: Any) -> None:
        seq_id = 1
        while True:
            await ws.send(
                json.dumps(
                    {
                        "cmd_id": wire.CMD_SUBSCRIBE_TRADES,
                        "seq_id": seq_id,
                        "trace": f"naive-{seq_id}",
                        "data": {"symbol_list": [{"code": c} for c in self._codes]},
                    }
                )
            )
            while True:
                batch = decode_batch([await ws.recv(decode=False)])
                if batch.responses:
                    break
            if batch.responses[0].ret != 429:
                break
            await asyncio.sleep(RETRY_AFTER_S)
            seq_id += 1
        await asyncio.sleep(0.2)  # the subscription's snapshot ticks: skipped
        with contextlib.suppress(asyncio.TimeoutError):
            while True:
                await asyncio.wait_for(ws.recv(decode=False), 0.05)
        self._ready.set()

    async def wait_ready(self) -> str:
        """Wait until subscribed; returns "" or the error."""
        await asyncio.wait_for(self._ready.wait(), 30.0)
        return self._error

    async def stop(self) -> str:
        """Close the socket; returns the error, if any."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        return self._error
