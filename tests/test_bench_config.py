"""scripts/bench/config.py: the one config builder of benches, soak and tests (pure, no Ray)."""

from __future__ import annotations

import pytest

from actors.core.errors import ConfigError
from actors.core.settings import RestartSettings, parse_settings
from scripts.bench.config import RESTART, build, job_config, strategy, to_toml


def test_a_job_config_renders_as_the_toml_a_user_would_write() -> None:
    doc = job_config(
        4242,
        [
            strategy(
                "c", "tests.collector:Collector", ["AAPL.US", "EURUSD"], options={"sleep_s": 0.5, "on": True}
            )
        ],
        feed={"token_env": "T", "heartbeat_interval_s": 0.5},
    )
    assert to_toml(doc) == (
        "[feed]\n"
        'token_env = "T"\n'
        "heartbeat_interval_s = 0.5\n"
        "[feed.sessions]\n"
        '"*" = "always"\n'
        "[restart]\n"
        "max_restarts = 50\n"
        "within_s = 60.0\n"
        "backoff_initial_s = 0.1\n"
        "backoff_max_s = 2.0\n"
        "[endpoints.stock]\n"
        'url = "ws://127.0.0.1:4242/quote-stock-b-ws-api"\n'
        "[endpoints.forex_crypto]\n"
        'url = "ws://127.0.0.1:4242/quote-b-ws-api"\n'
        "[[strategies]]\n"
        'name = "c"\n'
        'kind = "tests.collector:Collector"\n'
        'symbols = ["AAPL.US", "EURUSD"]\n'
        "options = { sleep_s = 0.5, on = true }\n"
    )


def test_build_reads_the_rendered_text_as_parse_settings_does() -> None:
    doc = job_config(
        1,
        [strategy("s", "console", ["BTCUSDT"])],
        feed={"max_codes_per_connection": 5},
        endpoints=["forex_crypto"],
    )
    settings = build(doc)
    assert settings == parse_settings(to_toml(doc))
    assert settings.feed.max_codes_per_connection == 5
    assert list(settings.endpoints) == ["forex_crypto"]
    assert settings.restart.max_restarts == RESTART["max_restarts"]
    assert settings.strategies[0].symbols == ("BTCUSDT",)


def test_without_a_restart_table_the_defaults_hold() -> None:
    settings = build(job_config(1, restart=None))
    assert "[restart]" not in to_toml(job_config(1, restart=None))
    assert settings.restart == RestartSettings()


def test_a_bad_key_is_refused_as_in_a_file() -> None:
    with pytest.raises(ConfigError) as caught:
        build(job_config(1, feed={"heartbeat_interval_s": -1.0}), source="<test>")
    assert caught.value.key == "feed.heartbeat_interval_s"
    assert "<test>" in str(caught.value)


def test_a_value_toml_cannot_hold_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="cannot write NoneType None as TOML"):
        to_toml({"feed": {"plan": None}})
