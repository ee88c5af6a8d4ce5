"""The market: asset classes, the codes of each endpoint, and their prices and sequence numbers."""

# Rules of this module:
# 1. Market owns prices and per-code sequence numbers. Prices are integers of 10**-dp units, so every
#    price, volume and turnover string is exact.

from __future__ import annotations

import dataclasses
import enum
import random
from collections.abc import Mapping, Sequence

from actors.sim.frames import BookData, Level, TradeData
from actors.sim.protocol import FOREX_CRYPTO_PATH, STOCK_PATH

# --- Products ------------------------------------------------------------------------------------------


class AssetClass(enum.IntEnum):
    """What a code trades as; decides book depth, decimals and whether volumes exist."""

    US = 1
    HK = 2
    CN = 3  # A-shares, .SH and .SZ
    FX = 4  # forex, precious metals, crude oil, CFD indices: no volume
    CRYPTO = 5


BOOK_DEPTH_MAX: Mapping[AssetClass, int] = {  # PROTOCOL.md "22999 order-book push"
    AssetClass.US: 1,
    AssetClass.HK: 10,
    AssetClass.CN: 5,
    AssetClass.FX: 1,
    AssetClass.CRYPTO: 5,
}

# Base products and their opening prices; the decimals of each string are the code's price decimals.
BASE_PRICES: Mapping[str, Mapping[str, str]] = {
    STOCK_PATH: {
        "AAPL.US": "189.2300",
        "TSLA.US": "248.5000",
        "MSFT.US": "415.1000",
        "NVDA.US": "121.4400",
        "AMZN.US": "186.7500",
        "GOOGL.US": "171.3300",
        "META.US": "512.6000",
        "700.HK": "380.200",
        "1288.HK": "3.850",
        "9988.HK": "82.450",
        "600519.SH": "1520.00",
        "601318.SH": "42.35",
        "000627.SZ": "3.12",
        "000001.SZ": "10.85",
    },
    FOREX_CRYPTO_PATH: {
        "EURUSD": "1.08350",
        "USDJPY": "151.420",
        "GBPUSD": "1.26710",
        "AUDUSD": "0.65830",
        "USDCHF": "0.90120",
        "XAUUSD": "2345.60",
        "XAGUSD": "29.125",
        "USOIL": "78.45",
        "UKOIL": "82.90",
        "US500": "5210.5",
        "BTCUSDT": "67250.50",
        "ETHUSDT": "3512.25",
        "SOLUSDT": "152.40",
    },
}


def generated_codes(path: str, count: int) -> list[str]:
    """The ``--codes`` extra codes of an endpoint path: ``S0001.US``.. or ``C0001USDT``.."""
    if path == STOCK_PATH:
        return [f"S{i:04d}.US" for i in range(1, count + 1)]
    return [f"C{i:04d}USDT" for i in range(1, count + 1)]


def asset_class(code: str) -> AssetClass:
    """Classify a code by its suffix (codes of both paths are distinct)."""
    if code.endswith(".US"):
        return AssetClass.US
    if code.endswith(".HK"):
        return AssetClass.HK
    if code.endswith((".SH", ".SZ")):
        return AssetClass.CN
    if code.endswith("USDT"):
        return AssetClass.CRYPTO
    return AssetClass.FX


def format_units(units: int, dp: int) -> str:
    """Exact decimal string of ``units * 10**-dp`` (units >= 0).

    ``format_units(1892300, 4) == "189.2300"``.
    """
    if dp == 0:
        return str(units)
    digits = str(units).rjust(dp + 1, "0")
    return f"{digits[:-dp]}.{digits[-dp:]}"


def parse_units(text: str) -> tuple[int, int]:
    """Inverse of format_units: ``"189.2300"`` -> ``(1892300, 4)``."""
    whole, _, frac = text.partition(".")
    return int(whole + frac), len(frac)


# --- Market: prices and sequence numbers ----------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Instrument:
    """Random-walk state of one code; prices in 10**-price_dp units."""

    code: str
    cls: AssetClass
    price: int
    price_dp: int
    step: int  # largest move per tick, in price units
    trade_seq: int = 0
    book_seq: int = 0
    last_trade: TradeData | None = None
    last_book: BookData | None = None


VOLUME_DP: Mapping[AssetClass, int] = {  # decimals of trade and book volumes
    AssetClass.US: 0,
    AssetClass.HK: 0,
    AssetClass.CN: 0,
    AssetClass.FX: 0,
    AssetClass.CRYPTO: 4,
}
TRADE_DIRECTIONS = (0, 1, 1, 2, 2)  # PROTOCOL.md: 0 default, 1 buy, 2 sell; mostly buys and sells
LOT: Mapping[AssetClass, int] = {
    AssetClass.US: 1,
    AssetClass.HK: 100,
    AssetClass.CN: 100,
    AssetClass.CRYPTO: 1,
}


class Market:
    """Prices, trade and book sequence numbers of every code, global to the server.

    ``seq`` is strictly increasing per code across all connections, so a reconnecting client
    continues where it left off. The last trade and book of each code are kept for snapshots.
    """

    def __init__(self, catalog: Mapping[str, Sequence[str]], *, seed: int) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - simulated prices, seeded for reproducible runs
        self.instruments: dict[str, Instrument] = {}
        # Per-code faults (actors/sim/faults.py): muted codes get no normal pushes; a skewed code's
        # tick_time is off by this many ms.
        self.muted: set[str] = set()
        self.skew_ms: dict[str, int] = {}
        # The server's shifted clock (--clock-offset, the ``clock`` fault): every tick_time moves by it.
        self.clock_offset_ms = 0
        for path, codes in catalog.items():
            base = BASE_PRICES.get(path, {})
            for code in codes:
                self.instruments[code] = self._new_instrument(code, base.get(code))

    def _new_instrument(self, code: str, opening: str | None) -> Instrument:
        cls = asset_class(code)
        if opening is None:
            dp = 4
            price = self._rng.randrange(5 * 10**dp, 500 * 10**dp)
        else:
            price, dp = parse_units(opening)
        return Instrument(code=code, cls=cls, price=price, price_dp=dp, step=max(1, price // 5000))

    def instrument(self, code: str) -> Instrument:
        """The instrument of code, created on first use for codes outside the catalog (ghost pushes)."""
        inst = self.instruments.get(code)
        if inst is None:
            inst = self.instruments[code] = self._new_instrument(code, None)
        return inst

    def reset_seq(self, code: str) -> None:
        """Restart ``code``'s trade and book seq at 1, as a restarted vendor server would."""
        inst = self.instrument(code)
        inst.trade_seq = inst.book_seq = 0

    def clear_code_faults(self, code: str | None = None) -> set[str]:
        """Unmute and unskew ``code`` (None: every code). Returns the faults removed."""
        removed = set()
        if code is None:
            removed |= {"mute"} if self.muted else set()
            removed |= {"tick_time_skew"} if self.skew_ms else set()
            self.muted.clear()
            self.skew_ms.clear()
            return removed
        if code in self.muted:
            self.muted.discard(code)
            removed.add("mute")
        if self.skew_ms.pop(code, None) is not None:
            removed.add("tick_time_skew")
        return removed

    def _walk(self, inst: Instrument) -> None:
        # random.random() rather than randint(): the burst fault calls this 100k times in a row.
        step = inst.step
        move = int(self._rng.random() * (2 * step + 1)) - step
        if inst.price + move < 10 * step:  # reflect at a floor: prices stay positive
            move = abs(move)
        inst.price += move

    def next_trade(self, code: str, now_ns: int) -> TradeData:
        """Advance code by one trade and return it (``sent_ns`` = now_ns)."""
        inst = self.instruments.get(code) or self.instrument(code)
        self._walk(inst)
        inst.trade_seq += 1
        rnd = self._rng.random
        cls = inst.cls
        if cls is AssetClass.FX:
            volume = turnover = "0"  # PROTOCOL.md: forex, metals and CFD indices carry no volume
        else:
            vol_dp = VOLUME_DP[cls]
            vol = (int(rnd() * 50) + 1) * LOT[cls] if vol_dp == 0 else int(rnd() * 50000) + 1
            volume = format_units(vol, vol_dp)
            turnover = format_units(inst.price * vol, inst.price_dp + vol_dp)
        trade = TradeData(
            code=code,
            seq=inst.trade_seq,
            tick_time=now_ns // 1_000_000 + self.clock_offset_ms + self.skew_ms.get(code, 0),
            price=format_units(inst.price, inst.price_dp),
            volume=volume,
            turnover=turnover,
            trade_direction=TRADE_DIRECTIONS[int(rnd() * len(TRADE_DIRECTIONS))],
            sent_ns=now_ns,
        )
        inst.last_trade = trade
        return trade

    def next_book(self, code: str, now_ns: int) -> BookData:
        """Advance code by one book update with the class's maximum depth."""
        inst = self.instrument(code)
        self._walk(inst)
        inst.book_seq += 1
        depth = BOOK_DEPTH_MAX[inst.cls]
        rng = self._rng
        half = max(1, inst.step)

        def level(units: int) -> Level:
            if inst.cls is AssetClass.FX:
                return Level(price=format_units(units, inst.price_dp), volume="")
            vol_dp = VOLUME_DP[inst.cls]
            vol = rng.randint(1, 200) * LOT[inst.cls] if vol_dp == 0 else rng.randint(1, 500000)
            return Level(price=format_units(units, inst.price_dp), volume=format_units(vol, vol_dp))

        bids = [level(max(1, inst.price - half * (i + 1))) for i in range(depth)]
        asks = [level(inst.price + half * (i + 1)) for i in range(depth)]
        tick_time = now_ns // 1_000_000 + self.clock_offset_ms + self.skew_ms.get(code, 0)
        book = BookData(
            code=code, seq=inst.book_seq, tick_time=tick_time, bids=bids, asks=asks, sent_ns=now_ns
        )
        inst.last_book = book
        return book
