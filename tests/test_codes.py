"""Tests of actors.core.codes: which endpoint serves a code (PROTOCOL.md "Endpoints"). Pure."""

from __future__ import annotations

import pytest

from actors.core import codes
from actors.core.errors import (
    InvalidCode,
)

# --- PROTOCOL.md "Endpoints": codes -----------------------------------------------------------------


class TestCode:
    """Codes are case-sensitive, in the vendor's notation, and each belongs to one endpoint."""

    STOCK_CODES = ("AAPL.US", "TSLA.US", "700.HK", "1288.HK", "600519.SH", "000627.SZ")
    FOREX_CRYPTO_CODES = ("EURUSD", "USDJPY", "XAUUSD", "USOIL", "BTCUSDT", "ETHUSDT")

    def test_stock_codes_belong_to_the_stock_endpoint(self) -> None:
        for code in self.STOCK_CODES:
            assert codes.endpoint_of(code) is codes.Endpoint.STOCK

    def test_forex_and_crypto_codes_belong_to_the_forex_crypto_endpoint(self) -> None:
        for code in self.FOREX_CRYPTO_CODES:
            assert codes.endpoint_of(code) is codes.Endpoint.FOREX_CRYPTO

    def test_endpoint_paths(self) -> None:
        assert codes.Endpoint.STOCK.path == "/quote-stock-b-ws-api"
        assert codes.Endpoint.FOREX_CRYPTO.path == "/quote-b-ws-api"
        assert codes.Endpoint("stock") is codes.Endpoint.STOCK
        assert codes.Endpoint("forex_crypto") is codes.Endpoint.FOREX_CRYPTO

    def test_foreign_notations_are_refused_with_a_hint(self) -> None:
        cases = {
            "NASDAQ:AAPL": "AAPL.US",
            "aapl": "AAPL.US",
            "BTC/USDT": "BTCUSDT",
            "eurusd": "EURUSD",
            "HKEX:0700": "700.HK",
            "600519.SS": "600519.SH",
        }
        for code, hint in cases.items():
            with pytest.raises(InvalidCode) as info:
                codes.endpoint_of(code)
            assert (info.value.code, info.value.hint) == (code, hint)
            assert f"did you mean {hint!r}" in str(info.value)
            assert codes.guess_code(code) == hint
            codes.endpoint_of(hint)  # the hint itself is a valid code

    def test_lower_case_is_refused_as_case_sensitive(self) -> None:
        with pytest.raises(InvalidCode, match="case-sensitive"):
            codes.endpoint_of("aapl.us")

    def test_the_empty_code_is_refused(self) -> None:
        with pytest.raises(InvalidCode) as info:
            codes.endpoint_of("")
        assert "empty" in info.value.reason
        assert info.value.hint is None

    def test_a_code_that_is_not_a_string_is_refused(self) -> None:
        for bad in (None, 700, b"AAPL.US", ["AAPL.US"], 1.5):
            with pytest.raises(InvalidCode, match="must be a string"):
                codes.endpoint_of(bad)

    def test_a_too_long_code_is_refused(self) -> None:
        long_code = "A" * (codes.MAX_CODE_CHARS + 1)
        with pytest.raises(InvalidCode) as info:
            codes.endpoint_of(long_code)
        assert f"longer than {codes.MAX_CODE_CHARS}" in info.value.reason
        assert len(info.value.code) <= codes.MAX_CODE_CHARS + 3  # the message does not echo it all

    def test_garbage_is_refused_without_a_hint(self) -> None:
        for bad in ("???", "AAPL.XX", " ", "A", "$$.US"):
            with pytest.raises(InvalidCode) as info:
                codes.endpoint_of(bad)
            assert info.value.code == bad
