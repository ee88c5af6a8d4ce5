"""The exchange_calendars adapter: holidays, early closes and lunch breaks reach the session core."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from actors.calendars import session_table, source
from actors.core.errors import ConfigError

NY = zoneinfo.ZoneInfo("America/New_York")
HK = zoneinfo.ZoneInfo("Asia/Hong_Kong")


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, tz: dt.tzinfo) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=tz).timestamp()


def test_the_library_is_installed_and_knows_the_vendors_exchanges() -> None:
    calendars = source()
    assert calendars is not None
    assert {"XNYS", "XHKG", "XSHG"} <= set(calendars.names())


def test_new_york_holiday_early_close_and_weekend() -> None:
    s = session_table({}).session_of("AAPL.US")
    assert s.name == "XNYS"
    assert s.is_open(at(2026, 12, 24, 10, tz=NY))
    assert not s.is_open(at(2026, 12, 25, 10, tz=NY))  # Christmas
    assert s.next_change(at(2026, 12, 24, 16, tz=NY)) == at(2026, 12, 28, 9, 30, tz=NY)
    assert s.next_change(at(2026, 11, 27, 10, tz=NY)) == at(2026, 11, 27, 13, tz=NY)  # early close


def test_hong_kong_lunch_break() -> None:
    s = session_table({}).session_of("700.HK")
    assert s.is_open(at(2026, 12, 7, 11, tz=HK))
    assert not s.is_open(at(2026, 12, 7, 12, 30, tz=HK))
    assert s.next_change(at(2026, 12, 7, 12, 30, tz=HK)) == at(2026, 12, 7, 13, tz=HK)


def test_an_unknown_calendar_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        session_table({"*.US": "NYSEE"})
    assert "feed.sessions.'*.US'" in str(err.value)
    assert "XNYS" in str(err.value)
