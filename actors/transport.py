"""The Connection actor's WebSocket, behind one small seam, with two implementations.

``open_transport(kind, url, ...)`` opens a socket with picows (``"picows"``, a Cython client that hands
each frame to a callback straight from its read buffer) or websockets (``"websockets"``, pure Python)
and returns a ``Transport``:

- ``recv_batch()``: the raw frames received since the last call, cut where the socket had nothing more
  buffered (picows: the frame is ``last_in_buffer``; websockets: its queue of received frames is
  empty) or at ``max_frames``, with the wall-clock time the first of them was read;
- ``direct``: while set (by a reader parked in ``recv_batch`` with nothing in hand), a batch cut when
  none is waiting is offered to it at once, from picows' callback, before it is queued: a reader that
  takes it (returns True) sends it on without a turn of the event loop. websockets never offers;
- ``send(data)``: one text frame, False when the socket is no longer open;
- ``close(code, reason)``: the closing handshake, bounded by ``close_timeout``; ``abort()``: drop the
  socket at once (it may be dead);
- liveness: WebSocket pings, the socket closed when no pong came within ``ping_timeout`` s; the
  server's pings are answered. websockets pings every ``ping_interval`` s; picows after
  ``max(ping_interval, ping_timeout)`` s without any incoming data (it needs the idle time to be at
  least the pong timeout), so a busy socket is never pinged and a blocked reader is not taken for a
  dead peer before that.

Failures come out as the library's own exception classes (handshake refusals, TLS, OS errors) or as
``SocketClosed`` (the socket ended: its close code, reason and who closed it). ``actors.connection.
classify`` decides which of them a retry can cure. The URL carries the token: no transport keeps it
in a repr, a log line or an exception of its own.

Rules of this module:
1. A transport is used from its event loop's thread only (picows requires it).
2. ``recv_batch`` is cancel-safe: frames read but not yet returned stay for the next call.
3. A transport never reads without bound ahead of its caller: picows stops reading the socket while
   ``max_pending`` batches wait; websockets keeps its own read-ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Protocol

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from actors.core.errors import FeedError, ProtocolViolation
from actors.core.settings import TRANSPORTS

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["TRANSPORTS", "Batch", "SocketClosed", "Transport", "open_transport"]

#: The largest message either transport accepts (a whole reassembled message for picows), in bytes.
MAX_MESSAGE_BYTES: Final = 2**22
#: picows: batches received but not yet taken by ``recv_batch`` before the socket is no longer read.
MAX_PENDING_BATCHES: Final = 64

#: picows logs the upgrade request (the token in its path) at its debug level: its records go through
#: this logger, whose level keeps them from ever being formatted.
_PICOWS_LOGGER = logging.getLogger("tickvisor.transport.picows")
_PICOWS_LOGGER.setLevel(logging.INFO)

Batch = tuple[list[bytes], int]  # the frames, and time.time_ns() when the first of them was read


class SocketClosed(FeedError):
    """The socket ended: closed by the server or by us with a close code, or dropped without one.

    Args:
        code: the close code received (or sent, when we closed first); None when no CLOSE frame went
            either way (an abnormal closure, 1006).
        reason: the close reason, or what went wrong.
        by: "server", "client", or "" when the TCP connection was simply dropped.

    """

    def __init__(self, code: int | None, reason: str = "", by: str = "") -> None:
        self.code = code
        self.reason = reason
        self.by = by
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.code is None:
            what = "socket dropped without a close frame (1006)"
        else:
            what = f"socket closed by the {self.by or 'peer'} with {self.code}"
        return f"{what}: {self.reason}" if self.reason else what


class Transport(Protocol):
    """What the Connection actor needs of a WebSocket (see the module docstring)."""

    name: str
    direct: Callable[[list[bytes], int], bool] | None

    async def recv_batch(self) -> Batch:
        """The next frames received, as one batch."""
        ...

    def ready(self) -> bool:
        """Whether the socket is open."""
        ...

    async def send(self, data: bytes) -> bool:
        """Send one text frame; False when the socket is closed."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with the closing handshake."""
        ...

    def abort(self) -> None:
        """Drop the socket at once, without a handshake."""
        ...


async def open_transport(
    kind: str,
    url: str,
    *,
    open_timeout: float,
    ping_interval: float,
    ping_timeout: float,
    max_frames: int,
    close_timeout: float = 1.0,
    ssl_context: ssl.SSLContext | None = None,
) -> Transport:
    """Open a WebSocket to ``url`` with library ``kind``; the handshake done within ``open_timeout``.

    Args:
        kind: one of ``TRANSPORTS``.
        url: a ws:// or wss:// url, the token in its query (never shown: see the module docstring).
        open_timeout: the seconds for TCP, TLS and the HTTP upgrade together.
        ping_interval: the seconds of silence after which a WebSocket ping is sent.
        ping_timeout: the seconds a pong may take before the socket is closed.
        max_frames: the most frames one ``recv_batch`` returns.
        close_timeout: the seconds the closing handshake may take before the socket is dropped.
        ssl_context: for wss:// urls; None means the system's default trust store.

    Raises:
        ValueError: an unknown ``kind``.
        TimeoutError: no handshake within ``open_timeout``.
        OSError, ssl.SSLError, picows.WSError, websockets.exceptions.InvalidHandshake...: the library's
            own refusal (``actors.connection.classify`` knows them all).

    """
    if kind == "picows":
        return await PicowsTransport.open(
            url,
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_frames=max_frames,
            close_timeout=close_timeout,
            ssl_context=ssl_context,
        )
    if kind == "websockets":
        return await WebsocketsTransport.open(
            url,
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_frames=max_frames,
            close_timeout=close_timeout,
            ssl_context=ssl_context,
        )
    raise ValueError(f"unknown transport {kind!r}; expected one of {', '.join(TRANSPORTS)}")


# --- websockets -------------------------------------------------------------------------------------


class WebsocketsTransport:
    """websockets' asyncio client. The batch boundary reads websockets' queue of received frames
    (``recv_messages.frames``, a private attribute: without it every frame is a batch of its own).
    """

    name = "websockets"

    def __init__(self, ws: ClientConnection, max_frames: int, close_timeout: float) -> None:
        self.direct: Callable[[list[bytes], int], bool] | None = None  # never offered: frames come by recv
        self._ws = ws
        self._max_frames = max_frames
        self._close_timeout = close_timeout
        self._buffered = getattr(getattr(ws, "recv_messages", None), "frames", ())
        self._pending: list[bytes] = []  # taken from websockets, not yet returned (rule 2)
        self._first_ns = 0

    def __repr__(self) -> str:
        return f"WebsocketsTransport(open={self._ws.state.name.lower()})"

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        open_timeout: float,
        ping_interval: float,
        ping_timeout: float,
        max_frames: int,
        close_timeout: float,
        ssl_context: ssl.SSLContext | None,
    ) -> WebsocketsTransport:
        """See ``open_transport``."""
        extra: dict[str, Any] = {} if ssl_context is None else {"ssl": ssl_context}
        ws = await connect(
            url,
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_size=MAX_MESSAGE_BYTES,
            max_queue=None,  # we never stop reading; backpressure is on the decoder batches
            compression=None,
            **extra,
        )
        return cls(ws, max_frames, close_timeout)

    async def recv_batch(self) -> Batch:
        """The next frames, up to where websockets holds no further one.

        Raises:
            websockets.exceptions.ConnectionClosed: the socket ended (its close frames inside).

        """
        pending, recv, buffered = self._pending, self._ws.recv, self._buffered
        if not pending:
            pending.append(await recv(decode=False))
            self._first_ns = time.time_ns()
        while len(buffered) and len(pending) < self._max_frames:
            pending.append(await recv(decode=False))
        self._pending = []
        return pending, self._first_ns

    def ready(self) -> bool:
        """Whether ``recv_batch`` has a frame to return without waiting (a close is seen by its call)."""
        return bool(self._pending) or len(self._buffered) > 0

    async def send(self, data: bytes) -> bool:
        """Send ``data`` as one text frame; False when the socket is closing or closed."""
        try:
            await self._ws.send(data, text=True)
        except ConnectionClosed:
            return False
        return True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake, within ``close_timeout`` (websockets drops the socket after it)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(code, reason), self._close_timeout + 1.0)

    def abort(self) -> None:
        """Drop the socket at once, no closing handshake."""
        self._ws.transport.abort()


# --- picows -----------------------------------------------------------------------------------------


class _Listener(WSListener):
    """picows' callbacks: each text frame's payload is copied into the current batch, and the batch is
    cut at a frame that is ``last_in_buffer`` or at ``max_frames``.

    picows gives it every frame but the pongs to its own pings, which ``is_user_specific_pong`` sees
    first: a pong may be the last frame of a read, so it cuts the batch there too. The server's pings
    are answered here rather than by picows' auto-pong, for the same reason. picows does not
    reassemble fragmented messages: this does, up to ``MAX_MESSAGE_BYTES``. A CLOSE from the server is
    echoed and the socket dropped (picows does neither by itself). An exception in here would make
    picows close with 1011: it is caught, kept, and the socket closed with 1002 instead.
    """

    def __init__(self, max_frames: int, on_batch: Callable[[], None]) -> None:
        super().__init__()
        self.max_frames = max_frames
        self.on_batch = on_batch
        self.batches: deque[Batch] = deque()
        self.frames: list[bytes] = []
        self.first_ns = 0
        self.fragments: list[bytes] | None = None  # a message arriving in fragments
        self.fragment_bytes = 0
        self.ended: BaseException | None = None  # set once the socket is gone
        self.failure: BaseException | None = None  # what we closed the socket for
        self.wake = asyncio.Event()
        self.direct: Callable[[list[bytes], int], bool] | None = None  # PicowsTransport.direct

    # picows calls these, synchronously, on the event loop's thread.

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is _TEXT and frame.fin and self.fragments is None:
            # Nearly every frame of a feed: a whole text message. Inline, as _add and _frame do it.
            frames = self.frames
            if not frames:
                self.first_ns = time.time_ns()
            frames.append(frame.get_payload_as_bytes())
            if frame.last_in_buffer or len(frames) >= self.max_frames:
                self._cut()
            return
        try:
            self._frame(transport, frame)
        except Exception as exc:  # noqa: BLE001 - the frame boundary: keep it, close cleanly
            self._fail(transport, exc)

    def is_user_specific_pong(self, frame: WSFrame) -> bool:
        if frame.msg_type is not WSMsgType.PONG:
            return False
        if frame.last_in_buffer and self.frames:
            self._cut()
        return True

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.frames:
            self._cut()
        if self.ended is None:
            self.ended = self.failure or _closed(transport)
        self.wake.set()

    # the work

    def _frame(self, transport: WSTransport, frame: WSFrame) -> None:  # noqa: C901, PLR0912 - one branch per kind of frame picows hands over
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if self.fragments is not None:
                raise ProtocolViolation("a new message began before the fragmented one ended (RFC 6455 5.4)")
            if frame.fin:
                self._add(frame.get_payload_as_bytes())
            else:
                self.fragments = [frame.get_payload_as_bytes()]
                self.fragment_bytes = frame.payload_size
        elif kind is WSMsgType.CONTINUATION:
            if self.fragments is None:
                raise ProtocolViolation("a continuation frame with no message to continue (RFC 6455 5.4)")
            self.fragment_bytes += frame.payload_size
            if self.fragment_bytes > MAX_MESSAGE_BYTES:
                raise ProtocolViolation(f"a fragmented message over {MAX_MESSAGE_BYTES} bytes")
            self.fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                payload = b"".join(self.fragments)
                self.fragments = None
                self._add(payload)
        elif kind is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind is WSMsgType.CLOSE:
            if self.frames:
                self._cut()
            code = frame.get_close_code()
            if transport.is_close_frame_sent:  # the answer to ours: say why we closed
                self.ended = _closed(transport)
            else:
                self.ended = SocketClosed(code.value, frame.get_close_reason(), "server")
                transport.send_close(code, frame.get_close_message())
            transport.disconnect()
            return
        if frame.last_in_buffer and self.frames:
            self._cut()

    def _add(self, payload: bytes) -> None:
        frames = self.frames
        if not frames:
            self.first_ns = time.time_ns()
        frames.append(payload)
        if len(frames) >= self.max_frames:
            self._cut()

    def _cut(self) -> None:
        frames, self.frames = self.frames, []
        direct = self.direct
        if direct is not None and not self.batches and direct(frames, self.first_ns):
            return  # taken at once: nothing older was waiting, so the order holds
        self.batches.append((frames, self.first_ns))
        self.wake.set()
        self.on_batch()

    def _fail(self, transport: WSTransport, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode.PROTOCOL_ERROR, str(exc)[:120].encode())
        transport.disconnect()


def _closed(transport: WSTransport) -> SocketClosed:
    """How a picows socket ended, from its close handshake (None when it was dropped)."""
    handshake = transport.close_handshake
    if handshake is None or (handshake.sent is None and handshake.recv is None):
        return SocketClosed(None)
    sent, recv = handshake.sent, handshake.recv
    if sent is not None and (recv is None or not handshake.recv_then_sent):
        if sent.code is WSCloseCode.GOING_AWAY:
            # picows' auto-ping gave up: "peer has not replied to ping/heartbeat request within ..."
            return SocketClosed(sent.code.value, f"no pong: {sent.reason}", "client")
        return SocketClosed(sent.code.value, sent.reason, "client")
    assert recv is not None
    return SocketClosed(recv.code.value, recv.reason, "server")


class PicowsTransport:
    """picows' client (see ``_Listener`` for what it adds to picows)."""

    name = "picows"

    def __init__(self, transport: WSTransport, listener: _Listener, close_timeout: float) -> None:
        self._transport = transport
        self._listener = listener
        self._close_timeout = close_timeout
        self._paused = False
        listener.on_batch = self._on_batch

    def __repr__(self) -> str:
        return f"PicowsTransport(disconnected={self._transport.is_disconnected})"

    @property
    def direct(self) -> Callable[[list[bytes], int], bool] | None:
        """Offered each batch cut while no batch waits, before it is queued (see the module docstring);
        it must not raise, and returns False to have the batch queued after all.
        """
        return self._listener.direct

    @direct.setter
    def direct(self, taker: Callable[[list[bytes], int], bool] | None) -> None:
        self._listener.direct = taker

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        open_timeout: float,
        ping_interval: float,
        ping_timeout: float,
        max_frames: int,
        close_timeout: float,
        ssl_context: ssl.SSLContext | None,
    ) -> PicowsTransport:
        """See ``open_transport``."""
        transport, listener = await asyncio.wait_for(
            ws_connect(
                lambda: _Listener(max_frames, _nothing),
                url,
                ssl_context=ssl_context,
                websocket_handshake_timeout=open_timeout,
                logger_name=_PICOWS_LOGGER,
                enable_auto_ping=True,
                # picows pings only after this long without any incoming data, and wants the pong
                # within at most that long: a feed that answers our 22000s is never pinged.
                auto_ping_idle_timeout=max(ping_interval, ping_timeout),
                auto_ping_reply_timeout=ping_timeout,
                enable_auto_pong=False,  # _Listener answers: a ping may end a read (see _Listener)
                max_frame_size=MAX_MESSAGE_BYTES,
                max_redirects=0,  # picows logs a redirect's url, token included
            ),
            open_timeout,
        )
        assert isinstance(listener, _Listener)
        return cls(transport, listener, close_timeout)

    def _on_batch(self) -> None:
        if not self._paused and len(self._listener.batches) >= MAX_PENDING_BATCHES:
            self._paused = True  # rule 3: the kernel buffers the socket until recv_batch catches up
            self._transport.underlying_transport.pause_reading()

    async def recv_batch(self) -> Batch:
        """The next batch picows' callbacks cut.

        Raises:
            SocketClosed: the socket ended, every batch before the end returned.
            ProtocolViolation: the server broke RFC 6455 in a way picows let through (fragments).
            picows.WSProtocolError: picows found the server's framing broken, and closed.

        """
        listener = self._listener
        batches = listener.batches
        while not batches:
            if listener.ended is not None:
                raise listener.ended
            listener.wake.clear()
            await listener.wake.wait()
        batch = batches.popleft()
        if self._paused and len(batches) <= MAX_PENDING_BATCHES // 2:
            self._paused = False
            self._transport.underlying_transport.resume_reading()
        return batch

    def ready(self) -> bool:
        """Whether ``recv_batch`` would return (or raise) without waiting."""
        listener = self._listener
        return bool(listener.batches) or listener.ended is not None

    async def send(self, data: bytes) -> bool:
        """Send ``data`` as one text frame; False when the socket is closing or closed."""
        transport = self._transport
        if transport.is_disconnected or transport.is_close_frame_sent:
            return False
        transport.send(WSMsgType.TEXT, data)
        return True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send CLOSE (unless sent) and wait up to ``close_timeout`` for the server's; then drop it."""
        transport = self._transport
        if not transport.is_disconnected and not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode(code), reason.encode())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(transport.wait_disconnected(), self._close_timeout)
        transport.disconnect(graceful=False)

    def abort(self) -> None:
        """Drop the socket at once, no closing handshake."""
        self._transport.disconnect(graceful=False)


_TEXT: Final = WSMsgType.TEXT


def _nothing() -> None:
    return None
