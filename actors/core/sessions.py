"""Trading sessions: when the market of a code is open, so that a closed market is not taken for a dead feed.

Rules of this module:
1. Time is a parameter: epoch seconds (UTC) in, epoch seconds out. Zones and exchange calendars come from
   providers the caller hands in (``zones``, ``calendars``), so the module reads no clock, file or database.
2. A session answers, for a time ``t``: is it open (``is_open``), and when does that next change
   (``next_change``; ``None`` for never). Open intervals are half-open, ``[open, close)``.
3. A session is named by a spec: ``always``; ``fx`` (24/5: closed from Friday 17:00 to Sunday 17:00
   America/New_York); an exchange calendar's name (``XNYS``, holidays, early closes and breaks included); or
   explicit windows ``DAYS HH:MM-HH:MM ZONE`` (or ``HH:MM:SS``), several comma-separated. DAYS is one
   day or a range of ``Mon``..``Sun``; the times are wall-clock times in the IANA zone ZONE; an end
   before the start runs past midnight into the next day; ``24:00`` ends at the day's midnight.
4. A table maps codes and glob patterns to specs; the most specific match wins (an exact code; then the
   pattern with the most literal characters; then the one listed first). Where the table says nothing, the
   built-in default by the vendor's notation applies (``DEFAULTS``, then ``default_session``).
"""

from __future__ import annotations

import datetime as dt
import difflib
import fnmatch
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from actors.core.errors import ConfigError

DAY_S: Final = 86_400.0
WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ALWAYS: Final = "always"
FX: Final = "fx"
# 24/5 as AllTick's forex, metals and CFDs trade it: the week opens Sunday 17:00 and closes Friday 17:00 in
# New York (the interbank convention).
FX_WINDOWS: Final = (
    "Sun 17:00-24:00 America/New_York, Mon-Thu 00:00-24:00 America/New_York, Fri 00:00-17:00 America/New_York"
)
WINDOW_FORM: Final = (
    "DAYS HH:MM-HH:MM ZONE, e.g. 'Mon-Fri 09:30-16:00 America/New_York' or 'Sat 00:00-24:00 UTC' "
    "(HH:MM:SS for seconds)"
)

# The built-in table by the vendor's notation (PROTOCOL.md "Endpoints"): stocks by their suffix; the
# Shanghai and Shenzhen exchanges share one holiday calendar (XSHG).
DEFAULTS: Final[Mapping[str, str]] = {
    "*.US": "XNYS",
    "*.HK": "XHKG",
    "*.SH": "XSHG",
    "*.SZ": "XSHG",
}
# Crypto quotes in a stablecoin or a coin and trades around the clock; every other code of the forex/crypto
# endpoint (forex pairs, metals, oil, CFD indices) follows fx.
_CRYPTO_QUOTES: Final = ("USDT", "USDC", "BUSD", "FDUSD", "TUSD", "DAI", "BTC", "ETH")

# A horizon of intervals computed at once: two weeks covers any weekly pattern, holiday or long weekend.
_HORIZON_S: Final = 14 * DAY_S

_WINDOW_RE: Final = re.compile(
    r"^(?P<days>[A-Za-z]{3}(?:-[A-Za-z]{3})?)\s+"
    r"(?P<start>\d{1,2}:\d{2}(?::\d{2})?)-(?P<end>\d{1,2}:\d{2}(?::\d{2})?)\s+(?P<zone>\S+)$"
)

Interval = tuple[float, float]


class CalendarSource(Protocol):
    """Exchange calendars, as the shell provides them (``actors.calendars`` wraps exchange_calendars)."""

    def names(self) -> Collection[str]:
        """Every calendar name this source knows."""
        ...

    def intervals(self, name: str, start: float, end: float) -> list[Interval]:
        """The open intervals of ``name`` overlapping ``[start, end)``, breaks left out, in order."""
        ...


Zones = Callable[[str], dt.tzinfo]


class Session(Protocol):
    """When one market is open."""

    name: str

    def is_open(self, t: float) -> bool:
        """Whether the session is open at ``t``."""
        ...

    def next_change(self, t: float) -> float | None:
        """The first time after ``t`` at which ``is_open`` changes, or None if it never does."""
        ...


class Always:
    """A market that never closes (crypto, the simulator)."""

    def __init__(self, name: str = ALWAYS) -> None:
        self.name = name

    def is_open(self, t: float) -> bool:  # noqa: ARG002
        """Always open."""
        return True

    def next_change(self, t: float) -> float | None:  # noqa: ARG002
        """Never changes."""
        return None


class Intervals:
    """A session given by the open intervals a function yields for a span of time, computed ahead."""

    def __init__(self, name: str, source: Callable[[float, float], list[Interval]]) -> None:
        self.name = name
        self._source = source
        self._span: Interval = (0.0, 0.0)
        self._open: list[Interval] = []

    def _cover(self, t: float) -> list[Interval]:
        lo, hi = self._span
        if not lo <= t < hi - DAY_S:
            lo, hi = t - DAY_S, t + _HORIZON_S
            self._open = merge(self._source(lo, hi))
            self._span = (lo, hi)
        return self._open

    def is_open(self, t: float) -> bool:
        """Whether ``t`` lies in an open interval."""
        return any(a <= t < b for a, b in self._cover(t))

    def next_change(self, t: float) -> float | None:
        """The next open or close after ``t``; None if the next eight weeks hold none.

        A boundary counts only inside the span computed: an interval that reaches either end of the span
        may go on past it (joined to the next day's), so the span moves on and the search goes on there.
        """
        probe = t
        for _ in range(4):  # up to eight weeks ahead (a long holiday, or no change at all)
            intervals = self._cover(probe)
            start, end = self._span
            after = max(t, start)  # before the span's start an interval may begin earlier than computed
            for a, b in intervals:
                if after < a < end:
                    return a
                if after < b < end:
                    return b
            probe = end - DAY_S
        return None


@dataclass(frozen=True)
class Window:
    """One explicit weekly window.

    It opens on ``days`` at ``start`` and closes at ``end`` (seconds into the day, wall clock in ``zone``);
    ``end <= start`` closes on the next day.
    """

    days: frozenset[int]
    start: int
    end: int
    zone: str
    tz: dt.tzinfo

    def intervals(self, start: float, end: float) -> Iterable[Interval]:
        """Its open intervals overlapping ``[start, end)``."""
        first = dt.datetime.fromtimestamp(start, self.tz).date() - dt.timedelta(days=1)
        last = dt.datetime.fromtimestamp(end, self.tz).date()
        day = first
        while day <= last:
            if day.weekday() in self.days:
                closes_on = day if self.end > self.start else day + dt.timedelta(days=1)
                a, b = self._at(day, self.start), self._at(closes_on, self.end)
                if b > start and a < end:
                    yield (a, b)
            day += dt.timedelta(days=1)

    def _at(self, day: dt.date, seconds: int) -> float:
        if seconds >= _DAY:
            day, seconds = day + dt.timedelta(days=1), 0
        hour, rest = divmod(seconds, 3600)
        return dt.datetime.combine(day, dt.time(hour, *divmod(rest, 60)), tzinfo=self.tz).timestamp()


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sort ``intervals`` and join those that overlap or touch."""
    out: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


_DAY: Final = 86_400


def _seconds(text: str, *, is_end: bool) -> int | None:
    """``HH:MM`` or ``HH:MM:SS`` as seconds into the day; ``24:00`` only as an end."""
    h, m, sec = (int(part) for part in [*text.split(":"), "0"][:3])
    if m >= 60 or sec >= 60 or h > 24 or (h == 24 and (m or sec or not is_end)):
        return None
    return h * 3600 + m * 60 + sec


def _days(text: str) -> frozenset[int] | None:
    names = [w.lower() for w in WEEKDAYS]
    first, _, last = text.lower().partition("-")
    if first not in names or (last and last not in names):
        return None
    a = names.index(first)
    b = names.index(last) if last else a
    return frozenset((a + i) % 7 for i in range((b - a) % 7 + 1))


def parse_windows(spec: str, zones: Zones, *, key: str = "feed.sessions") -> list[Window]:
    """The windows of an explicit spec like ``Mon-Fri 09:30-16:00 America/New_York, Sat 10:00-12:00 UTC``.

    Raises:
        ConfigError: (naming ``key``) a part is not of the form ``DAYS HH:MM-HH:MM ZONE`` or names an unknown
            zone.

    """
    windows = []
    for part in (p.strip() for p in spec.split(",")):
        m = _WINDOW_RE.match(part)
        days = _days(m["days"]) if m else None
        start = _seconds(m["start"], is_end=False) if m else None
        end = _seconds(m["end"], is_end=True) if m else None
        if m is None or days is None or start is None or end is None or start == end:
            raise ConfigError(key, f"{part!r} is not a session window; expected {WINDOW_FORM}")
        try:
            tz = zones(m["zone"])
        except (KeyError, ValueError) as exc:  # zoneinfo raises ZoneInfoNotFoundError, a KeyError
            raise ConfigError(
                key, f"{m['zone']!r} in {part!r} is not an IANA time zone (e.g. UTC, America/New_York)"
            ) from exc
        windows.append(Window(days, start, end, m["zone"], tz))
    return windows


def build(
    spec: str, zones: Zones, calendars: CalendarSource | None, *, key: str = "feed.sessions"
) -> Session:
    """The session that ``spec`` names (rule 3).

    Raises:
        ConfigError: (naming ``key``) an unknown calendar name, with the valid names, or a malformed window.

    """
    text = spec.strip()
    if text.lower() == ALWAYS:
        return Always()
    if text.lower() == FX:
        return _windowed(FX, parse_windows(FX_WINDOWS, zones, key=key))
    if _WINDOW_RE.match(text.split(",")[0].strip()):
        return _windowed(text, parse_windows(text, zones, key=key))
    names = calendars.names() if calendars is not None else ()
    if text in names and calendars is not None:
        source = calendars
        return Intervals(text, lambda a, b: source.intervals(text, a, b))
    valid = ", ".join(sorted(names)) or "none (exchange_calendars is not installed)"
    raise ConfigError(
        key,
        f"{spec!r} is neither 'always', 'fx', an exchange calendar nor a window ({WINDOW_FORM})"
        f"{_did_you_mean(text, names)}; calendars: {valid}",
    )


def _did_you_mean(text: str, names: Iterable[str]) -> str:
    """``; did you mean 'XNYS'?`` for the closest calendar name (case ignored), or nothing."""
    by_upper = {name.upper(): name for name in names}
    close = difflib.get_close_matches(text.upper(), list(by_upper), n=1, cutoff=0.6)
    return f"; did you mean {by_upper[close[0]]!r}?" if close else ""


def _windowed(name: str, windows: list[Window]) -> Intervals:
    return Intervals(name, lambda a, b: [i for w in windows for i in w.intervals(a, b)])


def default_session(code: str) -> str:
    """The built-in session of ``code`` by the vendor's notation (rule 4)."""
    for pattern, spec in DEFAULTS.items():
        if fnmatch.fnmatchcase(code, pattern):
            return spec
    if code.endswith(_CRYPTO_QUOTES):
        return ALWAYS
    return FX


def _specificity(pattern: str) -> int:
    return sum(1 for ch in pattern if ch not in "*?[]")


class SessionTable:
    """Which session each code follows: the configured table over the built-in defaults (rule 4).

    Args:
        table: code or glob pattern -> spec, in the order configured.
        zones: IANA zone name -> tzinfo (the shell passes ``zoneinfo.ZoneInfo``).
        calendars: the exchange calendars, or None where none are installed.
        key: the configuration key named in errors.

    Raises:
        ConfigError: any spec of ``table`` is invalid (checked here, at start-up, not when a code arrives).

    """

    def __init__(
        self,
        table: Mapping[str, str],
        *,
        zones: Zones,
        calendars: CalendarSource | None,
        key: str = "feed.sessions",
    ) -> None:
        self._table = dict(table)
        self._zones = zones
        self._calendars = calendars
        self._key = key
        self._sessions: dict[str, Session] = {}
        for pattern, spec in self._table.items():
            self._session(spec, f"{key}.{pattern!r}" if key else pattern)

    def _session(self, spec: str, key: str) -> Session:
        session = self._sessions.get(spec)
        if session is None:
            session = build(spec, self._zones, self._calendars, key=key)
            self._sessions[spec] = session
        return session

    def spec_of(self, code: str) -> str:
        """The spec ``code`` follows: its exact entry, the most specific pattern, else the default."""
        if code in self._table:
            return self._table[code]
        best: tuple[int, int] | None = None
        spec = None
        for order, (pattern, value) in enumerate(self._table.items()):
            if fnmatch.fnmatchcase(code, pattern):
                rank = (_specificity(pattern), -order)
                if best is None or rank > best:
                    best, spec = rank, value
        return spec if spec is not None else default_session(code)

    def session_of(self, code: str) -> Session:
        """The session ``code`` follows.

        Raises:
            ConfigError: its default names a calendar that is not installed.

        """
        return self._session(self.spec_of(code), self._key)
