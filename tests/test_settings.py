"""Tests of actors.core.settings: the job's TOML config, validated whole, errors naming the bad key."""

from __future__ import annotations

import pickle

import msgspec
import pytest

from actors.config import load_settings
from actors.core.plans import PLANS, Plan
from actors.core.settings import EndpointSettings, Settings, default_settings, parse_settings, with_simulator
from tests.config_text import CONFIGS, ENDPOINTS, STOCK_ONLY, config_error, strategy


class TestConfigFile:
    """The shipped configs and the embedded default are valid."""

    def test_example_config(self) -> None:
        settings = load_settings(CONFIGS / "example.toml")
        assert not settings.simulator.enabled
        assert settings.endpoints == {
            "stock": EndpointSettings(url="wss://quote.alltick.co/quote-stock-b-ws-api"),
            "forex_crypto": EndpointSettings(url="wss://quote.alltick.co/quote-b-ws-api"),
        }
        tape = settings.strategies[0]
        assert (tape.name, tape.kind, tape.path, tape.symbols) == (
            "tape",
            "recorder",
            "ticks.jsonl",
            ("AAPL.US", "BTCUSDT", "EURUSD"),
        )
        assert "console" in {s.kind for s in settings.strategies}
        defaults = parse_settings(ENDPOINTS)
        assert (settings.feed, settings.restart) == (defaults.feed, defaults.restart)

    def test_example_config_shows_every_key(self) -> None:
        text = (CONFIGS / "example.toml").read_text(encoding="utf-8")
        settings = load_settings(CONFIGS / "example.toml")
        tables = [settings.feed, settings.restart, settings.simulator, settings.strategies[0]]
        for table in tables:
            for field in msgspec.structs.fields(table):
                assert f"\n{field.encode_name} = " in text

    def test_simulator_config(self) -> None:
        settings = load_settings(CONFIGS / "simulator.toml")
        assert settings.simulator.enabled
        assert {s.kind for s in settings.strategies} == {"recorder", "console"}
        assert settings.feed.silence_deadline_s < 15.0
        assert settings.feed.heartbeat_interval_s < 10.0

    def test_default_settings(self) -> None:
        settings = default_settings()
        assert settings.simulator.enabled
        assert set(settings.endpoints) == {"stock", "forex_crypto"}
        assert (settings.feed.heartbeat_interval_s, settings.feed.silence_deadline_s) == (2.0, 5.0)
        (console,) = settings.strategies
        assert (console.name, console.kind) == ("console", "console")
        assert console.symbols == ("AAPL.US", "TSLA.US", "700.HK", "EURUSD", "XAUUSD", "BTCUSDT")

    def test_defaults_of_every_key(self) -> None:
        settings = parse_settings(ENDPOINTS)
        feed, restart, simulator = settings.feed, settings.restart, settings.simulator
        assert msgspec.structs.asdict(feed) == {
            "token_env": "ALLTICK_TOKEN",
            "token_envs": (),
            "heartbeat_interval_s": 10.0,
            "silence_deadline_s": 15.0,
            "ping_deadline_s": 2.0,
            "start_timeout_s": 60.0,
            "plan": "professional",
            "max_connections": 0,
            "max_codes_per_connection": 0,
            "idle_connection_close_s": 30.0,
            "batch_max_frames": 256,
            "batch_max_age_ms": 5.0,
            "strategy_queue_batches": 64,
            "strategy_queue_ticks": 50_000,
            "transport": "picows",
            "stale_after_s": 60.0,
            "open_grace_s": 120.0,
            "sessions": {},
            "deliver_corrupt": False,
        }
        assert msgspec.structs.asdict(restart) == {
            "max_restarts": 5,
            "within_s": 60.0,
            "backoff_initial_s": 0.5,
            "backoff_max_s": 30.0,
            "backoff_jitter": 0.5,
        }
        assert msgspec.structs.asdict(simulator) == {
            "enabled": False,
            "tick_rate": 2.0,
            "plan": "pro",
            "codes": 200,
        }
        assert settings.strategies == ()  # no strategy is fine: the job can be driven later

    def test_frozen_and_round_trips(self) -> None:
        settings = default_settings()
        with pytest.raises(AttributeError):
            settings.feed = settings.feed  # type: ignore[misc]
        assert msgspec.convert(msgspec.to_builtins(settings), Settings) == settings
        assert pickle.loads(pickle.dumps(settings)) == settings  # Ray ships it  # noqa: S301

    def test_plan_limits(self) -> None:
        assert parse_settings(ENDPOINTS).plan_limits() == PLANS["professional"]
        text = '[feed]\nplan = "premium"\nmax_connections = 2\nmax_codes_per_connection = 50\n' + ENDPOINTS
        assert parse_settings(text).plan_limits() == Plan(2, 50)
        assert parse_settings('[feed]\nplan = "free"\n' + ENDPOINTS).plan_limits() == Plan(1, 5)

    def test_user_strategy_and_options(self) -> None:
        text = ENDPOINTS + strategy(
            kind='"my_pkg.strategies:MeanReversion"', options="{window = 20, z = 1.5}"
        )
        (user,) = parse_settings(text).strategies
        assert (user.kind, user.options, user.path) == (
            "my_pkg.strategies:MeanReversion",
            {"window": 20, "z": 1.5},
            None,
        )

    def test_silence_deadline_down_to_one_second(self) -> None:
        settings = parse_settings(
            "[feed]\nheartbeat_interval_s = 0.5\nsilence_deadline_s = 1.0\n" + ENDPOINTS
        )
        assert settings.feed.silence_deadline_s == 1.0

    def test_stock_endpoint_alone(self) -> None:
        settings = parse_settings(STOCK_ONLY + strategy('["AAPL.US", "700.HK"]'))
        assert set(settings.endpoints) == {"stock"}


# (case, TOML text, the key the ConfigError must name, words its message must contain)
BAD: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("unknown top-level key", "feeds = 1\n" + ENDPOINTS, "feeds", ("unknown key", "feed, restart", "'feed'")),
    (
        "unknown feed key",
        "[feed]\nheartbeat_interval = 5\n" + ENDPOINTS,
        "feed.heartbeat_interval",
        ("unknown key", "heartbeat_interval_s"),
    ),
    (
        "unknown endpoint key",
        STOCK_ONLY.replace("url =", "uri ="),
        "endpoints.stock.uri",
        ("known keys are: url",),
    ),
    ("unknown strategy key", ENDPOINTS + strategy(symbol='["X"]'), "strategies[0].symbol", ("'symbols'",)),
    (
        "wrong type",
        '[feed]\nheartbeat_interval_s = "10"\n' + ENDPOINTS,
        "feed.heartbeat_interval_s",
        ("expected `float`, got `str`",),
    ),
    (
        "int for a float key is fine, float for an int key is not",
        "[restart]\nmax_restarts = 5.5\n" + ENDPOINTS,
        "restart.max_restarts",
        ("expected `int`",),
    ),
    ("table expected", "feed = 3\n" + ENDPOINTS, "feed", ("expected `table`",)),
    (
        "heartbeat 11",
        "[feed]\nheartbeat_interval_s = 11\n" + ENDPOINTS,
        "feed.heartbeat_interval_s",
        ("<= 10.0", "PROTOCOL.md"),
    ),
    ("heartbeat 0", "[feed]\nheartbeat_interval_s = 0\n" + ENDPOINTS, "feed.heartbeat_interval_s", ("> 0",)),
    ("silence 0.5", "[feed]\nsilence_deadline_s = 0.5\n" + ENDPOINTS, "feed.silence_deadline_s", (">= 1.0",)),
    (
        "silence 30",
        "[feed]\nsilence_deadline_s = 30\n" + ENDPOINTS,
        "feed.silence_deadline_s",
        ("<= 25.0", "30 s"),
    ),
    ("ping 0", "[feed]\nping_deadline_s = 0\n" + ENDPOINTS, "feed.ping_deadline_s", ("> 0",)),
    ("start 0", "[feed]\nstart_timeout_s = 0\n" + ENDPOINTS, "feed.start_timeout_s", ("> 0",)),
    (
        "token_env not a name",
        '[feed]\ntoken_env = "abc-123"\n' + ENDPOINTS,
        "feed.token_env",
        ("NAME of the environment variable",),
    ),
    ("bad plan", '[feed]\nplan = "gold"\n' + ENDPOINTS, "feed.plan", ("unknown plan 'gold'", "professional")),
    ("plan in upper case", '[feed]\nplan = "All-HK"\n' + ENDPOINTS, "feed.plan", ("'all-hk'",)),
    (
        "connections above the plan",
        '[feed]\nplan = "premium"\nmax_connections = 4\n' + ENDPOINTS,
        "feed.max_connections",
        ("at most 3",),
    ),
    (
        "codes above the plan",
        '[feed]\nplan = "basic"\nmax_codes_per_connection = 101\n' + ENDPOINTS,
        "feed.max_codes_per_connection",
        ("at most 100",),
    ),
    ("negative override", "[feed]\nmax_connections = -1\n" + ENDPOINTS, "feed.max_connections", (">= 0",)),
    ("batch of nothing", "[feed]\nbatch_max_frames = 0\n" + ENDPOINTS, "feed.batch_max_frames", (">= 1",)),
    (
        "unknown transport",
        '[feed]\ntransport = "aiohttp"\n' + ENDPOINTS,
        "feed.transport",
        ("unknown transport 'aiohttp'", "'picows'", "'websockets'"),
    ),
    ("no restarts", "[restart]\nmax_restarts = 0\n" + ENDPOINTS, "restart.max_restarts", (">= 1",)),
    ("jitter above 1", "[restart]\nbackoff_jitter = 1.5\n" + ENDPOINTS, "restart.backoff_jitter", ("<= 1",)),
    ("infinite window", "[restart]\nwithin_s = inf\n" + ENDPOINTS, "restart.within_s", ("finite",)),
    (
        "backoff max below initial",
        "[restart]\nbackoff_initial_s = 5\nbackoff_max_s = 1\n" + ENDPOINTS,
        "restart.backoff_max_s",
        ("backoff_initial_s",),
    ),
    ("endpoints missing", "[feed]\n", "endpoints", ("required key is missing",)),
    ("no endpoint", "endpoints = {}\n", "endpoints", ("at least one",)),
    (
        "bad endpoint name",
        ENDPOINTS + '[endpoints.futures]\nurl = "wss://quote.alltick.co/x"\n',
        "endpoints.futures",
        ("unknown endpoint", "stock, forex_crypto"),
    ),
    ("endpoint not a table", "[endpoints]\nstock = 3\n", "endpoints.stock", ("expected `table`",)),
    ("url missing", "[endpoints.stock]\n", "endpoints.stock.url", ("required key is missing",)),
    (
        "url with token=",
        '[endpoints.stock]\nurl = "wss://quote.alltick.co/quote-stock-b-ws-api?token=abc"\n',
        "endpoints.stock.url",
        ("must not carry a token", "feed.token_env"),
    ),
    (
        "wrong path for endpoint",
        '[endpoints.stock]\nurl = "wss://quote.alltick.co/quote-b-ws-api"\n',
        "endpoints.stock.url",
        ("/quote-stock-b-ws-api", "forex_crypto endpoint's path"),
    ),
    (
        "no path",
        '[endpoints.forex_crypto]\nurl = "wss://quote.alltick.co"\n',
        "endpoints.forex_crypto.url",
        ("/quote-b-ws-api",),
    ),
    (
        "http url",
        '[endpoints.stock]\nurl = "https://quote.alltick.co/quote-stock-b-ws-api"\n',
        "endpoints.stock.url",
        ("ws:// or wss://",),
    ),
    (
        "url without host",
        '[endpoints.stock]\nurl = "ws:///quote-stock-b-ws-api"\n',
        "endpoints.stock.url",
        ("no host",),
    ),
    (
        "duplicate strategy names",
        ENDPOINTS + strategy() + strategy(),
        "strategies[1].name",
        ("duplicate", "strategies[0]"),
    ),
    ("empty strategy name", ENDPOINTS + strategy(name='""'), "strategies[0].name", ("A-Za-z0-9",)),
    ("strategy name with a space", ENDPOINTS + strategy(name='"my tape"'), "strategies[0].name", ()),
    (
        "recorder without path",
        ENDPOINTS + strategy(kind='"recorder"'),
        "strategies[0].path",
        ("recorder needs path",),
    ),
    ("path on a console", ENDPOINTS + strategy(path='"x.jsonl"'), "strategies[0].path", ("recorder",)),
    (
        "bad kind string",
        ENDPOINTS + strategy(kind='"my_module.Class"'),
        "strategies[0].kind",
        ("package.module:Class", "'my_module.Class'"),
    ),
    ("kind missing", ENDPOINTS + "[[strategies]]\nname = 'x'\n", "strategies[0].kind", ("required",)),
    ("symbol not a string", ENDPOINTS + strategy("[1]"), "strategies[0].symbols[0]", ("expected `str`",)),
    (
        "invalid symbol with hint",
        ENDPOINTS + strategy('["EURUSD", "NASDAQ:AAPL"]'),
        "strategies[0].symbols[1]",
        ("NASDAQ:AAPL", "AAPL.US"),
    ),
    (
        "lower-case symbol",
        ENDPOINTS + strategy('["AAPL.US", "btcusdt"]'),
        "strategies[0].symbols[1]",
        ("case-sensitive", "BTCUSDT"),
    ),
    (
        "symbol of an unconfigured endpoint",
        STOCK_ONLY + strategy('["AAPL.US", "700.HK", "BTCUSDT"]'),
        "strategies[0].symbols[2]",
        ("forex_crypto endpoint", "not configured", "[endpoints.forex_crypto]"),
    ),
    (
        "more codes than the plan serves",
        '[feed]\nplan = "free"\n'
        + ENDPOINTS
        + strategy('["A.US", "B.US", "C.US"]')
        + strategy('["C.US", "D.US", "E.US", "F.US"]', name='"t"'),
        "strategies[1].symbols[3]",
        ("more than 5", "stock"),
    ),
    (
        "simulator plan",
        '[simulator]\nplan = "professional"\n' + ENDPOINTS,
        "simulator.plan",
        ("free, basic, premium, pro",),
    ),
    ("negative tick rate", "[simulator]\ntick_rate = -1\n" + ENDPOINTS, "simulator.tick_rate", (">= 0",)),
    ("simulator key", "[simulator]\nenable = true\n" + ENDPOINTS, "simulator.enable", ("'enabled'",)),
    (
        "simulator flag type",
        '[simulator]\nenabled = "yes"\n' + ENDPOINTS,
        "simulator.enabled",
        ("expected `bool`",),
    ),
]


class TestKeyError:
    """Every bad key is a ConfigError naming its dotted path and what is expected."""

    @pytest.mark.parametrize(
        ("text", "key", "words"), [case[1:] for case in BAD], ids=[case[0] for case in BAD]
    )
    def test_bad_keys(self, text: str, key: str, words: tuple[str, ...]) -> None:
        exc = config_error(text)
        assert exc.key == key
        assert f"config error at {key}: " in str(exc)
        for word in words:
            assert word in str(exc)

    def test_stale_after_s_per_endpoint_and_its_errors(self) -> None:
        settings = parse_settings("[feed]\nstale_after_s = 5\n" + ENDPOINTS + "stale_after_s = 0\n")
        assert (settings.stale_after_s("stock"), settings.stale_after_s("forex_crypto")) == (5.0, 0.0)
        assert parse_settings(ENDPOINTS).stale_after_s("stock") == 60.0
        exc = config_error(ENDPOINTS + "stale_after_s = -2\n")
        assert exc.key == "endpoints.forex_crypto.stale_after_s"
        assert "expected seconds >= 0 (0 disables the check), got -2.0" in exc.reason
        exc = config_error("[feed]\nstale_after_s = -1\n" + ENDPOINTS)
        assert exc.key == "feed.stale_after_s"
        assert ">= 0" in exc.reason
        exc = config_error("[feed]\ndeliver_corrupt = 1\n" + ENDPOINTS)
        assert exc.key == "feed.deliver_corrupt"
        assert "expected `bool`" in exc.reason

    def test_open_grace_s_per_endpoint_and_the_sessions_table(self) -> None:
        text = '[feed]\nopen_grace_s = 5\n[feed.sessions]\n"*.US" = "XNYS"\n"*" = "always"\n'
        settings = parse_settings(text + ENDPOINTS + "open_grace_s = 0\n")
        assert (settings.open_grace_s("stock"), settings.open_grace_s("forex_crypto")) == (5.0, 0.0)
        assert settings.feed.sessions == {"*.US": "XNYS", "*": "always"}
        assert parse_settings(ENDPOINTS).open_grace_s("stock") == 120.0
        exc = config_error(ENDPOINTS + "open_grace_s = -2\n")
        assert exc.key == "endpoints.forex_crypto.open_grace_s"
        assert "expected seconds >= 0, got -2.0" in exc.reason
        exc = config_error('[feed.sessions]\n"*.US" = " "\n' + ENDPOINTS)
        assert exc.key == "feed.sessions.'*.US'"
        assert "expected a session" in exc.reason
        exc = config_error('[feed.sessions]\n"*.US" = 3\n' + ENDPOINTS)
        assert exc.key.startswith("feed.sessions")
        assert "str" in exc.reason

    def test_the_first_unknown_key_is_named_with_the_known_ones(self) -> None:
        exc = config_error("[restart]\nmax_restart = 3\n" + ENDPOINTS)
        assert (
            exc.reason
            == "unknown key; known keys are: max_restarts, within_s, backoff_initial_s, backoff_max_s, "
            "backoff_jitter; did you mean 'max_restarts'?"
        )

    def test_source_is_named(self) -> None:
        exc = config_error("[feed]\nheartbeat_interval_s = 11\n" + ENDPOINTS, source="jobs/prod.toml")
        assert str(exc).endswith("(in jobs/prod.toml)"), str(exc)

    def test_toml_syntax_error_names_file_and_line(self) -> None:
        exc = config_error(
            '[feed]\nplan = "professional"\nheartbeat_interval_s = = 2\n', source="jobs/x.toml"
        )
        assert exc.key == ""
        assert "invalid TOML in jobs/x.toml at line 3" in str(exc)
        exc = config_error("[feed]\nplan = 'free'\nplan = 'basic'\n", source="jobs/x.toml")
        assert "line 3" in str(exc)


class TestSimulator:
    """with_simulator points every endpoint at the bundled simulator."""

    def test_urls_point_at_the_simulator(self) -> None:
        settings = with_simulator(default_settings(), "127.0.0.1", 40123)
        assert {name: e.url for name, e in settings.endpoints.items()} == {
            "stock": "ws://127.0.0.1:40123/quote-stock-b-ws-api",
            "forex_crypto": "ws://127.0.0.1:40123/quote-b-ws-api",
        }
        assert settings.strategies == default_settings().strategies
        real = with_simulator(load_settings(CONFIGS / "example.toml"), "::1", 9000)
        assert real.endpoints["stock"].url == "ws://[::1]:9000/quote-stock-b-ws-api"

    def test_bad_address(self) -> None:
        with pytest.raises(ValueError, match="host"):
            with_simulator(default_settings(), "", 1)
        with pytest.raises(ValueError, match="port"):
            with_simulator(default_settings(), "127.0.0.1", 70000)
