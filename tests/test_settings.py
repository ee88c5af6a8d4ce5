"""Tests of actors.core.settings: the job's TOML config, validated whole, errors naming the bad key."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import msgspec
import pytest

from actors.core.errors import ConfigError
from actors.core.plans import PLANS, Plan
from actors.core.settings import (
    SIMULATOR_TOKEN,
    EndpointSettings,
    Secret,
    Settings,
    default_settings,
    endpoint_url,
    load_settings,
    parse_settings,
    redact,
    resolve_token,
    resolve_tokens,
    with_simulator,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TOKEN = "s3cr3t-T0KEN-value"  # noqa: S105 - a fake token the tests look for in every message

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

    def test_bad_keys(self) -> None:
        for case, text, key, words in BAD:
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
        assert exc.key == "feed.stale_after_s" and ">= 0" in exc.reason
        exc = config_error("[feed]\ndeliver_corrupt = 1\n" + ENDPOINTS)
        assert exc.key == "feed.deliver_corrupt" and "expected `bool`" in exc.reason

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

    def test_missing_file_names_the_path(self) -> None:
        with tempfile.TemporaryDirectory() as folder:
            missing = Path(folder) / "nope.toml"
            with pytest.raises(ConfigError) as caught:
                load_settings(missing)
            assert str(missing) in str(caught.value)
            assert "does not exist" in str(caught.value)
            with pytest.raises(ConfigError) as caught:
                load_settings(folder)  # a directory
            assert folder in str(caught.value)

    def test_file_errors_name_the_file(self) -> None:
        with tempfile.TemporaryDirectory() as folder:
            broken = Path(folder) / "broken.toml"
            broken.write_text("[feed\n", encoding="utf-8")
            with pytest.raises(ConfigError) as caught:
                load_settings(broken)
            assert f"invalid TOML in {broken} at line 1" in str(caught.value)
            latin = Path(folder) / "latin.toml"
            latin.write_bytes(b"# caf\xe9\n")
            with pytest.raises(ConfigError, match="not UTF-8"):
                load_settings(latin)
            bad_key = Path(folder) / "bad.toml"
            bad_key.write_text("[feed]\nplan = 'gold'\n" + ENDPOINTS, encoding="utf-8")
            with pytest.raises(ConfigError) as caught:
                load_settings(bad_key)
            assert caught.value.key == "feed.plan"
            assert str(bad_key) in str(caught.value)


class TestToken:
    """The token lives in the environment and never shows in a message."""

    def real(self) -> Settings:
        return parse_settings(ENDPOINTS)

    def test_resolve_from_the_environment(self) -> None:
        assert resolve_token(self.real(), {"ALLTICK_TOKEN": TOKEN}).reveal() == TOKEN
        assert resolve_token(self.real(), {"ALLTICK_TOKEN": f" {TOKEN}\n"}).reveal() == TOKEN
        custom = parse_settings('[feed]\ntoken_env = "MY_TOKEN"\n' + ENDPOINTS)
        assert resolve_token(custom, {"MY_TOKEN": TOKEN, "ALLTICK_TOKEN": "other"}).reveal() == TOKEN

    def test_unset_or_empty_is_a_config_error_naming_the_variable(self) -> None:
        for environ in ({}, {"ALLTICK_TOKEN": ""}, {"ALLTICK_TOKEN": "   "}):
            with pytest.raises(ConfigError) as caught:
                resolve_token(self.real(), environ)
            assert caught.value.key == "feed.token_env"
            assert "ALLTICK_TOKEN" in str(caught.value)
        with pytest.raises(ConfigError, match="ALLTICK_TOKEN is not set"):
            resolve_token(self.real(), {"OTHER": TOKEN})

    def test_several_tokens(self) -> None:
        two = parse_settings('[feed]\ntoken_envs = ["TOK_A", "TOK_B"]\n' + ENDPOINTS)
        assert two.token_names() == ("TOK_A", "TOK_B")
        assert self.real().token_names() == ("ALLTICK_TOKEN",)
        tokens = resolve_tokens(two, {"TOK_A": TOKEN, "TOK_B": TOKEN + "2", "ALLTICK_TOKEN": "unused"})
        assert {k: v.reveal() for k, v in tokens.items()} == {"TOK_A": TOKEN, "TOK_B": TOKEN + "2"}
        assert {k: v.reveal() for k, v in resolve_tokens(self.real(), {"ALLTICK_TOKEN": TOKEN}).items()} == {
            "ALLTICK_TOKEN": TOKEN
        }
        cases = [
            ({"TOK_A": TOKEN}, "feed.token_envs[1]", "the environment variable TOK_B is not set"),
            ({"TOK_A": TOKEN, "TOK_B": " "}, "feed.token_envs[1]", "the environment variable TOK_B is empty"),
            ({"TOK_A": TOKEN, "TOK_B": TOKEN}, "feed.token_envs[1]", "TOK_B holds the same token as TOK_A"),
        ]
        for environ, key, text in cases:
            with pytest.raises(ConfigError) as caught:
                resolve_tokens(two, environ)
            assert caught.value.key == key
            assert text in str(caught.value)
            assert TOKEN not in str(caught.value)

    def test_token_envs_are_names_listed_once(self) -> None:
        with pytest.raises(ConfigError) as caught:
            parse_settings('[feed]\ntoken_envs = ["TOK_A", "TOK_A"]\n' + ENDPOINTS)
        assert (caught.value.key, caught.value.reason) == (
            "feed.token_envs[1]",
            "TOK_A is listed twice; list each token's variable once",
        )
        with pytest.raises(ConfigError) as caught:
            parse_settings(f'[feed]\ntoken_envs = ["TOK_A", "{TOKEN}"]\n' + ENDPOINTS)
        assert caught.value.key == "feed.token_envs[1]"

    def test_quotas_add_up_in_the_capacity_check(self) -> None:
        symbols = '[[strategies]]\nname = "s"\nkind = "console"\nsymbols = ["AAPL.US", "TSLA.US"]\n'
        one = '[feed]\nplan = "free"\nmax_codes_per_connection = 1\n'
        with pytest.raises(ConfigError, match="more than 1 distinct codes"):
            parse_settings(one + ENDPOINTS + symbols)
        two = parse_settings(one + 'token_envs = ["TOK_A", "TOK_B"]\n' + ENDPOINTS + symbols)
        assert two.token_names() == ("TOK_A", "TOK_B")

    def test_simulator_token(self) -> None:
        assert resolve_token(default_settings(), {}).reveal() == SIMULATOR_TOKEN
        assert SIMULATOR_TOKEN == "tickvisor-sim"  # noqa: S105 - the simulator's fixed, public token
        assert resolve_token(default_settings(), {"ALLTICK_TOKEN": TOKEN}).reveal() == TOKEN

    def test_secret_never_shows(self) -> None:
        secret = Secret(TOKEN)
        percent = "%s" % (secret,)  # noqa: UP031 - old-style formatting is still used in logging
        shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", percent, repr([secret])]
        assert shown[:2] == ["Secret('***')", "***"]
        for text in shown:
            assert TOKEN not in text
        assert secret.reveal() == TOKEN
        assert pickle.loads(pickle.dumps(secret)).reveal() == TOKEN  # Ray must ship it  # noqa: S301
        assert secret == Secret(TOKEN)
        assert secret != Secret("other")
        with pytest.raises(TypeError):
            msgspec.json.encode(secret)  # not serialisable into a structured log by accident
        with pytest.raises(ValueError, match="non-empty"):
            Secret("")

    def test_endpoint_url_and_redact(self) -> None:
        secret = Secret(TOKEN)
        url = "wss://quote.alltick.co/quote-b-ws-api"
        assert endpoint_url(url, secret) == f"{url}?token={TOKEN}"
        assert endpoint_url(url + "?lang=en", secret) == f"{url}?lang=en&token={TOKEN}"
        assert endpoint_url(url, Secret("a b&c")) == f"{url}?token=a%20b%26c"
        assert redact(endpoint_url(url, secret)) == f"{url}?token=***"
        assert redact(endpoint_url(url + "?lang=en", secret)) == f"{url}?lang=en&token=***"
        assert redact(f"connecting to {url}?Token={TOKEN} now") == f"connecting to {url}?Token=*** now"
        assert redact(url) == url
        with pytest.raises(ValueError, match="already carries a token") as caught:
            endpoint_url(f"{url}?token={TOKEN}", secret)
        assert TOKEN not in str(caught.value)

    def test_no_config_error_shows_a_token(self) -> None:
        leaks = [
            f'[endpoints.stock]\nurl = "wss://quote.alltick.co/quote-stock-b-ws-api?token={TOKEN}"\n',
            f'[endpoints.stock]\nurl = "https://quote.alltick.co/quote-stock-b-ws-api?x=1&token={TOKEN}"\n',
            f'[endpoints.stock]\nurl = "wss://user:{TOKEN}@quote.alltick.co/quote-stock-b-ws-api"\n',
            f'[feed]\ntoken_env = "{TOKEN}"\n' + ENDPOINTS,  # the token pasted where its NAME belongs
            '[feed]\ntoken_env = "e945d7d9abc4f5Ae3c"\n' + ENDPOINTS,  # a token without dashes
        ]
        for text in leaks:
            exc = config_error(text)
            assert TOKEN not in str(exc)
            assert TOKEN not in repr(exc)
            assert "e945d7d9abc4f5Ae3c" not in str(exc)


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
