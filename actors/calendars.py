"""Exchange calendars for the trading-session core: exchange_calendars behind
``core.sessions.CalendarSource``.

The library builds a calendar's schedule (about twenty years back, one year ahead) when first asked, which
takes a fraction of a second; each calendar is built once per process and kept. Outside the schedule's span
a calendar has no open interval, so its codes read as closed rather than stale.
"""

from __future__ import annotations

import functools
import importlib
import warnings
import zoneinfo
from collections.abc import Collection, Mapping
from typing import Any

from actors.core.errors import ConfigError
from actors.core.sessions import Interval, SessionTable
from actors.core.settings import Settings

_NS: int = 1_000_000_000


class ExchangeCalendars:
    """The calendars of the exchange_calendars package (XNYS, XHKG, XSHG and about a hundred more)."""

    def __init__(self, module: Any) -> None:
        self._xc = module

    def names(self) -> Collection[str]:
        """Every calendar name exchange_calendars knows, aliases included."""
        return frozenset(self._xc.get_calendar_names())

    @functools.cache  # noqa: B019 - one instance per process (source()); the calendars live as long
    def _calendar(self, name: str) -> Any:
        # exchange_calendars 4.13 still uses pandas APIs that pandas 3.1 deprecates (Series.values on
        # tz-aware columns): those warnings are the library's, not the user's to act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return self._xc.get_calendar(name)

    def intervals(self, name: str, start: float, end: float) -> list[Interval]:
        """Open intervals of ``name`` overlapping ``[start, end)``; a lunch break splits a day in two."""
        sched = self._calendar(name).schedule
        opens = sched["open"].to_numpy(dtype="datetime64[ns]").astype("int64") / _NS
        closes = sched["close"].to_numpy(dtype="datetime64[ns]").astype("int64") / _NS
        rows = ((closes > start) & (opens < end)).nonzero()[0]
        has_breaks = "break_start" in sched.columns
        out: list[Interval] = []
        for i in rows:
            a, b = float(opens[i]), float(closes[i])
            if has_breaks:
                bs, be = sched["break_start"].iloc[i], sched["break_end"].iloc[i]
                if bs is not None and be is not None and bs == bs and be == be:  # NaT != NaT  # noqa: PLR0124 - NaT is the one value not equal to itself
                    out += [(a, bs.timestamp()), (be.timestamp(), b)]
                    continue
            out.append((a, b))
        return out


@functools.cache
def source() -> ExchangeCalendars | None:
    """The process's calendars, or None where exchange_calendars is not installed."""
    try:
        return ExchangeCalendars(importlib.import_module("exchange_calendars"))
    except ImportError:
        return None


class _Lazy:
    """exchange_calendars imported when a calendar is first named: a table of windows, ``always`` and
    ``fx`` alone does not pay for pandas.
    """

    def names(self) -> Collection[str]:
        calendars = source()
        return calendars.names() if calendars is not None else ()

    def intervals(self, name: str, start: float, end: float) -> list[Interval]:
        calendars = source()
        return calendars.intervals(name, start, end) if calendars is not None else []


def session_table(table: Mapping[str, str], key: str = "feed.sessions") -> SessionTable:
    """A ``SessionTable`` over IANA zones and exchange_calendars, checked at once.

    Raises:
        ConfigError: (naming ``key``) an unknown calendar name, zone or malformed window.

    """
    return SessionTable(table, zones=zoneinfo.ZoneInfo, calendars=_Lazy(), key=key)


def check_sessions(settings: Settings, source_name: str = "<config>") -> None:
    """Refuse ``[feed.sessions]`` naming an unknown calendar or zone, or a malformed window.

    The pure settings core checks the form only; this is the check that reads the zone database and the
    calendars, run wherever a configuration is loaded (``actors.config.load_settings``, ``tickvisor check``).

    Raises:
        ConfigError: its key is ``feed.sessions.'<pattern>'``; the reason lists the valid calendar names or
            the expected form of a window.

    """
    try:
        session_table(settings.feed.sessions)
    except ConfigError as exc:
        where = "" if source_name == "<config>" else f" (in {source_name})"
        raise ConfigError(exc.key, exc.reason + where) from None
