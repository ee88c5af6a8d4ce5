"""Tests of actors.core.tokens: the token lives in the environment and never shows in a message."""

from __future__ import annotations

import pickle

import msgspec
import pytest

from actors.core.errors import ConfigError
from actors.core.settings import Settings, default_settings, parse_settings
from actors.core.tokens import SIMULATOR_TOKEN, Secret, endpoint_url, redact, resolve_token, resolve_tokens
from tests.config_text import ENDPOINTS, TOKEN, config_error


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
        assert SIMULATOR_TOKEN == "tickvisor-sim"
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
