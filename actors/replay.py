"""``tickvisor replay``: feed a recorded tape through a strategy's hooks, in-process, without a feed or Ray.

    tickvisor replay TAPE --strategy desk.vwap:Vwap [--options JSON] [--speed X | --speed max] [--codes C ...]

Rules of this module:
1. The strategy runs in ``actors.testing.StrategyHarness``: the same delivery rules as a job (per-code
   order, a duplicate or older seq kept from ``on_ticks``), ``on_start`` before the first batch and
   ``on_stop`` after the last. Its ``self.clock()`` follows the tape: before each batch it is set to the
   batch's latest tick time (it never goes back).
2. Ticks go in recorded order (``actors.tape.read_tape``). ``--speed max`` (the default) delivers them
   as fast as the strategy takes them, in batches of up to ``MAX_BATCH``. ``--speed X`` keeps the
   recorded pace X times faster: batches span at most ``PACE_SLICE_S`` of real time, and the wait before
   each is ``Pacer.delay`` (pure: the time is its argument), slept with ``asyncio.sleep``.
3. A corrupt row is named on stderr (file, row) and skipped; the replay goes on. No readable tape at the
   path, a bad argument or a strategy that cannot be imported or built: exit 2, one line naming it.
4. Progress goes to stderr every ``PROGRESS_EVERY_S`` of a long replay; one summary line on stdout ends
   it: ticks, codes, the span of tick times, the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from operator import attrgetter
from pathlib import Path
from typing import Any, Final, TextIO

from actors.core.errors import ConfigError, FeedError
from actors.core.normalise import Tick

MAX_BATCH: Final = 4096  # ticks per batch at --speed max: the tape reader's chunk
PACE_SLICE_S: Final = 0.05  # real seconds of tape a paced batch spans at most
PROGRESS_EVERY_S: Final = 5.0
PREFIX: Final = "tickvisor replay: "
_code = attrgetter("code")
_tick_time = attrgetter("tick_time")


# --- the command line -------------------------------------------------------------------------------------


def speed(text: str) -> float | None:
    """``--speed``: a factor of the recorded pace (> 0), or ``max`` (None: as fast as possible).

    Raises:
        argparse.ArgumentTypeError: neither.

    """
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a speed: give a factor > 0 (1 = recorded pace) or max"
        )
    return value


def options(text: str) -> dict[str, Any]:
    """``--options``: a JSON object, the strategy's ``options`` table.

    Raises:
        argparse.ArgumentTypeError: not JSON, or not an object.

    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not JSON ({exc}): give an object, e.g. '{{\"window\": 20}}'"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a JSON object: give one, e.g. '{{\"window\": 20}}'"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``tickvisor replay`` on ``parser``."""
    parser.add_argument("tape", metavar="TAPE", help="a .jsonl file, a .parquet file or stem, or a directory")
    parser.add_argument(
        "--strategy", required=True, metavar="KIND",
        help="package.module:Class, imported from the current directory (or recorder, console)",
    )  # fmt: skip
    parser.add_argument(
        "--options", type=options, default={}, metavar="JSON", help="the strategy's options, a JSON object"
    )
    parser.add_argument(
        "--speed", type=speed, default=None, metavar="X|max",
        help="X times the recorded pace (1: as recorded), or max: as fast as possible (the default)",
    )  # fmt: skip
    parser.add_argument(
        "--codes", nargs="+", default=None, metavar="CODE",
        help="replay only these codes (also the strategy's symbols); default every code of the tape",
    )  # fmt: skip


# --- pacing and batches (pure) ----------------------------------------------------------------------------


class Pacer:
    """When each batch is due at ``speed`` times the recorded pace: the first batch sets the origin."""

    def __init__(self, speed: float) -> None:
        if not speed > 0:
            raise ValueError(f"a pace needs a speed > 0, not {speed}")
        self.speed = speed
        self._origin: tuple[int, float] | None = None  # (tick time in ms, time it was due)

    def delay(self, tick_time_ms: int, now: float) -> float:
        """Seconds to wait from ``now`` before delivering a batch that starts at ``tick_time_ms``; 0 when it
        is due already (the first batch, a tick time earlier than one before, or a replay behind).
        """
        if self._origin is None:
            self._origin = (tick_time_ms, now)
            return 0.0
        t0_ms, started = self._origin
        due = started + (tick_time_ms - t0_ms) / 1000 / self.speed
        return max(0.0, due - now)


def batches(ticks: list[Tick], *, most: int, span_ms: float | None) -> Iterator[list[Tick]]:
    """``ticks`` in recorded order, cut into lists of at most ``most``; with ``span_ms`` also wherever a
    tick is ``span_ms`` or more later than the first of its list.
    """
    if span_ms is None:
        for i in range(0, len(ticks), most):
            yield ticks[i : i + most]
        return
    start = 0
    first = ticks[0].tick_time if ticks else 0
    for i, tick in enumerate(ticks):
        if i - start >= most or tick.tick_time - first >= span_ms:
            yield ticks[start:i]
            start, first = i, tick.tick_time
    if start < len(ticks):
        yield ticks[start:]


class Tally:
    """What a replay delivered so far: ticks, codes, the earliest and latest tick time, skipped rows."""

    def __init__(self) -> None:
        self.ticks = 0
        self.codes: set[str] = set()
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.skipped = 0

    def add(self, ticks: list[Tick]) -> None:
        """Count a delivered batch."""
        if not ticks:
            return
        self.ticks += len(ticks)
        self.codes.update(map(_code, ticks))
        times = list(map(_tick_time, ticks))
        low, high = min(times), max(times)
        self.first_ms = low if self.first_ms is None else min(self.first_ms, low)
        self.last_ms = high if self.last_ms is None else max(self.last_ms, high)

    def span(self) -> str:
        """The tick times covered, e.g. ``2026-01-01T00:00:00.000Z .. 2026-01-01T00:00:02.590Z (2.6 s)``."""
        if self.first_ms is None or self.last_ms is None:
            return "no tick"
        return (
            f"{_utc(self.first_ms)} .. {_utc(self.last_ms)} ({(self.last_ms - self.first_ms) / 1000:.1f} s)"
        )

    def line(self, elapsed_s: float, *, done: bool) -> str:
        """A progress line (``done`` False) or the summary line."""
        rate = self.ticks / elapsed_s if elapsed_s > 0 else 0.0
        what = "done" if done else "so far"
        line = (
            f"{PREFIX}{what}: {self.ticks} ticks, {len(self.codes)} codes, span {self.span()}, "
            f"{elapsed_s:.2f} s, {rate:.0f} ticks/s"
        )
        return line + (f", {self.skipped} corrupt rows skipped" if self.skipped else "")


def _utc(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# --- the replay -------------------------------------------------------------------------------------------


async def replay_tape(
    harness: Any,
    path: str | Path,
    *,
    codes: Iterable[str] | None = None,
    pace: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    err: TextIO | None = None,
    progress_every_s: float = PROGRESS_EVERY_S,
) -> tuple[Tally, float]:
    """Deliver the tape at ``path`` to the started ``harness`` (an ``actors.testing.StrategyHarness``);
    returns what was delivered and the seconds it took.

    Args:
        harness: started; its strategy gets the ticks, its clock follows them.
        path: see ``actors.tape.tape_files``.
        codes: only these codes; None: every code.
        pace: the speed factor; None: as fast as possible.
        monotonic: the clock of the pacing and the progress lines.
        sleep: how to wait before a paced batch.
        err: where progress lines and corrupt rows are told (default ``sys.stderr``).
        progress_every_s: seconds between progress lines.

    Raises:
        TapeError: nothing is at ``path``.
        ConfigError: a Parquet tape without pyarrow.

    """
    from actors.tape import TapeError, read_tape, tape_files  # noqa: PLC0415 - pyarrow only when read

    out = err if err is not None else sys.stderr
    tape_files(Path(path))  # nothing there: TapeError before the first hook runs
    tally = Tally()

    def skip(error: TapeError) -> None:
        tally.skipped += 1
        print(f"{PREFIX}{error}; row skipped", file=out, flush=True)

    wanted = set(codes) if codes is not None else None
    pacer = Pacer(pace) if pace is not None else None
    span_ms = PACE_SLICE_S * 1000 * pace if pace is not None else None
    began = monotonic()
    next_progress = began + progress_every_s
    for chunk in read_tape(path, on_error=skip):
        ticks = chunk if wanted is None else [t for t in chunk if t.code in wanted]
        for part in batches(ticks, most=MAX_BATCH, span_ms=span_ms):
            if pacer is not None:
                wait = pacer.delay(part[0].tick_time, monotonic())
                if wait > 0:
                    await sleep(wait)
            await harness.feed_at_tape_time(part)
            tally.add(part)
        now = monotonic()
        if now >= next_progress:
            print(tally.line(now - began, done=False), file=out, flush=True)
            next_progress = now + progress_every_s
    return tally, monotonic() - began


def replay_command(args: argparse.Namespace) -> int:
    """``tickvisor replay``: build the strategy, replay the tape, print the summary; returns 0 or 2."""
    from actors.children import load_strategy_class  # noqa: PLC0415 - loads Ray's module (not Ray itself)
    from actors.testing import StrategyHarness  # noqa: PLC0415

    try:
        cls = load_strategy_class(args.strategy, "--strategy")
    except ConfigError as exc:
        print(f"{PREFIX}{exc}", file=sys.stderr)  # noqa: T201
        return 2
    harness = StrategyHarness(cls, symbols=args.codes or (), options=args.options)

    async def run() -> int:
        from actors.tape import tape_files  # noqa: PLC0415

        try:
            tape_files(Path(args.tape))
        except FeedError as exc:
            print(f"{PREFIX}{exc}", file=sys.stderr)  # noqa: T201
            return 2
        try:
            await harness.start()
        except Exception as exc:  # noqa: BLE001 - the user's __init__ or on_start: named, exit 2
            why = f"{type(exc).__name__}: {exc}"
            print(f"{PREFIX}cannot start --strategy {args.strategy}: {why}", file=sys.stderr)  # noqa: T201
            return 2
        try:
            tally, elapsed = await replay_tape(harness, args.tape, codes=args.codes, pace=args.speed)
        except FeedError as exc:  # pyarrow missing for a Parquet tape
            print(f"{PREFIX}{exc}", file=sys.stderr)  # noqa: T201
            return 2
        finally:
            await harness.stop()
        stats = await harness.strategy.statistics()
        line = tally.line(elapsed, done=True)
        if stats.out_of_order:
            line += f", {stats.out_of_order} kept from on_ticks (a duplicate or older seq)"
        print(line, flush=True)  # noqa: T201
        return 0

    return asyncio.run(run())
