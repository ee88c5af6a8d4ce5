"""Config texts and helpers shared by the tests of the settings, its file and its tokens."""

from __future__ import annotations

from pathlib import Path

from actors.core.errors import ConfigError
from actors.core.settings import parse_settings

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TOKEN = "s3cr3t-T0KEN-value"

ENDPOINTS = """
[endpoints.stock]
url = "wss://quote.alltick.co/quote-stock-b-ws-api"

[endpoints.forex_crypto]
url = "wss://quote.alltick.co/quote-b-ws-api"
"""
STOCK_ONLY = """
[endpoints.stock]
url = "wss://quote.alltick.co/quote-stock-b-ws-api"
"""


def strategy(symbols: str = '["AAPL.US"]', **keys: str) -> str:
    """One [[strategies]] entry; keys are raw TOML values."""
    fields = {"name": '"s"', "kind": '"console"', "symbols": symbols, **keys}
    return "[[strategies]]\n" + "".join(f"{key} = {value}\n" for key, value in fields.items())


def config_error(text: str, source: str = "<config>") -> ConfigError:
    try:
        parse_settings(text, source=source)
    except ConfigError as exc:
        return exc
    raise AssertionError("parse_settings accepted a bad config")
