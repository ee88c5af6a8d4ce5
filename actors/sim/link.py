"""Link: one live WebSocket connection of the server, and whether frames may be written to it."""

from __future__ import annotations

import asyncio

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from actors.sim.state import SILENT_FAULTS, ConnState

SLOW_CONSUMER_BYTES = 16 << 20  # normal pushes skip a connection with this much unsent


class Link:
    """One live WebSocket connection: its socket, its ConnState id and its tasks."""

    def __init__(self, ws: ServerConnection, conn: ConnState) -> None:
        self.ws = ws
        self.conn = conn
        self.watchdog: asyncio.Task[None] | None = None
        self.burst: asyncio.Task[None] | None = None

    @property
    def id(self) -> int:
        """The connection id (as in state())."""
        return self.conn.id

    def writable(self) -> bool:
        """Open, and not stalled or blackholed: frames may be written."""
        return (
            self.conn.open
            and not (self.conn.faults & SILENT_FAULTS)
            and self.ws.protocol.state is State.OPEN
            and not self.ws.transport.is_closing()
        )

    def pushable(self) -> bool:
        """Writable, not in a burst and not hopelessly behind: the normal tick loops may push.

        A client that lets SLOW_CONSUMER_BYTES pile up in the server's send buffer misses ticks (it
        sees seq gaps) instead of growing the server's memory without bound.
        """
        return (
            self.writable()
            and "burst" not in self.conn.faults
            and self.ws.transport.get_write_buffer_size() < SLOW_CONSUMER_BYTES
        )

    def write(self, frames: list[bytes]) -> bool:
        """Write whole pre-built frames in order; False if the connection cannot take them."""
        if not self.writable():
            return False
        self.ws.transport.writelines(frames)
        return True
