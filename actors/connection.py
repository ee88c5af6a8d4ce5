"""The Connection actor: owns one WebSocket to one endpoint. A thin async shell.

It reads frames without ever waiting on downstream work except when too many batches are in flight,
forwards raw frames in batches to its decoder over a channel (actors.channel; flushed when the socket
has nothing more buffered, at ``batch_max_frames``, or at ``batch_max_age_ms``), sends what the
registry and the heartbeat actor ask it to send, and answers the heartbeat actor's ``beat``. It makes
no protocol decisions: subscription state lives in the registry (actors.core.subscriptions), liveness
rules in actors.core.liveness.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import ssl
import time
import uuid
from typing import Any

import msgspec
from picows import WSHandshakeError, WSInvalidStatusError, WSInvalidURL, WSProtocolError
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from actors import metrics
from actors.channel import Sender, local_node
from actors.core import codes, wire
from actors.core.backoff import backoff
from actors.core.errors import ConnectFailed, ConnectionSilent, FeedError, ProtocolViolation, VendorError
from actors.core.liveness import Liveness, Verdict
from actors.core.naming import connection_name
from actors.core.routing import Outbox
from actors.core.settings import TRANSPORTS
from actors.core.tokens import Secret, endpoint_url, redact
from actors.handles import resolve
from actors.hot import direct, freeze_heap
from actors.log import for_connection, logger
from actors.transport import SocketClosed, Transport, open_transport

STABLE_SESSION_S = 10.0  # a socket that stayed up this long resets the reconnect backoff
#: WebSocket ping/pong is a second, independent check (PROTOCOL.md "Liveness"). A pong queues behind
#: every frame the server sent before it, so during a burst it can take seconds to be read: a timeout
#: as short as the silence deadline closed busy, healthy sockets. Our first check (any frame within
#: the silence deadline) finds a dead socket long before this one does.
PING_TIMEOUT_S = 20.0

#: Frame batches held for the decoder while it is away (restarting): at ``batch_max_age_ms`` apart,
#: seconds of a feed. Beyond it batches are dropped and counted (``frames_dropped``); the rest are
#: sent again to the restarted decoder, which decodes them afresh (strategies drop what they had).
CHANNEL_BUFFER_BATCHES = 2048

#: Vendor refusals that no retry can cure (PROTOCOL.md "Error codes"): bad token, plan too small,
#: code not authorised. 400, 429, 600 and 606 are retried after a backoff delay.
FATAL_RETS = frozenset({401, 603, 604})

#: Failures of the transport a new socket can cure. ``asyncio.IncompleteReadError`` is an ``EOFError``
#: and ``TimeoutError`` an ``OSError``; they are listed for the reader.
RETRYABLE_TYPES: tuple[type[BaseException], ...] = (
    ConnectionClosed,
    SocketClosed,
    WSProtocolError,
    ConnectionSilent,
    ProtocolViolation,
    OSError,
    TimeoutError,
    EOFError,
    asyncio.IncompleteReadError,
)


def retryable_status(status: int) -> bool:
    """Whether a handshake refused with HTTP ``status`` may succeed later: 429 and 5xx may; any other
    refusal (401/403 wrong token, 404 wrong path, 400...) will be refused again the same way.
    """
    return status == 429 or status >= 500


def classify(exc: BaseException) -> BaseException | None:  # noqa: PLR0911 - a decision table
    """Decide what a connection failure means (STYLE.md section 3: ``None`` means retry).

    Args:
        exc: the exception that ended a connection attempt or a running connection.

    Returns:
        None to retry after a backoff delay; otherwise the exception itself, which is fatal: stop and
        report it. Fatal: VendorError 401/603/604, a handshake refused with an HTTP status that a retry
        cannot change (see ``retryable_status``), a bad URI, a TLS certificate that fails verification,
        anything that is not an ``Exception`` (KeyboardInterrupt, SystemExit, CancelledError) and every
        exception not known to be transient. An exception group is retried only when all of it is.

    """
    if not isinstance(exc, Exception):
        return exc  # KeyboardInterrupt, SystemExit, asyncio.CancelledError: never swallowed
    if isinstance(exc, BaseExceptionGroup):
        return None if all(classify(inner) is None for inner in exc.exceptions) else exc
    if isinstance(exc, VendorError):
        # PROTOCOL.md "Error codes": 401 token invalid, 603 token level not enough, 604 code unauthorized.
        return exc if exc.ret in FATAL_RETS else None
    if isinstance(exc, InvalidStatus):  # websockets
        return None if retryable_status(exc.response.status_code) else exc
    if isinstance(exc, WSInvalidStatusError):  # picows
        status = exc.response.status if exc.response is not None else 0
        return None if retryable_status(int(status)) else exc
    if isinstance(exc, (InvalidURI, WSInvalidURL)):
        return exc
    if isinstance(exc, (InvalidHandshake, WSHandshakeError)):
        return None  # a garbled or cut handshake: the next one may go through
    if isinstance(exc, ssl.SSLCertVerificationError):
        # An OSError, but a new socket meets the same certificate: a configuration problem.
        return exc
    if isinstance(exc, RETRYABLE_TYPES):
        return None
    return exc  # ConfigError, InvalidCode, InvalidTransition, bugs: let them propagate


class ConnectionConfig(msgspec.Struct, frozen=True):
    """What a Connection actor needs from the settings."""

    heartbeat_interval_s: float
    silence_deadline_s: float
    batch_max_frames: int = 256
    batch_max_age_ms: float = 5.0
    max_batches_in_flight: int = 16
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_jitter: float = 0.5
    open_timeout_s: float = 10.0
    transport: str = TRANSPORTS[0]  # actors.transport: "picows" or "websockets"


class BeatReport(msgspec.Struct, frozen=True):
    """What ``beat`` tells the heartbeat actor."""

    conn_id: str
    epoch: int
    connected: bool
    verdict: int  # actors.core.liveness.Verdict, or -1 when not connected
    silent_for: float
    silence_deadline_s: float
    heartbeat_sent: bool
    pid: int
    wake_in_s: float = math.inf  # until the liveness clock's next wake-up (Liveness.next_wakeup); inf: none


class ConnectionStats(msgspec.Struct, frozen=True):
    """Counters and state of one Connection actor, for ``statistics()`` and the status view."""

    conn_id: str
    endpoint: str
    url: str  # redacted
    connected: bool
    epoch: int
    frames: int
    batches: int
    heartbeats_sent: int
    requests_sent: int
    reconnects: int
    last_error: str
    last_frame_age_s: float
    batches_in_flight: int
    frames_dropped: int = 0  # frames the decoder channel could not hold (decoder away too long)
    gave_up: bool = False  # a fatal failure: it waits for a reconnect order instead of retrying


class Connection:
    """One WebSocket to one AllTick endpoint (wrapped with ``ray.remote`` by the supervisor)."""

    def __init__(  # noqa: PLR0917 - Ray passes the supervisor's .remote() arguments as given
        self,
        conn_id: str,
        endpoint: str,
        url: str,
        token: Secret,
        config: ConnectionConfig,
        decoder: Any,
        registry: Any,
        supervisor: Any = None,
    ) -> None:
        self._conn_id = conn_id
        for_connection(conn_id, endpoint, token)  # every line of this process: its id, endpoint; no token
        self._endpoint = codes.Endpoint(endpoint)
        self._url = url
        self._token = token
        self._cfg = config
        # Peers come by name (actors.handles), looked up once here.
        self._decoder = resolve(decoder)
        self._registry = resolve(registry)
        self._supervisor = supervisor = resolve(supervisor)
        self._ids = wire.RequestIds(f"{conn_id}-{uuid.uuid4().hex[:8]}")
        self._liveness = Liveness(
            heartbeat_every=config.heartbeat_interval_s, silent_after=config.silence_deadline_s
        )
        self._ws: Transport | None = None
        self._epoch = 0
        self._connected = asyncio.Event()
        self._frames = 0
        self._batches = 0
        self._heartbeats = 0
        self._requests = 0
        self._reconnects = 0
        self._last_error: BaseException | None = None
        self._fatal: BaseException | None = None
        self._ordered_cause: FeedError | None = None  # set by reconnect() until its abort ends the session
        self._settled = asyncio.Event()  # set once the server accepted a session, or refused for good
        # -> the decoder, over the channel: frames it has not acknowledged are sent again after a break
        self._channel = Sender(
            f"{conn_id}->decoder",
            self._decoder_address,
            Outbox(max_batches=CHANNEL_BUFFER_BATCHES, replay=True),
            node=local_node()[0],
        )
        self._stopping = False
        self._session_started = 0.0
        # per batch: past Ray's wrappers
        direct(self, "_flush", "_send_batch", "_decoder_idle", "_screen_all")
        self._kick = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())
        freeze_heap()  # the start-up heap out of the collector's scans: no pause of tens of ms mid-feed
        if supervisor is not None:  # last: the new pid is reported once the process is ready
            supervisor.child_started.remote(connection_name(conn_id), os.getpid())

    def __repr__(self) -> str:
        return f"Connection({self._conn_id!r}, {redact(self._url)!r})"

    # --- socket loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        delays = backoff(
            initial=self._cfg.backoff_initial_s, cap=self._cfg.backoff_max_s, jitter=self._cfg.backoff_jitter
        )
        while not self._stopping:
            self._session_started = 0.0
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the frame boundary: classify, record, back off
                if self._stopping:
                    break
                # A socket we aborted on an order (reconnect) fails as closed: the order's cause is the
                # reason, not the close it caused.
                cause, self._ordered_cause = self._ordered_cause, None
                fatal = None if cause is not None else classify(exc)
                self._last_error = cause if cause is not None else exc
                if fatal is not None:
                    logger.error(
                        "{}: giving up until told to reconnect: {}", self._conn_id, self._error_text()
                    )
                    self._fatal = fatal
                    self._settled.set()
                    if self._supervisor is not None:
                        self._supervisor.child_failed.remote(connection_name(self._conn_id), _typed(fatal))
                    self._kick.clear()
                    await self._kick.wait()
                    self._fatal = None
                    continue
                logger.warning("{}: {}", self._conn_id, self._error_text())
            if self._stopping:
                break
            if self._session_started and time.monotonic() - self._session_started > STABLE_SESSION_S:
                # A session that lasted is not part of a failure streak: start the backoff afresh.
                delays = backoff(
                    initial=self._cfg.backoff_initial_s,
                    cap=self._cfg.backoff_max_s,
                    jitter=self._cfg.backoff_jitter,
                )
            self._ordered_cause = None
            self._reconnects += 1
            metrics.reconnected(self._conn_id, self._last_error)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kick.wait(), next(delays))
            self._kick.clear()

    async def _session(self) -> None:
        url = endpoint_url(self._url, self._token)
        ws = await open_transport(  # actors/transport.py: picows or websockets, per feed.transport
            self._cfg.transport,
            url,
            open_timeout=self._cfg.open_timeout_s,
            # PROTOCOL.md: WebSocket ping/pong is a second, independent check. The first is ours: the
            # heartbeat actor and the silence deadline, which also catch a socket that answers pings.
            ping_interval=self._cfg.heartbeat_interval_s,
            ping_timeout=PING_TIMEOUT_S,
            max_frames=self._cfg.batch_max_frames,
        )
        del url
        try:
            self._ws = ws
            # Epochs grow across actor restarts too (a restarted actor starts from the wall clock),
            # so the registry never takes an old socket's late answer for the new one's.
            self._epoch = max(self._epoch + 1, time.time_ns() // 1_000_000)
            epoch = self._epoch
            self._session_started = time.monotonic()
            self._liveness.connected(time.monotonic())
            self._connected.set()
            logger.info(
                "{}: connected to {} (epoch {}, {})", self._conn_id, redact(self._url), epoch, ws.name
            )
            self._registry.connection_up.remote(self._conn_id, epoch)
            # A heartbeat at once: its 22001 tells that the server accepted the token (``_read``).
            await self._heartbeat_if_due(ws, time.monotonic())
            try:
                await self._read(ws, epoch)
            finally:
                self._connected.clear()
                self._ws = None
                # A socket closed by stop() is no dead feed: the registry tells no holder.
                self._registry.connection_down.remote(self._conn_id, epoch, self._stopping)
        finally:
            await ws.close()

    async def _read(self, ws: Transport, epoch: int) -> None:  # noqa: C901 - the read loop: each branch is one outcome of a socket read
        """Read batches of frames (cut by the transport where the socket had nothing more buffered) and
        hand them to ``_flush``: at once when the decoder is idle; while it still works on the previous
        batch, what arrives meanwhile joins this one until the decoder acknowledges or the batch is
        ``batch_max_age_ms`` old; at most ``batch_max_frames`` a batch, and a batch that full goes at
        once (in a burst the decoder then finds the next batch waiting when it is done with one, up to
        ``max_batches_in_flight``). Frames read before the socket ended are flushed before its end is
        raised.
        """
        max_frames = self._cfg.batch_max_frames
        max_age = self._cfg.batch_max_age_ms / 1000.0
        recv, ready = ws.recv_batch, ws.ready
        accepted = False

        def take(frames: list[bytes], started_ns: int) -> bool:
            # Offered by the transport while we wait below with nothing in hand: an idle decoder gets
            # the batch now, from picows' callback, without waking this task (a turn of the loop less).
            if not self._decoder_idle():
                return False  # queued: this task joins what arrives while the decoder works
            self._liveness.frame_received(time.monotonic())
            self._send_batch(frames, epoch, started_ns)
            return True

        while True:
            ws.direct = take if accepted else None
            try:
                frames, started_ns = await recv()
            finally:
                ws.direct = None
            if not accepted:
                accepted = self._screen_all(frames)
            if len(frames) < max_frames and not self._decoder_idle():
                # One wait for the acknowledgement (the transport's callbacks keep cutting batches
                # meanwhile); no task per batch: this runs for every batch of a burst. A full batch
                # goes at once: it waits at the decoder instead, which finds it there when done.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max_age):
                        await self._channel.wait_acked()
            ended: BaseException | None = None
            while len(frames) < max_frames and ready():
                try:
                    got, _ = await recv()
                except Exception as exc:  # noqa: BLE001 - the socket's end: raised after the flush below
                    ended = exc
                    break
                if not accepted:
                    accepted = self._screen_all(got)
                frames += got
            self._liveness.frame_received(time.monotonic())
            for start in range(0, len(frames), max_frames):
                await self._flush(frames[start : start + max_frames], epoch, started_ns)
            if ended is not None:
                raise ended
            if len(frames) >= max_frames:
                await asyncio.sleep(0)  # a long burst: let beat() and send() run between its batches

    def _screen_all(self, frames: list[bytes]) -> bool:
        """``_screen`` the frames of a session not yet accepted, in order; True once one accepted it."""
        return any(self._screen(frame) for frame in frames)

    def _screen(self, frame: bytes) -> bool:
        """Look at a frame of a session not yet accepted; True once the server accepted it.

        Raises:
            VendorError: the server refused the session (401 token invalid, 606 too many); the socket
                is dropped at once, and ``classify`` decides whether to retry. A 401 is not retried.

        """
        answer = wire.session_answer(frame)
        if isinstance(answer, VendorError):
            raise answer
        if answer:
            self._settled.set()
            return True
        return False

    def _error_text(self) -> str:
        exc = self._last_error
        return "" if exc is None else redact(f"{type(exc).__name__}: {exc}")  # an error may quote the URL

    async def _decoder_address(self) -> Any:
        return await self._decoder.channel_address.remote()

    def _decoder_idle(self) -> bool:
        return not self._channel.outbox.pending

    def _send_batch(self, frames: list[bytes], epoch: int, received_ns: int) -> None:
        self._frames += len(frames)
        self._batches += 1
        metrics.connection_batch(self._conn_id, len(frames))
        # -> the decoder, over the channel (actors.decoder._on_batch): a full buffer drops and counts
        self._channel.send([self._conn_id, epoch, received_ns, frames], len(frames))

    async def _flush(self, frames: list[bytes], epoch: int, received_ns: int) -> None:
        self._send_batch(frames, epoch, received_ns)
        channel = self._channel
        while channel.connected and channel.outbox.in_flight > self._cfg.max_batches_in_flight:
            # Backpressure: the decoder is behind. Waiting here lets the kernel buffer the socket.
            # (While the decoder is away, batches wait in the channel's bounded buffer instead.)
            await channel.wait_acked()

    # --- remote methods ---------------------------------------------------------------------------

    async def wait_started(self, timeout: float = 30.0) -> int:
        """Wait until the server accepted a session (it answered a request with 200); returns the epoch.

        Raises:
            VendorError: the server refused the session for good (401 token invalid).
            FeedError: another failure that no retry can cure (e.g. HTTP 404: a wrong path).
            ConnectFailed: neither within ``timeout`` seconds; it names the endpoint and the last error.

        """
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except TimeoutError:
            raise ConnectFailed(
                self._conn_id, self._endpoint.value, redact(self._url), self._error_text(), timeout
            ) from None
        if self._fatal is not None:
            raise _typed(self._fatal)
        return self._epoch

    async def send(self, epoch: int, frame: bytes) -> bool:
        """Send a request encoded by the registry, if the socket of ``epoch`` is still the open one."""
        ws = self._ws
        if ws is None or epoch != self._epoch:
            return False
        if not await ws.send(frame):
            return False
        self._requests += 1
        return True

    async def announce(self) -> int:
        """Tell the registry again that the socket is up (after the registry restarted)."""
        if self._connected.is_set():
            self._registry.connection_up.remote(self._conn_id, self._epoch)
        return self._epoch

    async def beat(self) -> BeatReport:
        """The heartbeat actor's ping: sends 22000 when due and reports liveness."""
        now = time.monotonic()
        ws = self._ws
        if ws is None or not self._connected.is_set():
            return BeatReport(
                self._conn_id,
                self._epoch,
                False,
                -1,
                0.0,
                self._cfg.silence_deadline_s,
                False,
                os.getpid(),
            )
        verdict, sent = await self._heartbeat_if_due(ws, now)
        wake_in_s = self._liveness.next_wakeup(now) - now
        return BeatReport(
            self._conn_id,
            self._epoch,
            True,
            int(verdict),
            self._liveness.silent_for(now),
            self._cfg.silence_deadline_s,
            sent,
            os.getpid(),
            wake_in_s,
        )

    async def _heartbeat_if_due(self, ws: Transport, now: float) -> tuple[Verdict, bool]:
        """Send a 22000 when the liveness clock says one is due; returns the verdict and whether it went."""
        verdict = self._liveness.verdict(now)
        if verdict is not Verdict.HEARTBEAT_DUE:
            return verdict, False
        if not await ws.send(wire.encode(wire.heartbeat(self._ids))):
            return verdict, False
        self._liveness.heartbeat_sent(now)
        self._heartbeats += 1
        return verdict, True

    async def reconnect(self, cause: FeedError) -> int:
        """Drop the socket at once (no close handshake: it may be dead) and connect again after a backoff."""
        logger.warning("{}: reconnecting: {}", self._conn_id, cause)
        self._last_error = cause
        ws = self._ws
        if ws is not None:
            self._ordered_cause = cause
            ws.abort()
        self._kick.set()
        return self._epoch

    async def statistics(self) -> ConnectionStats:
        """Counters of this connection (the URL is redacted)."""
        now = time.monotonic()
        connected = self._connected.is_set()
        return ConnectionStats(
            conn_id=self._conn_id,
            endpoint=self._endpoint.value,
            url=redact(self._url),
            connected=connected,
            epoch=self._epoch,
            frames=self._frames,
            batches=self._batches,
            heartbeats_sent=self._heartbeats,
            requests_sent=self._requests,
            reconnects=self._reconnects,
            last_error=self._error_text(),
            last_frame_age_s=self._liveness.silent_for(now) if connected else -1.0,
            batches_in_flight=self._channel.outbox.pending,
            frames_dropped=self._channel.outbox.dropped,
            gave_up=self._fatal is not None,
        )

    async def stop(self) -> None:
        """Close the socket and stop reconnecting."""
        self._stopping = True
        self._kick.set()
        ws = self._ws
        if ws is not None:
            await ws.close()  # bounded by its close timeout
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._channel.close()


def _typed(exc: BaseException) -> FeedError:
    """A fatal failure as a FeedError for the supervisor: ours as they are, anything else (a refused
    handshake, a certificate) wrapped so that its text, redacted, travels instead of a foreign type.
    """
    if isinstance(exc, FeedError):
        return exc
    return FeedError(redact(f"{type(exc).__name__}: {exc}"))
