"""actors/log.py: readable lines by default, one JSON object per line on request, connection fields,
and the token in no line: not in a message, an exception text, a URL or a traceback. No Ray.

Each test configures the handler onto a StringIO; the module's handler goes back to stderr after.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

import pytest

from actors import log
from actors.core.errors import ConnectFailed
from actors.core.tokens import Secret, endpoint_url

TOKEN = "tk-7f3a9c2e51d04b88"


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    saved = set(log._secrets)
    log.hide(Secret(TOKEN))
    yield stream
    log._secrets.clear()
    log._secrets.update(saved)
    log.configure()


def emit_everything() -> None:
    """Every path a token could take into a line."""
    url = endpoint_url("wss://quote.alltick.io/quote-stock-b-ws-api", Secret(TOKEN))
    log.logger.info("connecting to {}", url)
    log.logger.warning("bare token in a message: " + TOKEN)
    log.about("stock-0").error("vendor said: token {} invalid", TOKEN)
    try:
        raise ConnectFailed("stock-0", "stock", url, f"handshake failed; token {TOKEN}", 1.0)  # noqa: TRY301 - the test raises to log a real traceback
    except Exception:  # noqa: BLE001
        log.logger.exception("connect failed")
    try:
        token = TOKEN  # noqa: F841 - a local that loguru's diagnose would print
        raise OSError(f"socket error near {url}")  # noqa: TRY301 - the test raises to log a real traceback
    except OSError:
        log.logger.opt(exception=True).error("read failed")


def test_text_is_readable_and_carries_connection_fields(out: io.StringIO) -> None:
    log.configure("text", "DEBUG", stream=out)
    log.about("forex_crypto-1").info("heartbeat: {} late", "forex_crypto-1")
    log.logger.info("no connection here")
    first, second = out.getvalue().splitlines()
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \| INFO +\| ", first)
    assert first.endswith("heartbeat: forex_crypto-1 late | connection=forex_crypto-1 endpoint=forex_crypto")
    assert second.endswith("- no connection here")


def test_json_is_one_object_per_line_with_fields(out: io.StringIO) -> None:
    log.configure("json", "DEBUG", stream=out)
    log.about("stock-0").warning("registry: {} request refused", "stock-0")
    log.logger.info('quotes " and {braces} and \n a newline')
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["connection"] == "stock-0"
    assert first["endpoint"] == "stock"
    assert first["level"] == "WARNING"
    assert first["message"] == "registry: stock-0 request refused"
    assert {"time", "logger", "function", "line", "pid"} <= set(first)
    assert second["message"] == 'quotes " and {braces} and \n a newline'
    assert "connection" not in second


def test_a_connection_process_puts_its_fields_on_every_line(out: io.StringIO) -> None:
    log.configure("json", "DEBUG", stream=out)
    try:
        log.for_connection("stock-2", "stock", Secret("another-secret-xyz"))
        log.logger.info("connected, token another-secret-xyz")
    finally:
        log.logger.configure(extra={})
    line = json.loads(out.getvalue())
    assert (line["connection"], line["endpoint"]) == ("stock-2", "stock")
    assert "another-secret-xyz" not in out.getvalue()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_token_is_in_no_line(out: io.StringIO, fmt: str) -> None:
    log.configure(fmt, "DEBUG", stream=out)
    emit_everything()
    text = out.getvalue()
    assert TOKEN not in text
    assert "token=***" in text  # the URL, redacted
    assert "bare token in a message: ***" in text
    assert "Traceback" in text  # the exceptions were written, scrubbed
    assert "socket error near wss://quote.alltick.io/quote-stock-b-ws-api?token=***" in text
    if fmt == "json":
        lines = [json.loads(line) for line in text.splitlines()]
        assert len(lines) == 5
        assert all("exception" in line for line in lines[3:])


def test_scrub_redacts_urls_without_a_hidden_secret() -> None:
    assert log.scrub("ws://h/p?token=abc&x=1") == "ws://h/p?token=***&x=1"


def test_a_bad_format_is_named() -> None:
    with pytest.raises(ValueError, match="log format 'xml' is not one of text, json"):
        log.configure("xml")
