"""Tests of actors.config: the configuration file is read, and its errors name the file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from actors.config import load_settings
from actors.core.errors import ConfigError
from tests.config_text import ENDPOINTS


class TestConfigFile:
    """Reading the file: a missing, unreadable or broken one is a ConfigError naming its path."""

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


class TestSessions:
    """[feed.sessions] is checked where the file is read: calendars and zones exist, windows parse."""

    @pytest.mark.parametrize(
        ("spec", "words"),
        [
            ("NYSEE", ("feed.sessions.'*.US'", "calendars: ", "XNYS")),
            ("Mon-Fri 09:30-16:00", ("feed.sessions.'*.US'", "DAYS HH:MM-HH:MM ZONE")),
            ("Mon-Fri 09:30-16:00 Mars/Olympus", ("'Mars/Olympus'", "not an IANA time zone")),
            ("Mon-Fry 09:30-16:00 UTC", ("feed.sessions.'*.US'", "is not a session window")),
        ],
    )
    def test_a_bad_session_is_refused_with_its_key_and_the_file(
        self, spec: str, words: tuple[str, ...]
    ) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "sessions.toml"
            path.write_text(f'[feed.sessions]\n"*.US" = "{spec}"\n' + ENDPOINTS, encoding="utf-8")
            with pytest.raises(ConfigError) as caught:
                load_settings(path)
            assert caught.value.key == "feed.sessions.'*.US'"
            for word in (*words, str(path)):
                assert word in str(caught.value)

    def test_good_sessions_load(self) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "sessions.toml"
            path.write_text(
                '[feed.sessions]\n"*.US" = "XNYS"\n"EURUSD" = "fx"\n"XAUUSD" = "Mon-Fri 23:00-22:00 UTC"\n'
                + ENDPOINTS,
                encoding="utf-8",
            )
            assert load_settings(path).feed.sessions["XAUUSD"] == "Mon-Fri 23:00-22:00 UTC"
