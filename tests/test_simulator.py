"""Tests of actors.sim, the local AllTick server (also run as scripts/simulator.py and python -m actors.sim).

The client side here is a plain protocol client (websockets + json), never the ``actors`` package, so
the simulator is checked against PROTOCOL.md on its own. One simulator per test on 127.0.0.1:0.
Timeouts scale from MS; the slowest tests (stall, blackhole, heartbeat timeout) wait about 1 s.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
import json
import logging
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.protocol import State
from websockets.sync.client import connect as sync_connect

from actors.sim import (
    FOREX_CRYPTO_PATH,
    STOCK_PATH,
    PlanLimits,
    SimState,
    Simulator,
    SimulatorThread,
    format_units,
    max_requests_in_window,
)
from actors.sim.state import Outcome

MS = 0.001  # every timeout below is a multiple of this
TOKEN = "tok-S3CRET-9f2c7e"  # distinctive, so a leak is easy to find
REPO = Path(__file__).resolve().parent.parent
DECIMAL = re.compile(r"^\d+(\.\d+)?$")
MISSING = object()

MakeSim = Callable[..., Awaitable[Simulator]]


class FakeClock:
    """A monotonic clock that moves only when a test sets ``now``: rate limits without sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- A plain protocol client ----------------------------------------------------------------------------


class Client:
    """A bare AllTick client: sends requests, tells responses from pushes."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._seq = itertools.count(1)
        self.buffer: list[dict[str, Any]] = []  # pushes read but not yet consumed
        self.before: list[dict[str, Any]] = []  # pushes that arrived before the last response

    async def recv(self, timeout: float = 2000 * MS) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def request(
        self, cmd_id: int, data: object = MISSING, *, timeout: float = 2000 * MS
    ) -> dict[str, Any]:
        seq_id = next(self._seq)
        frame: dict[str, Any] = {"cmd_id": cmd_id, "seq_id": seq_id, "trace": f"trace-{seq_id}"}
        if data is not MISSING:
            frame["data"] = data
        await self.ws.send(json.dumps(frame))
        return await self.response(seq_id, timeout=timeout)

    async def response(self, seq_id: int | None = None, *, timeout: float = 2000 * MS) -> dict[str, Any]:
        """The next response (a frame with ret); pushes read meanwhile go to ``before``."""
        self.before = self.buffer
        self.buffer = []
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.recv(deadline - time.monotonic())
            if "ret" in frame and (seq_id is None or frame["seq_id"] == seq_id):
                return frame
            self.before.append(frame)

    async def push(self, timeout: float = 2000 * MS) -> dict[str, Any]:
        if self.buffer:
            return self.buffer.pop(0)
        frame = await self.recv(timeout)
        assert "ret" not in frame, f"expected a push, got {frame}"
        return frame

    async def pushes_for(self, seconds: float) -> list[dict[str, Any]]:
        """Every frame received within the next ``seconds``."""
        frames, self.buffer = self.buffer, []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                frames.append(await self.recv(left))
            except TimeoutError:
                break
        return frames

    async def heartbeat(self) -> dict[str, Any]:
        return await self.request(22000, {})

    async def trades(self, *codes: str) -> dict[str, Any]:
        return await self.request(22004, {"symbol_list": [{"code": c} for c in codes]})

    async def books(self, *items: tuple[str, int | None]) -> dict[str, Any]:
        symbols = [{"code": c} if d is None else {"code": c, "depth_level": d} for c, d in items]
        return await self.request(22002, {"symbol_list": symbols})

    async def cancel(self, cancel_type: object) -> dict[str, Any]:
        return await self.request(22006, {"cancel_type": cancel_type})

    async def quiet(self, seconds: float = 50 * MS) -> None:
        """Discard frames already in flight."""
        await self.pushes_for(seconds)


@pytest.fixture
async def make_sim() -> AsyncIterator[MakeSim]:
    """Start simulators with test defaults: no ticks, no rate limits, few generated codes."""
    sims: list[Simulator] = []

    async def factory(**kwargs: Any) -> Simulator:
        kwargs = {
            "token": TOKEN,
            "tick_rate": 0,
            "book_rate": 0,
            "conn_gap_s": 0,
            "token_gap_s": 0,
            "codes": 20,
            **kwargs,
        }
        sim = Simulator(**kwargs)
        await sim.start()
        sims.append(sim)
        return sim

    yield factory
    for sim in sims:
        await sim.stop()


@pytest.fixture
async def open_client() -> AsyncIterator[Callable[[str], Awaitable[Client]]]:
    """Connect clients (no client keepalive pings) and close them after the test."""
    conns: list[ClientConnection] = []

    async def factory(url: str) -> Client:
        ws = await connect(url, ping_interval=None, close_timeout=200 * MS, open_timeout=2000 * MS)
        conns.append(ws)
        return Client(ws)

    yield factory
    for ws in conns:  # abort: a client that left pushes unread cannot read the server's close frame
        ws.transport.abort()


def conn_state(sim: Simulator, conn_id: int | None = None) -> dict[str, Any]:
    conns = sim.state()["connections"]
    if conn_id is None:
        assert len(conns) == 1, conns
        return conns[0]
    return next(c for c in conns if c["id"] == conn_id)


async def wait_for(predicate: Callable[[], bool], timeout: float = 2000 * MS) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(10 * MS)


def envelope_ok(frame: dict[str, Any], *, ret: int, cmd_id: int, seq_id: int, trace: str) -> None:
    assert set(frame) == {"ret", "msg", "cmd_id", "seq_id", "trace", "data"}
    assert (frame["ret"], frame["cmd_id"], frame["seq_id"], frame["trace"], frame["data"]) == (
        ret,
        cmd_id,
        seq_id,
        trace,
        {},
    )


# --- The sans-I/O core, with fake times -------------------------------------------------------------------


def core(**overrides: Any) -> SimState:
    kwargs: dict[str, Any] = {
        "catalog": {STOCK_PATH: ["AAPL.US", "TSLA.US", "700.HK"], FOREX_CRYPTO_PATH: ["EURUSD"]},
        "limits": PlanLimits(max_connections=2, max_codes=10),
        "conn_gap_s": 1.0,
        "token_gap_s": 3.0,
        "heartbeat_timeout": 30.0,
        **overrides,
    }
    return SimState(**kwargs)


def sub(code: str, seq_id: int = 1) -> bytes:
    return json.dumps(
        {"cmd_id": 22004, "seq_id": seq_id, "trace": "", "data": {"symbol_list": [{"code": code}]}}
    ).encode()


def ret_of(outcome: Outcome) -> int:
    """The ``ret`` of an outcome's reply; there must be one."""
    assert outcome.reply is not None
    return outcome.reply["ret"]


class TestSimStateCore:
    def test_connection_gap_counts_from_accepted_requests_only(self) -> None:
        state = core(token_gap_s=0)
        conn = state.admit(STOCK_PATH, "peer", 0.0)
        assert conn is not None
        rets = [ret_of(state.receive(conn.id, sub("AAPL.US"), t)) for t in (10.0, 10.5, 10.99, 11.0)]
        assert rets == [200, 429, 429, 200]

    def test_token_gap_spans_connections_of_one_path_only(self) -> None:
        state = core(conn_gap_s=0)
        a, b = state.admit(STOCK_PATH, "a", 0.0), state.admit(STOCK_PATH, "b", 0.0)
        fx = state.admit(FOREX_CRYPTO_PATH, "c", 0.0)
        assert a
        assert b
        assert fx
        assert ret_of(state.receive(a.id, sub("AAPL.US"), 1.0)) == 200
        assert ret_of(state.receive(b.id, sub("TSLA.US"), 3.9)) == 429
        assert ret_of(state.receive(fx.id, sub("EURUSD"), 3.9)) == 200
        assert ret_of(state.receive(a.id, sub("TSLA.US"), 3.95)) == 200  # own connection: no token gap
        assert ret_of(state.receive(b.id, sub("TSLA.US"), 6.95)) == 200

    def test_connection_limit_and_heartbeat_clock(self) -> None:
        state = core()
        first = state.admit(STOCK_PATH, "a", 0.0)
        assert first is not None
        assert state.admit(STOCK_PATH, "b", 0.0) is not None
        assert state.admit(STOCK_PATH, "c", 0.0) is None
        assert state.totals["refused_606"] == 1
        assert state.heartbeat_remaining(first.id, 10.0) == pytest.approx(20.0)
        state.receive(first.id, b'{"cmd_id":22000,"seq_id":1,"trace":"","data":{}}', 25.0)
        assert state.heartbeat_remaining(first.id, 40.0) == pytest.approx(15.0)
        assert state.heartbeat_remaining(first.id, 55.0) <= 0
        state.close(first.id)
        assert state.admit(STOCK_PATH, "d", 60.0) is not None

    def test_hold_leaves_the_next_requests_of_a_path_unanswered_on_any_connection(self) -> None:
        state = core(conn_gap_s=0, token_gap_s=0)
        a = state.admit(STOCK_PATH, "a", 0.0)
        fx = state.admit(FOREX_CRYPTO_PATH, "c", 0.0)
        assert a
        assert fx
        state.hold_next(STOCK_PATH, 2)
        assert state.receive(a.id, sub("AAPL.US"), 1.0).reply is None
        assert ret_of(state.receive(fx.id, sub("EURUSD"), 1.0)) == 200  # another path
        assert ret_of(state.receive(a.id, b'{"cmd_id":22000,"seq_id":9,"trace":"","data":{}}', 1.5)) == 200
        b = state.admit(STOCK_PATH, "b", 2.0)  # a new connection is held too
        assert b
        assert state.receive(b.id, sub("TSLA.US"), 2.0).reply is None
        assert ret_of(state.receive(b.id, sub("TSLA.US"), 3.0)) == 200
        assert state.conns[a.id].trades == {}
        assert [r[2] for r in state.conns[b.id].requests] == [0, 200]
        assert state.totals["held"] == 2

    def test_max_requests_in_window(self) -> None:
        conn = {
            "requests": [
                [0.0, 22004, 200],
                [0.5, 22004, 429],
                [0.99, 22002, 200],
                [1.0, 22006, 200],
                [5.0, 22004, 200],
            ]
        }
        assert max_requests_in_window(conn, 1.0) == 3
        assert max_requests_in_window(conn, 0.5) == 2
        assert max_requests_in_window({"requests": []}) == 0

    def test_format_units_is_exact(self) -> None:
        assert [format_units(u, d) for u, d in [(1892300, 4), (5, 3), (0, 2), (1200, 0)]] == [
            "189.2300",
            "0.005",
            "0.00",
            "1200",
        ]


# --- Handshake and envelope ---------------------------------------------------------------------------------


class TestHandshake:
    @pytest.mark.parametrize(("endpoint", "code"), [("stock", "AAPL.US"), ("forex_crypto", "EURUSD")])
    async def test_both_paths_answer_heartbeat_and_subscribe(
        self, make_sim: MakeSim, open_client: Any, endpoint: str, code: str
    ) -> None:
        sim = await make_sim()
        client = await open_client(sim.url(endpoint))
        await client.ws.send(json.dumps({"cmd_id": 22000, "seq_id": 4242, "trace": "hb-trace-1", "data": {}}))
        envelope_ok(await client.recv(), ret=200, cmd_id=22001, seq_id=4242, trace="hb-trace-1")
        reply = await client.trades(code)
        envelope_ok(reply, ret=200, cmd_id=22005, seq_id=1, trace="trace-1")
        assert reply["msg"] == "ok"
        state = conn_state(sim)
        assert (state["path"], state["trades"], state["heartbeats"]) == (
            {"stock": STOCK_PATH, "forex_crypto": FOREX_CRYPTO_PATH}[endpoint],
            [code],
            1,
        )

    @pytest.mark.parametrize("query", ["?token=wrong", "", "?token="])
    async def test_bad_or_missing_token_gets_401_then_close(self, make_sim: MakeSim, query: str) -> None:
        sim = await make_sim()
        async with connect(f"ws://127.0.0.1:{sim.port}{STOCK_PATH}{query}", ping_interval=None) as ws:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 2000 * MS))
            assert frame == {
                "ret": 401,
                "msg": "token invalid",
                "cmd_id": 0,
                "seq_id": 0,
                "trace": "",
                "data": {},
            }
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 2000 * MS)
            assert ws.close_code == 1008
        state = sim.state()
        assert state["connections"] == []
        assert state["totals"]["refused_401"] == 1

    async def test_unknown_path_is_http_404(self, make_sim: MakeSim) -> None:
        sim = await make_sim()
        with pytest.raises(InvalidStatus) as info:
            await connect(f"ws://127.0.0.1:{sim.port}/quote-ws-api?token={TOKEN}")
        assert info.value.response.status_code == 404

    async def test_generated_codes_exist_per_endpoint(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim(codes=20)
        stock = await open_client(sim.url("stock"))
        fx = await open_client(sim.url("forex_crypto"))
        assert (await stock.trades("S0001.US", "S0020.US"))["ret"] == 200
        assert (await stock.trades("S0021.US"))["ret"] == 600
        assert (await fx.trades("C0001USDT", "C0020USDT"))["ret"] == 200
        assert (await fx.trades("S0001.US"))["ret"] == 600


class TestHeartbeat:
    async def test_heartbeats_keep_open_and_silence_closes_with_1000(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim(heartbeat_timeout=0.5)
        client = await open_client(sim.url("stock"))
        for _ in range(4):  # 0.8 s in all, beyond the 0.5 s timeout
            assert (await client.heartbeat())["ret"] == 200
            await asyncio.sleep(200 * MS)
        assert client.ws.state is State.OPEN
        silent_since = time.monotonic()
        with pytest.raises(ConnectionClosed):
            await client.recv(2000 * MS)
        assert 250 * MS < time.monotonic() - silent_since < 1500 * MS
        assert (client.ws.close_code, client.ws.close_reason) == (1000, "heartbeat timeout")
        await wait_for(lambda: sim.state()["connections"] == [])
        assert [(c["id"], c["heartbeats"], c["open"]) for c in sim.state()["closed"]] == [(1, 4, False)]


class TestMalformedRequests:
    async def test_bad_envelopes_get_400_with_cmd_id_0_and_connection_stays(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim()
        client = await open_client(sim.url("stock"))
        cases = [
            ("not json {", 0, ""),
            ("[1, 2, 3]", 0, ""),
            ('"a string"', 0, ""),
            (json.dumps({"seq_id": 5, "trace": "no-cmd", "data": {}}), 5, "no-cmd"),
            (json.dumps({"cmd_id": 22000, "trace": "no-seq", "data": {}}), 0, "no-seq"),
            (json.dumps({"cmd_id": "22000", "seq_id": 6, "trace": "str-cmd", "data": {}}), 6, "str-cmd"),
            (json.dumps({"cmd_id": 22000, "seq_id": 7, "trace": "x" * 65, "data": {}}), 7, ""),
        ]
        for raw, seq_id, trace in cases:
            await client.ws.send(raw)
            frame = await client.recv()
            envelope_ok(frame, ret=400, cmd_id=0, seq_id=seq_id, trace=trace)
            assert frame["msg"] == "request header param invalid"
        assert (await client.heartbeat())["ret"] == 200
        assert conn_state(sim)["refused"] == {"400": len(cases)}

    async def test_unknown_cmd_and_missing_data(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim()
        client = await open_client(sim.url("forex_crypto"))
        unknown = await client.request(12345, {})
        envelope_ok(unknown, ret=400, cmd_id=12346, seq_id=1, trace="trace-1")
        no_data = await client.request(22000)  # PROTOCOL.md: data is required, may be {}
        assert (no_data["ret"], no_data["cmd_id"], no_data["msg"]) == (
            400,
            22001,
            "request data param invalid",
        )
        assert conn_state(sim)["heartbeats"] == 0
        assert (await client.trades("EURUSD"))["ret"] == 200

    async def test_empty_or_invalid_symbol_list_is_400_and_set_kept(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim()
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US"))["ret"] == 200
        for data in (
            {"symbol_list": []},
            {},
            {"symbol_list": "AAPL.US"},
            {"symbol_list": [{"cod": "AAPL.US"}]},
            {"symbol_list": ["AAPL.US"]},
            MISSING,
            [1],
        ):
            reply = await client.request(22004, data)
            assert (reply["ret"], reply["cmd_id"], reply["msg"]) == (400, 22005, "request data param invalid")
        bad_depth = await client.request(22002, {"symbol_list": [{"code": "700.HK", "depth_level": "5"}]})
        assert (bad_depth["ret"], bad_depth["cmd_id"]) == (400, 22003)
        assert conn_state(sim)["trades"] == ["AAPL.US"]
        assert (await client.heartbeat())["ret"] == 200


# --- Subscriptions ------------------------------------------------------------------------------------------


class TestOverwrite:
    async def test_22004_replaces_the_whole_trade_set(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim(tick_rate=40)
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US", "TSLA.US", "MSFT.US"))["ret"] == 200
        first = await client.pushes_for(150 * MS)
        assert {f["data"]["code"] for f in first} == {"AAPL.US", "TSLA.US", "MSFT.US"}
        assert (await client.trades("TSLA.US", "MSFT.US", "NVDA.US"))["ret"] == 200
        assert conn_state(sim)["trades"] == ["MSFT.US", "NVDA.US", "TSLA.US"]
        after = await client.pushes_for(200 * MS)
        assert {f["data"]["code"] for f in after} == {"TSLA.US", "MSFT.US", "NVDA.US"}

    async def test_600_for_unknown_or_other_endpoint_code_keeps_previous_set(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim()
        stock = await open_client(sim.url("stock"))
        fx = await open_client(sim.url("forex_crypto"))
        assert (await stock.trades("AAPL.US"))["ret"] == 200
        for codes in (("TSLA.US", "EURUSD"), ("ZZZZ.US",), ("aapl.us",)):
            reply = await stock.trades(*codes)
            assert (reply["ret"], reply["msg"], reply["cmd_id"]) == (600, "code invalid", 22005)
        book = await stock.books(("BTCUSDT", 5))
        assert (book["ret"], book["cmd_id"]) == (600, 22003)
        assert (await fx.trades("AAPL.US"))["ret"] == 600
        assert conn_state(sim, 1)["trades"] == ["AAPL.US"]
        assert conn_state(sim, 1)["refused"] == {"600": 4}

    async def test_code_limit_keeps_first_n_after_dedup(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim(max_codes=2)
        client = await open_client(sim.url("stock"))
        assert (await client.trades("TSLA.US", "TSLA.US", "AAPL.US", "MSFT.US"))["ret"] == 200
        assert (await client.books(("700.HK", 5), ("9988.HK", None), ("1288.HK", None)))["ret"] == 200
        state = conn_state(sim)
        assert (state["trades"], state["books"]) == (["AAPL.US", "TSLA.US"], ["700.HK", "9988.HK"])

    async def test_free_plan_limits(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim(plan="free")
        assert sim.limits == PlanLimits(max_connections=1, max_codes=5)
        client = await open_client(sim.url("stock"))
        codes = ["AAPL.US", "TSLA.US", "MSFT.US", "NVDA.US", "AMZN.US", "GOOGL.US"]
        assert (await client.trades(*codes))["ret"] == 200
        assert conn_state(sim)["trades"] == sorted(codes[:5])

    async def test_cancel_types(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim(tick_rate=40, book_rate=40)
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US"))["ret"] == 200
        assert (await client.books(("AAPL.US", None)))["ret"] == 200
        cancelled = await client.cancel(1)
        envelope_ok(cancelled, ret=200, cmd_id=22007, seq_id=3, trace="trace-3")
        assert (conn_state(sim)["trades"], conn_state(sim)["books"]) == (["AAPL.US"], [])
        assert {f["cmd_id"] for f in await client.pushes_for(150 * MS)} == {22998}
        assert (await client.cancel(2))["ret"] == 200
        assert conn_state(sim)["trades"] == []
        assert await client.pushes_for(150 * MS) == []
        assert (await client.trades("AAPL.US"))["ret"] == 200
        assert (await client.books(("AAPL.US", None)))["ret"] == 200
        assert (await client.cancel(0))["ret"] == 200
        assert (conn_state(sim)["trades"], conn_state(sim)["books"]) == ([], [])
        for bad in (3, "1", None, -1):
            reply = await client.cancel(bad)
            assert (reply["ret"], reply["cmd_id"]) == (400, 22007)


class TestBook:
    async def test_depth_per_asset_class_and_forex_has_no_volume(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim(book_rate=40)
        stock = await open_client(sim.url("stock"))
        fx = await open_client(sim.url("forex_crypto"))
        assert (
            await stock.books(
                ("700.HK", 10), ("600519.SH", 20), ("AAPL.US", 5), ("1288.HK", None), ("000001.SZ", 3)
            )
        )["ret"] == 200
        assert (await fx.books(("EURUSD", 5), ("BTCUSDT", 5), ("XAUUSD", None)))["ret"] == 200
        expected = {
            "700.HK": 10,
            "600519.SH": 5,
            "AAPL.US": 1,
            "1288.HK": 1,
            "000001.SZ": 3,
            "EURUSD": 1,
            "BTCUSDT": 5,
            "XAUUSD": 1,
        }
        seen: dict[str, dict[str, Any]] = {}
        for client in (stock, fx):
            for frame in await client.pushes_for(200 * MS):
                assert frame["cmd_id"] == 22999
                seen[frame["data"]["code"]] = frame["data"]
        assert set(seen) == set(expected)
        for code, data in seen.items():
            assert len(data["bids"]) == len(data["asks"]) == expected[code], code
            assert Decimal(data["bids"][0]["price"]) < Decimal(data["asks"][0]["price"])
            bids = [Decimal(level["price"]) for level in data["bids"]]
            asks = [Decimal(level["price"]) for level in data["asks"]]
            assert bids == sorted(bids, reverse=True)
            assert asks == sorted(asks)
            for level in data["bids"] + data["asks"]:
                assert DECIMAL.match(level["price"])
                if code in ("EURUSD", "XAUUSD"):
                    assert level["volume"] == ""
                else:
                    assert DECIMAL.match(level["volume"]), (code, level)
            assert isinstance(data["seq"], int)
            assert abs(data["tick_time"] - time.time() * 1000) < 5000


# --- Limits and rates ---------------------------------------------------------------------------------------


class TestLimits:
    async def test_each_token_has_its_own_connections_and_a_revoked_one_gets_401(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim(max_connections=1, more_tokens=("second-token",))
        second_url = f"ws://127.0.0.1:{sim.port}{STOCK_PATH}?token=second-token"
        first = await open_client(sim.url("stock"))
        second = await open_client(second_url)
        assert (await first.heartbeat())["ret"] == 200
        assert (await second.heartbeat())["ret"] == 200, "the second token has a quota of its own"
        assert [c["token"] for c in sim.state()["connections"]] == [0, 1]
        third = await open_client(second_url)
        assert (await third.recv())["ret"] == 606
        assert sim.revoke(1) == 1
        assert (await second.recv())["ret"] == 401
        with pytest.raises(ConnectionClosed):
            await second.recv()
        again = await open_client(second_url)
        assert (await again.recv())["ret"] == 401
        assert (await first.heartbeat())["ret"] == 200, "the first token still serves"

    async def test_connections_beyond_limit_get_606_and_close(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim(max_connections=1)
        first = await open_client(sim.url("stock"))
        second = await open_client(sim.url("stock"))
        frame = await second.recv()
        assert frame == {
            "ret": 606,
            "msg": "too many requests and connection will be closed",
            "cmd_id": 0,
            "seq_id": 0,
            "trace": "",
            "data": {},
        }
        with pytest.raises(ConnectionClosed):
            await second.recv()
        assert second.ws.close_code == 1008
        other_path = await open_client(sim.url("forex_crypto"))
        assert (await other_path.heartbeat())["ret"] == 200
        assert (await first.heartbeat())["ret"] == 200
        assert sim.state()["totals"]["refused_606"] == 1
        await first.ws.close()
        await wait_for(lambda: len(sim.state()["connections"]) == 1)
        third = await open_client(sim.url("stock"))
        assert (await third.heartbeat())["ret"] == 200

    async def test_429_within_connection_gap_then_accepted(self, make_sim: MakeSim, open_client: Any) -> None:
        clock = FakeClock(100.0)
        sim = await make_sim(conn_gap_s=0.3, clock=clock)
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US"))["ret"] == 200
        refused = await client.trades("TSLA.US")
        assert (refused["ret"], refused["msg"], refused["cmd_id"]) == (429, "rate limit", 22005)
        assert (await client.cancel(2))["ret"] == 429
        assert (await client.heartbeat())["ret"] == 200  # heartbeats are not rate limited
        clock.now = 100.2
        assert (await client.books(("700.HK", None)))["ret"] == 429
        assert conn_state(sim)["trades"] == ["AAPL.US"]
        clock.now = 100.299
        assert (await client.trades("TSLA.US"))["ret"] == 429  # the gap counts from the accepted one
        clock.now = 100.32  # refused requests did not restart the clock
        assert (await client.trades("TSLA.US"))["ret"] == 200
        state = conn_state(sim)
        assert state["trades"] == ["TSLA.US"]
        assert state["requests"] == [
            [100.0, 22004, 200],
            [100.0, 22004, 429],
            [100.0, 22006, 429],
            [100.2, 22002, 429],
            [100.299, 22004, 429],
            [100.32, 22004, 200],
        ]
        assert state["refused"] == {"429": 4}
        assert max_requests_in_window(state, 1.0) == 6
        assert max_requests_in_window(state, 0.1) == 3

    async def test_token_gap_across_connections(self, make_sim: MakeSim, open_client: Any) -> None:
        clock = FakeClock(50.0)
        sim = await make_sim(token_gap_s=0.3, clock=clock)
        one = await open_client(sim.url("stock"))
        two = await open_client(sim.url("stock"))
        fx = await open_client(sim.url("forex_crypto"))
        assert (await one.trades("AAPL.US"))["ret"] == 200
        clock.now = 50.29
        assert (await two.trades("TSLA.US"))["ret"] == 429
        assert (await fx.trades("EURUSD"))["ret"] == 200  # the other path is counted separately
        clock.now = 50.32
        assert (await two.trades("TSLA.US"))["ret"] == 200
        assert (await one.trades("MSFT.US"))["ret"] == 429
        assert sim.state()["totals"]["429"] == 2


# --- Pushes -------------------------------------------------------------------------------------------------


class TestPushes:
    async def test_trade_fields_exact_decimals_and_increasing_seq(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim(tick_rate=50)
        stock = await open_client(sim.url("stock"))
        fx = await open_client(sim.url("forex_crypto"))
        assert (await stock.trades("AAPL.US", "700.HK", "600519.SH"))["ret"] == 200
        assert (await fx.trades("EURUSD", "BTCUSDT", "XAUUSD"))["ret"] == 200
        stock_frames, fx_frames = await asyncio.gather(stock.pushes_for(300 * MS), fx.pushes_for(300 * MS))
        frames = stock_frames + fx_frames
        last: dict[str, int] = {}
        for frame in frames:
            assert frame["cmd_id"] == 22998
            data = frame["data"]
            assert set(data) == {
                "code",
                "seq",
                "tick_time",
                "price",
                "volume",
                "turnover",
                "trade_direction",
                "sent_ns",
            }
            for key in ("price", "volume", "turnover"):
                assert isinstance(data[key], str), data
                assert DECIMAL.match(data[key]), data
            assert Decimal(data["price"]) * Decimal(data["volume"]) == Decimal(data["turnover"])
            assert data["trade_direction"] in (0, 1, 2)
            assert abs(data["tick_time"] - time.time() * 1000) < 5000  # milliseconds, not seconds
            assert isinstance(data["sent_ns"], int)
            assert abs(data["sent_ns"] - time.time_ns()) < 5 * 10**9
            assert data["seq"] > last.get(data["code"], 0)
            last[data["code"]] = data["seq"]
            if data["code"] in ("EURUSD", "XAUUSD"):
                assert data["volume"] == "0"
        assert set(last) == {"AAPL.US", "700.HK", "600519.SH", "EURUSD", "BTCUSDT", "XAUUSD"}
        assert min(last.values()) >= 5
        assert sim.state()["totals"]["pushes"] >= len(frames)

    async def test_snapshot_repeats_last_tick_after_resubscribe(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim(tick_rate=40, book_rate=40)
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US", "TSLA.US"))["ret"] == 200
        assert (
            await client.books(
                ("700.HK", 5),
            )
        )["ret"] == 200
        await asyncio.sleep(120 * MS)
        assert (await client.trades("TSLA.US"))["ret"] == 200  # AAPL.US has no subscriber now: it stops
        trades = [f["data"]["seq"] for f in client.before if f["data"]["code"] == "AAPL.US"]
        books = [f["data"]["seq"] for f in client.before if f["data"]["code"] == "700.HK"]
        assert (await client.cancel(1))["ret"] == 200
        books += [f["data"]["seq"] for f in client.before if f["data"]["code"] == "700.HK"]
        assert trades
        assert books
        assert (await client.trades("TSLA.US", "AAPL.US"))["ret"] == 200
        snapshot = await client.push()  # written right after the response: nothing in between
        assert (snapshot["cmd_id"], snapshot["data"]["code"], snapshot["data"]["seq"]) == (
            22998,
            "AAPL.US",
            trades[-1],
        )
        assert (
            await client.books(
                ("700.HK", 5),
            )
        )["ret"] == 200
        book = await client.push()
        assert (book["cmd_id"], book["data"]["code"], book["data"]["seq"]) == (22999, "700.HK", books[-1])
        assert len(book["data"]["bids"]) == 5
        after = client.before + await client.pushes_for(100 * MS)
        later = [f["data"]["seq"] for f in after if f["data"]["code"] == "AAPL.US"]
        assert later
        assert later[0] == trades[-1] + 1

    async def test_seq_continues_across_reconnect(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim(tick_rate=40)
        first = await open_client(sim.url("forex_crypto"))
        assert (await first.trades("ETHUSDT"))["ret"] == 200
        seqs = [f["data"]["seq"] for f in await first.pushes_for(100 * MS)]
        await first.ws.close()
        second = await open_client(sim.url("forex_crypto"))
        assert (await second.trades("ETHUSDT"))["ret"] == 200
        again = [(await second.push())["data"]["seq"] for _ in range(3)]
        assert again[0] >= seqs[-1]  # the snapshot (a duplicate) or later
        assert again[1] > again[0]
        assert again[2] > again[1]


# --- Faults -------------------------------------------------------------------------------------------------


class TestFaults:
    async def test_stall_reads_and_pongs_but_sends_nothing_and_never_closes(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim(tick_rate=40, heartbeat_timeout=0.5)
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US"))["ret"] == 200
        await client.push()
        assert sim.inject("stall", path="stock") == [1]
        await client.quiet()
        await client.ws.send(json.dumps({"cmd_id": 22000, "seq_id": 99, "trace": "", "data": {}}))
        pong = await client.ws.ping()
        await asyncio.wait_for(pong, 500 * MS)  # WebSocket pings are still answered
        assert await client.pushes_for(1000 * MS) == []  # past the 0.5 s heartbeat timeout, yet open
        assert client.ws.state is State.OPEN
        state = conn_state(sim)
        assert (state["open"], state["faults"], state["heartbeats"]) == (True, ["stall"], 0)
        assert sim.inject("clear") == [1]
        assert (await client.heartbeat())["ret"] == 200
        assert (await client.push())["data"]["code"] == "AAPL.US"

    async def test_blackhole_leaves_pings_unanswered(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim(tick_rate=40, heartbeat_timeout=0.5)
        client = await open_client(sim.url("forex_crypto"))
        assert (await client.trades("EURUSD"))["ret"] == 200
        assert sim.inject("blackhole", conn=1) == [1]
        await client.quiet()
        pong = await client.ws.ping()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(pong), 1000 * MS)
        assert await client.pushes_for(1 * MS) == []
        assert client.ws.state is State.OPEN
        assert conn_state(sim)["faults"] == ["blackhole"]
        assert sim.inject("clear", conn=1) == [1]
        await asyncio.wait_for(pong, 1000 * MS)  # reading resumes: the old ping is answered
        assert (await client.heartbeat())["ret"] == 200

    async def test_drop_closes_without_a_close_frame(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim()
        client = await open_client(sim.url("stock"))
        assert (await client.heartbeat())["ret"] == 200
        assert sim.inject("drop") == [1]
        with pytest.raises(ConnectionClosedError) as info:
            await client.recv()
        assert info.value.rcvd is None
        await wait_for(lambda: sim.state()["connections"] == [])
        closed = sim.state()["closed"]
        assert [(c["id"], c["open"]) for c in closed] == [(1, False)]

    async def test_ghost_pushes_codes_not_subscribed(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim()
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US"))["ret"] == 200
        assert sim.inject("ghost", count=3) == [1]
        default = [await client.push() for _ in range(3)]
        assert {f["data"]["code"] for f in default} == {"TSLA.US"}  # first known code not subscribed
        assert [f["data"]["seq"] for f in default] == sorted({f["data"]["seq"] for f in default})
        assert sim.inject("ghost", code="GHOST9") == [1]
        assert [(await client.push())["data"]["code"] for _ in range(5)] == ["GHOST9"] * 5
        assert conn_state(sim)["pushes"] == 8

    @pytest.mark.parametrize("kind", ["json", "fields", "types"])
    async def test_malformed_kinds(self, make_sim: MakeSim, open_client: Any, kind: str) -> None:
        sim = await make_sim()
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US"))["ret"] == 200
        assert sim.inject("malformed", kind=kind) == [1]
        raw = await asyncio.wait_for(client.ws.recv(), 2000 * MS)
        if kind == "json":
            with pytest.raises(json.JSONDecodeError):
                json.loads(raw)
        else:
            frame = json.loads(raw)
            assert frame["cmd_id"] == 22998
            if kind == "fields":
                assert "price" not in frame["data"]
                assert "volume" in frame["data"]
            else:
                assert isinstance(frame["data"]["price"], float)
        assert (await client.heartbeat())["ret"] == 200  # the server side is unharmed

    async def test_burst_delivers_every_frame_in_seq_order(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim(tick_rate=40)
        client = await open_client(sim.url("stock"))
        codes = ("AAPL.US", "700.HK", "600519.SH")
        assert (await client.trades(*codes))["ret"] == 200
        await asyncio.sleep(60 * MS)
        assert sim.inject("burst", count=20_000) == [1]
        await client.quiet(1 * MS)  # normal ticks written before the burst
        count = 0
        last = dict.fromkeys(codes, 0)
        while count < 20_000:
            raw = await asyncio.wait_for(client.ws.recv(decode=False), 5000 * MS)
            data = json.loads(raw)["data"]
            assert data["seq"] > last[data["code"]]
            last[data["code"]] = data["seq"]
            count += 1
        await wait_for(lambda: "burst" not in conn_state(sim)["faults"])
        assert all(seq >= 6666 for seq in last.values())

    async def test_burst_count_exact_without_ticks_and_paced_by_rate(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim()
        client = await open_client(sim.url("forex_crypto"))
        assert (await client.trades("BTCUSDT", "ETHUSDT"))["ret"] == 200
        assert sim.inject("burst", count=5000) == [1]
        frames = [await client.push() for _ in range(5000)]
        assert await client.pushes_for(100 * MS) == []  # exactly count frames
        assert [f["data"]["seq"] for f in frames if f["data"]["code"] == "ETHUSDT"] == list(range(1, 2501))
        started = time.monotonic()
        assert sim.inject("burst", count=100, rate=1000) == [1]
        paced = [await client.push() for _ in range(100)]
        assert time.monotonic() - started >= 80 * MS
        assert [f["data"]["seq"] for f in paced if f["data"]["code"] == "BTCUSDT"] == list(range(2501, 2551))
        assert (await client.cancel(0))["ret"] == 200
        assert sim.inject("burst") == []  # nothing subscribed: nothing to burst
        assert conn_state(sim)["pushes"] == 5100

    async def test_refuse_next_new_connections(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim()
        assert sim.inject("refuse", path="stock", count=2) == []
        for _ in range(2):
            refused = await open_client(sim.url("stock"))
            assert (await refused.recv())["ret"] == 606
            with pytest.raises(ConnectionClosed):
                await refused.recv()
        fx = await open_client(sim.url("forex_crypto"))
        assert (await fx.heartbeat())["ret"] == 200
        ok = await open_client(sim.url("stock"))
        assert (await ok.heartbeat())["ret"] == 200
        assert sim.inject("refuse") == []  # any path
        refused = await open_client(sim.url("forex_crypto"))
        assert (await refused.recv())["ret"] == 606
        assert sim.state()["totals"]["refused_606"] == 3

    async def test_reply_answers_next_subscription_then_clears(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim()
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US"))["ret"] == 200
        assert sim.inject("reply", ret=604) == [1]
        assert conn_state(sim)["faults"] == ["reply"]
        assert (await client.heartbeat())["ret"] == 200  # not a subscription request
        reply = await client.trades("AAPL.US", "TSLA.US")
        assert (reply["ret"], reply["msg"], reply["cmd_id"]) == (604, "code unauthorized", 22005)
        assert conn_state(sim)["trades"] == ["AAPL.US"]
        assert (await client.trades("AAPL.US", "TSLA.US"))["ret"] == 200
        assert sim.inject("reply", ret="603", msg="custom words") == [1]
        assert (await client.cancel(0))["msg"] == "custom words"
        assert sim.inject("reply", ret=429) == [1]
        assert sim.inject("clear") == [1]
        assert (await client.cancel(0))["ret"] == 200
        assert conn_state(sim)["refused"] == {"604": 1, "603": 1}

    async def test_targeting_by_path_and_conn_and_bad_names(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim()
        await open_client(sim.url("stock"))
        await open_client(sim.url("forex_crypto"))
        await open_client(sim.url("stock"))
        await wait_for(lambda: len(sim.state()["connections"]) == 3)
        assert sim.inject("stall", path=STOCK_PATH) == [1, 3]
        assert sim.inject("clear", conn=3) == [3]
        assert sim.inject("stall", path="forex_crypto", conn=1) == []
        assert sim.inject("clear") == [1]  # only connection 1 still had a fault
        with pytest.raises(ValueError, match="unknown fault"):
            sim.inject("explode")
        with pytest.raises(ValueError, match="unknown path"):
            sim.inject("stall", path="/nope")
        with pytest.raises(ValueError, match="no parameter"):
            sim.inject("drop", count=3)


class TestCodeFaults:
    """Per-code faults: mute, seq_reset, tick_time_skew, corrupt, and clear with a code."""

    async def test_mute_silences_one_code_until_clear(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim(tick_rate=40)
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US", "TSLA.US"))["ret"] == 200
        assert sim.inject("mute", code="AAPL.US") == [1]
        assert sim.state()["code_faults"]["muted"] == ["AAPL.US"]
        await client.quiet()
        codes = {f["data"]["code"] for f in await client.pushes_for(300 * MS)}
        assert codes == {"TSLA.US"}  # the socket is alive, the one code is silent
        assert sim.inject("clear", code="AAPL.US") == [1]
        await client.quiet()
        codes = {f["data"]["code"] for f in await client.pushes_for(300 * MS)}
        assert codes == {"AAPL.US", "TSLA.US"}
        assert sim.state()["code_faults"]["muted"] == []

    async def test_mute_silences_the_order_book_of_a_code_too(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim(book_rate=40)
        client = await open_client(sim.url("forex_crypto"))
        assert (await client.books(("BTCUSDT", None), ("ETHUSDT", None)))["ret"] == 200
        assert sim.inject("mute", code="BTCUSDT") == [1]  # held as a book only: still its connection
        await client.quiet()
        assert {f["data"]["code"] for f in await client.pushes_for(300 * MS)} == {"ETHUSDT"}
        assert sim.inject("clear", code="BTCUSDT") == [1]
        await client.quiet()
        assert {f["data"]["code"] for f in await client.pushes_for(300 * MS)} == {"BTCUSDT", "ETHUSDT"}

    async def test_a_plain_clear_lifts_code_faults_too(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim()
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US"))["ret"] == 200
        sim.inject("mute", code="AAPL.US")
        sim.inject("tick_time_skew", code="TSLA.US", skew_s=5)
        sim.inject("clear")
        assert sim.state()["code_faults"] == {"muted": [], "tick_time_skew_ms": {}}

    async def test_seq_reset_restarts_at_one_with_tick_time_going_on(
        self, make_sim: MakeSim, open_client: Any
    ) -> None:
        sim = await make_sim(tick_rate=40)
        client = await open_client(sim.url("forex_crypto"))
        assert (await client.trades("EURUSD"))["ret"] == 200
        before = [await client.push() for _ in range(3)]
        assert before[-1]["data"]["seq"] >= 3
        assert sim.inject("seq_reset", code="EURUSD") == [1]
        after = [f["data"] for f in await client.pushes_for(200 * MS)]
        restart = next(i for i, d in enumerate(after) if d["seq"] == 1)
        assert [d["seq"] for d in after[restart:]] == list(range(1, len(after) - restart + 1))
        assert after[restart]["tick_time"] >= before[-1]["data"]["tick_time"]

    async def test_tick_time_skew_moves_tick_time_only(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim(tick_rate=40)
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US"))["ret"] == 200
        assert sim.inject("tick_time_skew", code="AAPL.US", skew_s="-7200") == [1]
        await client.quiet()
        data = (await client.push())["data"]
        assert abs(data["tick_time"] - (time.time_ns() // 1_000_000 - 7_200_000)) < 60_000
        assert abs(data["sent_ns"] // 1_000_000 - time.time_ns() // 1_000_000) < 60_000
        assert sim.state()["code_faults"]["tick_time_skew_ms"] == {"AAPL.US": -7_200_000}

    async def test_a_shifted_clock_moves_every_tick_time(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim(tick_rate=40, clock_offset_s=86_400.0)  # tomorrow, as --clock-offset 86400
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US"))["ret"] == 200
        await client.quiet()
        data = (await client.push())["data"]
        assert abs(data["tick_time"] - (time.time_ns() // 1_000_000 + 86_400_000)) < 60_000
        assert sim.state()["clock_offset_s"] == 86_400.0
        assert sim.inject("clock", offset_s="-3600") == []  # the admin command: an hour ago from now on
        await client.quiet()
        data = (await client.push())["data"]
        assert abs(data["tick_time"] - (time.time_ns() // 1_000_000 - 3_600_000)) < 60_000
        assert abs(data["sent_ns"] // 1_000_000 - time.time_ns() // 1_000_000) < 60_000
        assert sim.state()["clock_offset_s"] == -3600.0

    async def test_corrupt_pushes_bad_prices_at_once(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim()
        client = await open_client(sim.url("stock"))
        assert (await client.trades("AAPL.US"))["ret"] == 200
        await client.quiet()
        assert sim.inject("corrupt", code="AAPL.US", price="-1", volume="-5", count=2) == [1]
        frames = [(await client.push())["data"] for _ in range(2)]
        assert [(d["price"], d["volume"]) for d in frames] == [("-1", "-5"), ("-1", "-5")]
        assert frames[1]["seq"] == frames[0]["seq"] + 1
        assert sim.inject("corrupt", code="AAPL.US") == [1]
        assert (await client.push())["data"]["price"] == "0"
        assert (await client.trades("AAPL.US"))["ret"] == 200  # the snapshot does not repeat a corrupt trade
        assert all(f["data"]["price"] not in ("0", "-1") for f in client.before)

    async def test_code_faults_need_a_known_code(self, make_sim: MakeSim) -> None:
        sim = await make_sim()
        with pytest.raises(ValueError, match="needs a code"):
            sim.inject("mute")
        with pytest.raises(ValueError, match="unknown code 'NOPE'"):
            sim.inject("seq_reset", code="NOPE")
        with pytest.raises(ValueError, match="no parameter"):
            sim.inject("mute", code="AAPL.US", count=2)
        assert sim.inject("mute", code="AAPL.US") == []  # nobody holds it: no connection affected


# --- HTTP admin, secrecy, thread and CLI --------------------------------------------------------------------


def http_get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http on 127.0.0.1
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


class TestAdmin:
    async def test_state_and_fault_over_http(self, make_sim: MakeSim, open_client: Any) -> None:
        sim = await make_sim()
        client = await open_client(sim.url("stock"))
        fx = await open_client(sim.url("forex_crypto"))
        assert (await client.trades("AAPL.US"))["ret"] == 200
        assert (await fx.heartbeat())["ret"] == 200
        status, state = await asyncio.to_thread(http_get, sim.admin_url("state"))
        assert status == 200
        assert [(c["id"], c["path"], c["trades"]) for c in state["connections"]] == [
            (1, STOCK_PATH, ["AAPL.US"]),
            (2, FOREX_CRYPTO_PATH, []),
        ]
        assert set(state) == {"connections", "closed", "totals", "code_faults", "clock_offset_s"}
        assert set(state["connections"][0]) == {
            "id",
            "path",
            "peer",
            "open",
            "trades",
            "books",
            "faults",
            "heartbeats",
            "pushes",
            "requests",
            "refused",
            "token",
        }
        assert {"connections_opened", "refused_606", "pushes", "429", "400", "600"} <= set(state["totals"])
        status, body = await asyncio.to_thread(
            http_get, sim.admin_url("fault", name="ghost", path=STOCK_PATH, conn=1, count=2, code="MSFT.US")
        )
        assert (status, body) == (200, {"affected": [1]})
        assert [(await client.push())["data"]["code"] for _ in range(2)] == ["MSFT.US", "MSFT.US"]
        status, body = await asyncio.to_thread(
            http_get, sim.admin_url("fault", name="drop", path="forex_crypto")
        )
        assert (status, body) == (200, {"affected": [2]})
        status, _ = await asyncio.to_thread(http_get, sim.admin_url("fault", name="explode"))
        assert status == 400
        status, body = await asyncio.to_thread(http_get, sim.admin_url("fault", name="mute", code="AAPL.US"))
        assert (status, body) == (200, {"affected": [1]})
        status, body = await asyncio.to_thread(http_get, sim.admin_url("fault", name="mute"))
        assert (status, body) == (400, {"error": "fault mute needs a code"})
        status, body = await asyncio.to_thread(http_get, sim.admin_url("fault", name="clear", code="AAPL.US"))
        assert (status, body) == (200, {"affected": [1]})
        assert sim.state()["code_faults"]["muted"] == []
        status, _ = await asyncio.to_thread(http_get, sim.admin_url("nothing"))
        assert status == 404

    async def test_admin_requires_the_token(self, make_sim: MakeSim) -> None:
        sim = await make_sim()
        for query in ("?token=wrong", "", f"?token={TOKEN}x"):
            status, _ = await asyncio.to_thread(http_get, f"http://127.0.0.1:{sim.port}/admin/state{query}")
            assert status == 401
        status, _ = await asyncio.to_thread(
            http_get, f"http://127.0.0.1:{sim.port}/admin/fault?name=refuse&token=nope"
        )
        assert status == 401
        assert sim.state()["totals"]["refused_606"] == 0


class TestSecrecy:
    async def test_token_never_in_repr_state_logs_or_stdout(
        self,
        make_sim: MakeSim,
        open_client: Any,
        caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        caplog.set_level(logging.DEBUG)  # websockets logs request lines, query string included, at DEBUG
        sim = await make_sim()
        assert TOKEN not in repr(sim)
        assert "***" in repr(sim)
        assert TOKEN in sim.url("stock")
        client = await open_client(sim.url("stock"))
        assert (await client.heartbeat())["ret"] == 200
        bad = await open_client(f"ws://127.0.0.1:{sim.port}{STOCK_PATH}?token=wrong")
        assert (await bad.recv())["ret"] == 401
        await asyncio.to_thread(http_get, sim.admin_url("state"))
        sim.inject("drop")
        await wait_for(lambda: sim.state()["connections"] == [])
        ours = [r for r in caplog.records if r.name.startswith("tickvisor")]
        text = "\n".join(r.getMessage() for r in ours)
        assert ours
        assert TOKEN not in text
        assert "token=***" in text  # the websockets request line was logged, redacted
        assert TOKEN not in json.dumps(sim.state())
        out, err = capsys.readouterr()
        assert TOKEN not in out
        assert TOKEN not in err


def test_simulator_thread_for_sync_callers() -> None:
    with SimulatorThread(token=TOKEN, tick_rate=0, conn_gap_s=0, token_gap_s=0, codes=0) as sim:
        assert sim.port > 0
        assert TOKEN not in repr(sim)
        with sync_connect(sim.url("forex_crypto"), open_timeout=2) as ws:
            ws.send(json.dumps({"cmd_id": 22000, "seq_id": 1, "trace": "sync", "data": {}}))
            assert json.loads(ws.recv(timeout=2))["cmd_id"] == 22001
            assert [c["heartbeats"] for c in sim.state()["connections"]] == [1]
            assert sim.inject("drop") == [1]
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=2)
        port = sim.port
    with pytest.raises(OSError):  # noqa: PT011 - refused or reset: the OS chooses the OSError
        sync_connect(f"ws://127.0.0.1:{port}{STOCK_PATH}?token={TOKEN}", open_timeout=1)


ENTRIES = {"script": (str(REPO / "scripts" / "simulator.py"),), "module": ("-m", "actors.sim")}


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
async def test_cli_prints_listening_serves_and_exits_0_on_signal(
    stop_signal: signal.Signals, entry: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *ENTRIES[entry],
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--token",
        TOKEN,
        "--heartbeat-timeout",
        "5",
        "--tick-rate",
        "20",
        "--plan",
        "basic",
        "--log-level",
        "DEBUG",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        match = re.fullmatch(r"SIMULATOR LISTENING 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        port = int(match.group(1))
        async with connect(f"ws://127.0.0.1:{port}{STOCK_PATH}?token={TOKEN}", ping_interval=None) as ws:
            client = Client(ws)
            assert (await client.heartbeat())["ret"] == 200
            assert (await client.trades("AAPL.US"))["ret"] == 200
            assert (await client.push())["data"]["code"] == "AAPL.US"
            async with connect(f"ws://127.0.0.1:{port}{STOCK_PATH}?token={TOKEN}") as extra:  # basic: 1 conn
                assert json.loads(await asyncio.wait_for(extra.recv(), 2))["ret"] == 606
            proc.send_signal(stop_signal)
            assert await asyncio.wait_for(proc.wait(), 5) == 0
        rest, err = await proc.stdout.read(), await proc.stderr.read()
        assert rest == b""  # exactly one line on stdout
        assert TOKEN.encode() not in err
        assert b"***" in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_the_simulator_imports_nothing_of_actors_outside_actors_sim() -> None:
    # A client bug and a server bug must not cancel out: the server shares no code with the client.
    package = REPO / "actors" / "sim"
    outside = {}
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["(relative)"]
            bad = [
                n
                for n in names
                if n.split(".")[0] in {"actors", "scripts", "tests"} and not n.startswith("actors.sim")
            ]
            if bad:
                outside[path.name] = bad
    assert outside == {}
