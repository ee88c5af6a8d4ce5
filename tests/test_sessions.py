"""The trading-session core: specs, windows, the table's precedence, and open/next-change consistency."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Collection

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.errors import ConfigError
from actors.core.sessions import (
    ALWAYS,
    FX,
    Always,
    Interval,
    SessionTable,
    build,
    default_session,
    merge,
    parse_windows,
)

UTC = dt.UTC
ZONES = zoneinfo.ZoneInfo


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, tz: dt.tzinfo = UTC) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=tz).timestamp()


class FakeCalendars:
    """One calendar, 'XTST': open 10:00-12:00 and 13:00-15:00 UTC on weekdays, closed on 2026-12-25."""

    def names(self) -> Collection[str]:
        return {"XTST"}

    def intervals(self, name: str, start: float, end: float) -> list[Interval]:
        assert name == "XTST"
        out = []
        day = dt.datetime.fromtimestamp(start, UTC).date() - dt.timedelta(days=1)
        while at(day.year, day.month, day.day) < end:
            if day.weekday() < 5 and day != dt.date(2026, 12, 25):
                base = at(day.year, day.month, day.day)
                out += [(base + 10 * 3600, base + 12 * 3600), (base + 13 * 3600, base + 15 * 3600)]
            day += dt.timedelta(days=1)
        return out


# --- specs -----------------------------------------------------------------------------------------------


def test_always_is_open_and_never_changes() -> None:
    s = build("always", ZONES, None)
    assert s.is_open(0.0)
    assert s.is_open(at(2026, 12, 26, 3))
    assert s.next_change(at(2026, 12, 26, 3)) is None


def test_fx_closes_friday_17_and_opens_sunday_17_new_york() -> None:
    ny = ZONES("America/New_York")
    s = build("fx", ZONES, None)
    friday = at(2026, 12, 4, 16, 59, tz=ny)
    assert s.is_open(friday)
    assert s.next_change(friday) == at(2026, 12, 4, 17, tz=ny)
    assert not s.is_open(at(2026, 12, 5, 12, tz=ny))  # Saturday
    assert not s.is_open(at(2026, 12, 6, 16, 59, tz=ny))
    assert s.next_change(at(2026, 12, 5, 12, tz=ny)) == at(2026, 12, 6, 17, tz=ny)
    assert s.is_open(at(2026, 12, 6, 17, tz=ny))
    # Midnights inside the week are no change: the next change after Monday is Friday's close.
    assert s.next_change(at(2026, 12, 7, 9, tz=ny)) == at(2026, 12, 11, 17, tz=ny)


def test_a_window_past_midnight_runs_into_the_next_day() -> None:
    s = build("Mon-Fri 23:00-22:00 UTC", ZONES, None)
    assert not s.is_open(at(2026, 12, 7, 12))  # Monday noon: Sunday opens nothing
    assert s.is_open(at(2026, 12, 7, 23))
    assert s.is_open(at(2026, 12, 8, 21, 59))
    assert not s.is_open(at(2026, 12, 8, 22, 30))  # the daily hour's pause
    assert s.is_open(at(2026, 12, 12, 21))  # Saturday: Friday's window runs into it
    assert not s.is_open(at(2026, 12, 12, 22))
    assert s.next_change(at(2026, 12, 12, 22)) == at(2026, 12, 14, 23)


def test_several_windows_with_a_lunch_break_and_24_00() -> None:
    s = build(
        "Mon-Fri 09:30-12:00 Asia/Hong_Kong, Mon-Fri 13:00-16:00 Asia/Hong_Kong, Sat 00:00-24:00 UTC",
        ZONES,
        None,
    )
    hk = ZONES("Asia/Hong_Kong")
    assert s.is_open(at(2026, 12, 7, 11, tz=hk))
    assert not s.is_open(at(2026, 12, 7, 12, 30, tz=hk))
    assert s.next_change(at(2026, 12, 7, 12, 30, tz=hk)) == at(2026, 12, 7, 13, tz=hk)
    assert s.is_open(at(2026, 12, 12, 23, 59))
    assert not s.is_open(at(2026, 12, 13, 0, 0))


def test_a_window_may_name_seconds() -> None:
    s = build("Mon 10:00:15-10:00:45 UTC", ZONES, None)
    assert not s.is_open(at(2026, 12, 7, 10) + 14)
    assert s.is_open(at(2026, 12, 7, 10) + 15)
    assert s.next_change(at(2026, 12, 7, 10) + 20) == at(2026, 12, 7, 10) + 45
    with pytest.raises(ConfigError, match="not a session window"):
        parse_windows("Mon 10:00:60-11:00 UTC", ZONES)


def test_windows_follow_daylight_saving_in_their_zone() -> None:
    ny = ZONES("America/New_York")
    s = build("Mon-Fri 09:30-16:00 America/New_York", ZONES, None)
    summer, winter = at(2026, 7, 6, 9, 30, tz=ny), at(2026, 12, 7, 9, 30, tz=ny)
    assert dt.datetime.fromtimestamp(summer, UTC).hour == 13
    assert dt.datetime.fromtimestamp(winter, UTC).hour == 14
    assert s.is_open(summer)
    assert s.is_open(winter)
    assert not s.is_open(winter - 1)


def test_a_day_range_may_wrap_the_week() -> None:
    s = build("Sat-Mon 00:00-24:00 UTC", ZONES, None)
    assert s.is_open(at(2026, 12, 5, 1))  # Saturday
    assert s.is_open(at(2026, 12, 6, 1))  # Sunday
    assert s.is_open(at(2026, 12, 7, 1))  # Monday
    assert not s.is_open(at(2026, 12, 8, 1))


def test_a_calendar_comes_from_the_source_with_its_breaks_and_holidays() -> None:
    s = build("XTST", ZONES, FakeCalendars())
    assert s.is_open(at(2026, 12, 24, 11))
    assert not s.is_open(at(2026, 12, 24, 12, 30))
    assert not s.is_open(at(2026, 12, 25, 11))  # the holiday
    assert s.next_change(at(2026, 12, 24, 16)) == at(2026, 12, 28, 10)  # over the holiday and the weekend


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("Mon-Fri 9:30-16:00", "not a session window"),
        (
            "Mon-Fri 09:30-16:00 Mars/Olympus",
            "'Mars/Olympus' in 'Mon-Fri 09:30-16:00 Mars/Olympus' is not an IANA",
        ),
        ("Mon-Fry 09:30-16:00 UTC", "not a session window; expected DAYS HH:MM-HH:MM ZONE"),
        ("Mon 25:00-26:00 UTC", "not a session window"),
        ("Mon 24:00-10:00 UTC", "not a session window"),
        ("Mon 10:00-10:00 UTC", "not a session window"),
        ("Mon 10:61-11:00 UTC", "not a session window"),
        ("Mon-Fri 09:30-16:00 UTC, nonsense", "'nonsense' is not a session window"),
    ],
)
def test_a_malformed_window_is_refused_with_the_expected_form(spec: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"feed\.sessions") as err:
        parse_windows(spec, ZONES)
    assert says in str(err.value)


def test_an_unknown_calendar_is_refused_with_the_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        build("XNYZ", ZONES, FakeCalendars(), key="feed.sessions.'*.US'")
    assert "feed.sessions.'*.US'" in str(err.value)
    assert "'XNYZ' is neither 'always', 'fx', an exchange calendar nor a window" in str(err.value)
    assert "calendars: XTST" in str(err.value)


@pytest.mark.parametrize(
    ("spec", "hint"), [("xtst", "did you mean 'XTST'?"), ("XTTS", "did you mean 'XTST'?")]
)
def test_a_near_miss_calendar_name_gets_the_closest_one(spec: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        build(spec, ZONES, FakeCalendars())
    assert hint in str(err.value)


def test_a_far_miss_gets_no_guess() -> None:
    with pytest.raises(ConfigError) as err:
        build("QQQQQQ", ZONES, FakeCalendars())
    assert "did you mean" not in str(err.value)


def test_without_a_calendar_library_the_error_says_so() -> None:
    with pytest.raises(ConfigError, match="exchange_calendars is not installed"):
        build("XNYS", ZONES, None)


# --- the table --------------------------------------------------------------------------------------------


def test_defaults_by_the_vendors_notation() -> None:
    assert default_session("AAPL.US") == "XNYS"
    assert default_session("BRK.B.US") == "XNYS"
    assert default_session("700.HK") == "XHKG"
    assert default_session("600519.SH") == "XSHG"
    assert default_session("000627.SZ") == "XSHG"
    assert default_session("EURUSD") == FX
    assert default_session("XAUUSD") == FX
    assert default_session("USOIL") == FX
    assert default_session("BTCUSDT") == ALWAYS
    assert default_session("1000PEPEUSDT") == ALWAYS
    assert default_session("ETHBTC") == ALWAYS


def test_the_most_specific_entry_wins_then_the_first_listed() -> None:
    table = SessionTable(
        {"*": "always", "*.US": "XTST", "AAPL.US": "fx", "A*.US": "Mon 00:00-01:00 UTC", "?APL.US": "fx"},
        zones=ZONES,
        calendars=FakeCalendars(),
    )
    assert table.spec_of("AAPL.US") == "fx"  # exact
    assert (
        table.spec_of("AMZN.US") == "Mon 00:00-01:00 UTC"
    )  # 'A*.US' has more literal characters than '*.US'
    assert table.spec_of("BAPL.US") == "fx"  # '?APL.US' beats the others
    assert table.spec_of("TSLA.US") == "XTST"
    assert table.spec_of("EURUSD") == "always"  # '*' matches everything
    tied = SessionTable({"A*": "fx", "*A": "always"}, zones=ZONES, calendars=None)
    assert tied.spec_of("ABA") == "fx"


def test_codes_the_table_does_not_name_take_the_defaults() -> None:
    table = SessionTable({"700.HK": "always"}, zones=ZONES, calendars=FakeCalendars())
    assert table.spec_of("700.HK") == "always"
    assert table.spec_of("EURUSD") == "fx"
    assert isinstance(table.session_of("BTCUSDT"), Always)
    with pytest.raises(ConfigError, match="'XNYS' is neither"):
        table.session_of("AAPL.US")  # the fake source has no XNYS


def test_every_entry_is_checked_when_the_table_is_built() -> None:
    with pytest.raises(ConfigError) as err:
        SessionTable(
            {"*.US": "XNYS", "EURUSD": "Mon-Fri 25:00-26:00 UTC"}, zones=ZONES, calendars=FakeCalendars()
        )
    assert "feed.sessions.'*.US'" in str(err.value)


def test_one_session_object_serves_every_code_of_a_spec() -> None:
    table = SessionTable({"*.US": "fx"}, zones=ZONES, calendars=None)
    assert table.session_of("AAPL.US") is table.session_of("TSLA.US")


def test_windows_that_cover_the_whole_week_never_change() -> None:
    s = build("Mon-Sun 00:02-00:01 UTC, Mon-Sun 00:02-00:01 America/New_York", ZONES, None)
    assert s.is_open(at(2026, 1, 1))
    assert s.next_change(at(2026, 1, 1)) is None


def test_merge_joins_touching_and_overlapping_intervals() -> None:
    assert merge([(5.0, 6.0), (0.0, 1.0), (1.0, 2.0), (1.5, 3.0), (7.0, 7.0)]) == [(0.0, 3.0), (5.0, 6.0)]


# --- properties -----------------------------------------------------------------------------------------

WINDOWS = st.builds(
    lambda d1, d2, s, e, zone: f"{d1}-{d2} {s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d} {zone}",
    st.sampled_from(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]),
    st.sampled_from(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]),
    st.integers(0, 24 * 60 - 1),
    st.integers(1, 24 * 60 - 1),
    st.sampled_from(["UTC", "America/New_York", "Asia/Hong_Kong", "Europe/London"]),
).filter(lambda w: w.split()[1].split("-")[0] != w.split()[1].split("-")[1])
TIMES = st.floats(at(2026, 1, 1), at(2027, 12, 31))


@settings(max_examples=150, deadline=None)
@given(st.lists(WINDOWS, min_size=1, max_size=3), TIMES)
def test_nothing_changes_before_next_change_and_it_changes_then(windows: list[str], t: float) -> None:
    s = build(", ".join(windows), ZONES, None)
    state = s.is_open(t)
    change = s.next_change(t)
    if change is None:  # windows whose union is the whole week: always open
        assert state
        assert all(s.is_open(t + k * 1800.0) for k in range(8 * 48))
        return
    assert change > t
    assert change - t <= 8 * 86_400
    for k in range(1, 8):
        probe = t + (change - t) * k / 8
        if probe < change:
            assert s.is_open(probe) == state
    assert s.is_open(change) != state
