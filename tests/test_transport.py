"""Tests of actors.transport, both implementations, against the real simulator on 127.0.0.1 (no Ray):
batches, the close handshake of a 401/606 refusal, a dropped and a blackholed socket, pings, TLS with
a self-signed certificate. The picows listener's own rules (fragments, pings, a failing callback) are
unit-tested with picows' test frames, since the simulator never sends such frames.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from picows import WSCloseCode, WSMsgType, WSTransport
from picows.picows import _make_test_ws_frame
from websockets.exceptions import ConnectionClosed

from actors.connection import classify
from actors.core import wire
from actors.core.errors import ProtocolViolation, VendorError
from actors.core.settings import TRANSPORTS
from actors.sim.server import Simulator
from actors.transport import MAX_MESSAGE_BYTES, SocketClosed, Transport, _Listener, open_transport

TOKEN = "transport-test-token"
CODES = ["AAPL.US", "TSLA.US", "700.HK"]
MAX_FRAMES = 64

each_transport = pytest.mark.parametrize("kind", TRANSPORTS)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(token=TOKEN, tick_rate=20.0, heartbeat_timeout=30.0) as simulator:
        yield simulator


async def opened(kind: str, url: str, **overrides: Any) -> Transport:
    options: dict[str, Any] = {"open_timeout": 10.0, "ping_interval": 10.0, "ping_timeout": 10.0}
    options.update(overrides)
    return await open_transport(kind, url, max_frames=MAX_FRAMES, **options)


def request(cmd_id: int, seq_id: int, data: dict[str, Any]) -> bytes:
    return json.dumps({"cmd_id": cmd_id, "seq_id": seq_id, "trace": f"t{seq_id}", "data": data}).encode()


def subscribe(codes: list[str], seq_id: int = 1) -> bytes:
    return request(22004, seq_id, {"symbol_list": [{"code": c} for c in codes]})


async def until_end(ws: Transport, limit: int = 100_000) -> tuple[list[bytes], BaseException]:
    """Every frame until the socket ends, and how it ended."""
    frames: list[bytes] = []
    for _ in range(limit):
        try:
            got, _ = await asyncio.wait_for(ws.recv_batch(), 30.0)
        except (SocketClosed, ConnectionClosed) as exc:
            return frames, exc
        frames += got
    pytest.fail(f"the socket did not end within {limit} batches")


def close_code(end: BaseException) -> int | None:
    """The close code an ended socket reports: received when the server closed, else sent."""
    if isinstance(end, SocketClosed):
        return end.code
    assert isinstance(end, ConnectionClosed)
    frame = end.rcvd if end.rcvd is not None else end.sent
    return None if frame is None else frame.code


@each_transport
class TestBatches:
    async def test_a_burst_comes_in_batches_cut_at_the_buffer_in_order(
        self, kind: str, sim: Simulator
    ) -> None:
        ws = await opened(kind, sim.url("stock"))
        assert await ws.send(subscribe(CODES))
        count = 20_000
        burst: list[list[bytes]] = []
        seen = 0
        while seen < count:
            frames, received_ns = await asyncio.wait_for(ws.recv_batch(), 30.0)
            assert 1 <= len(frames) <= MAX_FRAMES
            assert received_ns > 0
            if not burst and any(b"22005" in f for f in frames):
                sim.inject("burst", count=count)  # once subscribed
                burst.append([])
                continue
            if burst:
                burst.append(frames)
                seen += sum(1 for f in frames if b'"cmd_id":22998' in f)
        await ws.close()
        batches = burst[1:]
        # The boundary is "nothing more buffered", not every frame: a burst fills the socket.
        assert len(batches) < seen / 4, (len(batches), seen)
        assert any(len(b) == MAX_FRAMES for b in batches)
        seqs: dict[str, list[int]] = {}
        for frame in (f for b in batches for f in b):
            push = msgspec.json.decode(frame)
            if push.get("cmd_id") == 22998:
                seqs.setdefault(push["data"]["code"], []).append(int(push["data"]["seq"]))
        for code, got in seqs.items():
            assert got == sorted(got), code

    async def test_malformed_and_ghost_frames_pass_through_and_the_socket_stays(
        self, kind: str, sim: Simulator
    ) -> None:
        ws = await opened(kind, sim.url("stock"))
        assert await ws.send(subscribe(CODES[:1]))
        frames: list[bytes] = []
        while not any(b"22005" in f for f in frames):
            frames += (await asyncio.wait_for(ws.recv_batch(), 30.0))[0]
        for kind_of_bad in ("json", "json", "json"):
            sim.inject("malformed", kind=kind_of_bad)
        sim.inject("ghost", code="TSLA.US", count=2)
        bad = ghosts = 0
        while bad < 3 or ghosts < 2:
            for frame in (await asyncio.wait_for(ws.recv_batch(), 30.0))[0]:
                try:
                    push = msgspec.json.decode(frame)
                except msgspec.DecodeError:
                    bad += 1
                    continue
                ghosts += push.get("data", {}).get("code") == "TSLA.US"
        assert await ws.send(request(22000, 9, {}))  # still open: the heartbeat is answered
        while not any(b"22001" in f for f in frames):
            frames = (await asyncio.wait_for(ws.recv_batch(), 30.0))[0]
        await ws.close()

    async def test_send_after_close_is_false(self, kind: str, sim: Simulator) -> None:
        ws = await opened(kind, sim.url("stock"))
        await ws.close()
        assert not await ws.send(request(22000, 1, {}))


@each_transport
class TestClose:
    async def test_401_is_a_frame_then_close_1008_echoed(self, kind: str, sim: Simulator) -> None:
        ws = await opened(kind, sim.url("stock").replace(TOKEN, "wrong"))
        frames, end = await until_end(ws)
        await ws.close()
        answer = wire.session_answer(frames[0])
        assert isinstance(answer, VendorError)
        assert answer.ret == 401
        assert classify(answer) is answer  # fatal: the Connection stops at the first one
        assert close_code(end) == 1008
        assert classify(end) is None
        assert "wrong" not in str(end) + repr(ws)
        assert sim.state()["totals"]["refused_401"] == 1

    async def test_606_is_a_frame_then_close_1008_and_is_retried(self, kind: str, sim: Simulator) -> None:
        sim.inject("refuse", path="stock", count=1)
        ws = await opened(kind, sim.url("stock"))
        frames, end = await until_end(ws)
        await ws.close()
        answer = wire.session_answer(frames[0])
        assert isinstance(answer, VendorError)
        assert answer.ret == 606
        assert classify(answer) is None
        assert close_code(end) == 1008

    async def test_a_dropped_socket_ends_without_a_close_code(self, kind: str, sim: Simulator) -> None:
        ws = await opened(kind, sim.url("stock"))
        assert await ws.send(subscribe(CODES))
        await asyncio.wait_for(ws.recv_batch(), 30.0)
        sim.inject("drop", path="stock")
        _, end = await until_end(ws)
        await ws.close()
        assert close_code(end) is None
        assert classify(end) is None

    async def test_close_sends_1000_and_the_server_answers(self, kind: str, sim: Simulator) -> None:
        ws = await opened(kind, sim.url("stock"))
        await ws.close()
        _, end = await until_end(ws)
        assert close_code(end) == 1000


@each_transport
class TestPing:
    async def test_a_quiet_healthy_socket_answers_pings_and_stays_open(
        self, kind: str, sim: Simulator
    ) -> None:
        ws = await opened(kind, sim.url("stock"), ping_interval=0.1, ping_timeout=0.1)
        with pytest.raises(TimeoutError):  # nothing subscribed: only pings and pongs go, for 10 ping periods
            await asyncio.wait_for(ws.recv_batch(), 2.0)
        assert await ws.send(request(22000, 1, {}))
        frames, _ = await asyncio.wait_for(ws.recv_batch(), 30.0)
        assert b"22001" in frames[0]
        await ws.close()

    async def test_a_blackholed_socket_is_closed_for_want_of_a_pong(self, kind: str, sim: Simulator) -> None:
        ws = await opened(kind, sim.url("stock"), ping_interval=0.2, ping_timeout=0.2)
        sim.inject("blackhole", path="stock")
        _, end = await until_end(ws)
        ws.abort()
        # picows: CLOSE 1001 "no pong"; websockets: 1011 "keepalive ping timeout". Both are retried.
        assert close_code(end) in {1001, 1011}
        assert "pong" in str(end) or "ping" in str(end)
        assert classify(end) is None


# --- TLS ------------------------------------------------------------------------------------------


def self_signed(folder: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1 and its key into ``folder``, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tickvisor test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def tls_sim(certificate: tuple[Path, Path]) -> AsyncIterator[Simulator]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    async with Simulator(token=TOKEN, tick_rate=20.0, tls=context) as simulator:
        yield simulator


@each_transport
class TestTLS:
    async def test_a_trusted_certificate_connects(
        self, kind: str, tls_sim: Simulator, certificate: tuple[Path, Path]
    ) -> None:
        url = tls_sim.url("stock")
        assert url.startswith("wss://127.0.0.1:")
        trust = ssl.create_default_context(cafile=str(certificate[0]))
        ws = await opened(kind, url, ssl_context=trust)
        assert await ws.send(request(22000, 1, {}))
        frames, _ = await asyncio.wait_for(ws.recv_batch(), 30.0)
        assert wire.session_answer(frames[0]) is True
        await ws.close()

    async def test_an_untrusted_certificate_is_fatal(self, kind: str, tls_sim: Simulator) -> None:
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await opened(kind, tls_sim.url("stock"))  # the system's trust store: self-signed is refused
        assert classify(info.value) is info.value
        assert TOKEN not in str(info.value)


# --- the picows listener's own rules, with picows' test frames -------------------------------------


class Recorder:
    """Stands in for picows' WSTransport in the listener's unit tests: records what the listener does."""

    def __init__(self) -> None:
        self.is_close_frame_sent = False
        self.pongs: list[bytes] = []
        self.closes: list[tuple[WSCloseCode, bytes]] = []
        self.disconnected = False

    def send_pong(self, payload: bytes) -> None:
        self.pongs.append(payload)

    def send_close(self, code: WSCloseCode, message: bytes = b"") -> None:
        self.is_close_frame_sent = True
        self.closes.append((code, message))

    def disconnect(self, graceful: bool = True) -> None:  # noqa: FBT002 - picows' signature
        self.disconnected = True


def frame(kind: WSMsgType, payload: bytes, *, fin: bool = True) -> Any:
    return _make_test_ws_frame(kind, payload, fin, False)


def on_frame(listener: _Listener, transport: Recorder, ws_frame: Any) -> None:
    """``listener.on_ws_frame`` with the Recorder standing in for picows' WSTransport (it has every
    method the listener calls; the cast says so to mypy).
    """
    listener.on_ws_frame(cast("WSTransport", transport), ws_frame)


class TestPicowsListener:
    def test_fragments_are_reassembled(self) -> None:
        listener, transport = _Listener(MAX_FRAMES, lambda: None), Recorder()
        on_frame(listener, transport, frame(WSMsgType.TEXT, b'{"a":', fin=False))
        on_frame(listener, transport, frame(WSMsgType.CONTINUATION, b"1", fin=False))
        assert not listener.batches
        on_frame(listener, transport, frame(WSMsgType.CONTINUATION, b"}"))
        assert [b for b, _ in listener.batches] == [[b'{"a":1}']]
        assert not transport.closes

    def test_a_continuation_without_a_start_closes_with_1002(self) -> None:
        listener, transport = _Listener(MAX_FRAMES, lambda: None), Recorder()
        on_frame(listener, transport, frame(WSMsgType.CONTINUATION, b"x"))
        assert transport.closes[0][0] is WSCloseCode.PROTOCOL_ERROR
        assert transport.disconnected
        assert isinstance(listener.failure, ProtocolViolation)

    def test_an_oversized_fragmented_message_is_refused(self) -> None:
        listener, transport = _Listener(MAX_FRAMES, lambda: None), Recorder()
        chunk = b"x" * (MAX_MESSAGE_BYTES // 2 + 1)
        on_frame(listener, transport, frame(WSMsgType.TEXT, chunk, fin=False))
        on_frame(listener, transport, frame(WSMsgType.CONTINUATION, chunk, fin=False))
        assert isinstance(listener.failure, ProtocolViolation)
        assert not listener.batches

    def test_a_ping_is_answered_and_ends_the_batch(self) -> None:
        listener, transport = _Listener(MAX_FRAMES, lambda: None), Recorder()
        listener.frames = [b"a"]  # a frame of this read, not yet cut
        on_frame(listener, transport, frame(WSMsgType.PING, b"p1"))
        assert transport.pongs == [b"p1"]
        assert [b for b, _ in listener.batches] == [[b"a"]]

    def test_our_pong_ends_the_batch(self) -> None:
        listener = _Listener(MAX_FRAMES, lambda: None)
        listener.frames = [b"a"]
        assert listener.is_user_specific_pong(frame(WSMsgType.PONG, b""))
        assert [b for b, _ in listener.batches] == [[b"a"]]
        assert not listener.is_user_specific_pong(frame(WSMsgType.TEXT, b"{}"))

    def test_a_server_close_is_echoed(self) -> None:
        listener, transport = _Listener(MAX_FRAMES, lambda: None), Recorder()
        payload = (1008).to_bytes(2, "big") + b"token invalid"
        on_frame(listener, transport, frame(WSMsgType.TEXT, b'{"ret":401}'))
        on_frame(listener, transport, frame(WSMsgType.CLOSE, payload))
        assert transport.closes == [(WSCloseCode.POLICY_VIOLATION, b"token invalid")]
        assert transport.disconnected
        assert isinstance(listener.ended, SocketClosed)
        assert (listener.ended.code, listener.ended.by) == (1008, "server")
        assert [b for b, _ in listener.batches] == [[b'{"ret":401}']]

    def test_each_read_is_a_batch_and_batches_are_cut_at_max_frames(self) -> None:
        listener, transport = _Listener(3, lambda: None), Recorder()
        on_frame(listener, transport, frame(WSMsgType.TEXT, b"0"))
        # picows' test frames are each last_in_buffer: a frame alone in its read is a batch.
        assert [b for b, _ in listener.batches] == [[b"0"]]
        for i in range(1, 8):
            listener._add(str(i).encode())
        assert [b for b, _ in listener.batches] == [[b"0"], [b"1", b"2", b"3"], [b"4", b"5", b"6"]]
        assert listener.frames == [b"7"]

    def test_a_batch_is_offered_to_direct_only_while_none_waits(self) -> None:
        listener, transport = _Listener(MAX_FRAMES, lambda: None), Recorder()
        taken: list[list[bytes]] = []
        refuse = False

        def take(frames: list[bytes], first_ns: int) -> bool:
            assert first_ns > 0
            if refuse:
                return False
            taken.append(frames)
            return True

        listener.direct = take
        on_frame(listener, transport, frame(WSMsgType.TEXT, b"0"))
        assert (taken, list(listener.batches)) == ([[b"0"]], [])  # taken at once, not queued
        assert not listener.wake.is_set()  # the reader is not woken for it
        refuse = True  # e.g. the decoder is busy: queued, and the reader woken
        on_frame(listener, transport, frame(WSMsgType.TEXT, b"1"))
        assert [b for b, _ in listener.batches] == [[b"1"]]
        assert listener.wake.is_set()
        refuse = False  # an older batch waits: the next is queued behind it, never offered (order)
        on_frame(listener, transport, frame(WSMsgType.TEXT, b"2"))
        assert [b for b, _ in listener.batches] == [[b"1"], [b"2"]]
        assert taken == [[b"0"]]
        listener.direct = None
        listener.batches.clear()
        on_frame(listener, transport, frame(WSMsgType.TEXT, b"3"))
        assert [b for b, _ in listener.batches] == [[b"3"]]
