"""AllTick codes: which endpoint serves a code, and the vendor's notation for one written another way.

Pure: no I/O, no clock.

Rules of this module:

1. Codes are case-sensitive and must be in the vendor's notation (PROTOCOL.md "Endpoints"): stocks
   like ``AAPL.US``, ``700.HK``, ``600519.SH``; pairs like ``EURUSD``, ``BTCUSDT``. A code is never
   corrected silently: ``endpoint_of`` refuses it, and its ``InvalidCode`` carries the guess as a hint.
2. ``Endpoint``'s value is the config key (``[endpoints.stock]``); its ``path`` is the URL path.
"""

from __future__ import annotations

import enum
import re
from typing import Final

from actors.core.errors import InvalidCode


class Endpoint(enum.StrEnum):
    """The two AllTick endpoints (PROTOCOL.md "Endpoints"); the value is the config key."""

    STOCK = "stock"
    FOREX_CRYPTO = "forex_crypto"

    @property
    def path(self) -> str:
        """The URL path of this endpoint."""
        return ENDPOINT_PATHS[self]


ENDPOINT_PATHS: Final = {
    Endpoint.STOCK: "/quote-stock-b-ws-api",
    Endpoint.FOREX_CRYPTO: "/quote-b-ws-api",
}


# Stock endpoint: AAPL.US, BRK.B.US, 700.HK, 600519.SH, 000627.SZ (PROTOCOL.md "Endpoints").
_STOCK_RE: Final = re.compile(r"[A-Z0-9][A-Z0-9\-]*(?:\.[A-Z0-9]+)?\.(?:US|HK|SH|SZ)")
# Forex/crypto endpoint: EURUSD, XAUUSD, USOIL, US500, BTCUSDT, 1000PEPEUSDT.
_FOREX_CRYPTO_RE: Final = re.compile(r"[A-Z0-9]{2,24}")
MAX_CODE_CHARS: Final = 32

_US_EXCHANGES: Final = frozenset({"NASDAQ", "NYSE", "AMEX", "ARCA", "BATS", "NYSEARCA", "US"})
_HK_EXCHANGES: Final = frozenset({"HKEX", "HKG", "SEHK", "HK"})
_SH_EXCHANGES: Final = frozenset({"SSE", "SHA", "SH", "SHSE"})
_SZ_EXCHANGES: Final = frozenset({"SZSE", "SHE", "SZ"})
_QUOTE_CURRENCIES: Final = (
    "USDT",
    "USDC",
    "USD",
    "EUR",
    "JPY",
    "GBP",
    "AUD",
    "CHF",
    "CAD",
    "BTC",
    "ETH",
    "HKD",
)
_SUFFIX_ALIASES: Final = {"SS": "SH", "O": "US", "N": "US", "OQ": "US", "K": "US"}


def _stock_hint(exchange: str, symbol: str) -> str | None:
    if exchange in _US_EXCHANGES:
        return f"{symbol}.US"
    if exchange in _HK_EXCHANGES and symbol.isdigit():
        return f"{int(symbol)}.HK"
    if exchange in _SH_EXCHANGES and symbol.isdigit():
        return f"{symbol}.SH"
    if exchange in _SZ_EXCHANGES and symbol.isdigit():
        return f"{symbol}.SZ"
    return None


def _looks_like_pair(symbol: str) -> bool:
    return len(symbol) >= 5 and symbol.endswith(_QUOTE_CURRENCIES)


def guess_code(code: str) -> str | None:
    """The vendor's notation for a code written another way, where it can be guessed; else None.

    ``NASDAQ:AAPL`` -> ``AAPL.US``, ``aapl`` -> ``AAPL.US``, ``BTC/USDT`` -> ``BTCUSDT``,
    ``HKEX:0700`` -> ``700.HK``, ``600519.SS`` -> ``600519.SH``.
    """
    text = code.strip()
    if not text:
        return None
    upper = text.upper()
    if ":" in upper:
        exchange, _, symbol = upper.partition(":")
        symbol = re.sub(r"[/\-_ ]", "", symbol)
        guessed = _stock_hint(exchange, symbol)
        if guessed is None and _FOREX_CRYPTO_RE.fullmatch(symbol):
            guessed = symbol
        return guessed if guessed != code and guessed and _valid_shape(guessed) else None
    if "." in upper:
        symbol, _, suffix = upper.rpartition(".")
        suffix = _SUFFIX_ALIASES.get(suffix, suffix)
        guessed = f"{symbol}.{suffix}"
    else:
        squeezed = re.sub(r"[/\-_ ]", "", upper)
        if squeezed != upper or _looks_like_pair(squeezed):
            guessed = squeezed
        elif squeezed.isalpha() and len(squeezed) <= 5:
            guessed = f"{squeezed}.US"
        else:
            guessed = squeezed
    return guessed if guessed != code and _valid_shape(guessed) else None


def _valid_shape(code: str) -> bool:
    return bool(_STOCK_RE.fullmatch(code) or _FOREX_CRYPTO_RE.fullmatch(code))


def endpoint_of(code: object) -> Endpoint:
    """The endpoint that serves ``code``.

    Raises:
        InvalidCode: the code is not a string, empty, too long, or not in the vendor's notation
            (the exception's ``hint`` carries the vendor's notation where it can be guessed).

    """
    if not isinstance(code, str):
        raise InvalidCode(repr(code), f"a code must be a string, not {type(code).__name__}")
    if not code:
        raise InvalidCode(code, "empty code")
    if len(code) > MAX_CODE_CHARS:
        raise InvalidCode(code[:MAX_CODE_CHARS] + "...", f"longer than {MAX_CODE_CHARS} characters")
    if _STOCK_RE.fullmatch(code):
        return Endpoint.STOCK
    if _FOREX_CRYPTO_RE.fullmatch(code):
        return Endpoint.FOREX_CRYPTO
    if code != code.upper():
        reason = "codes are case-sensitive and upper-case"
    else:
        reason = (
            "not in the vendor's notation "
            "(stocks like AAPL.US, 700.HK, 600519.SH; pairs like EURUSD, BTCUSDT)"
        )
    hint = guess_code(code)
    raise InvalidCode(code, reason, hint)
