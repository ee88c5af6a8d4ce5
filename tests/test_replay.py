"""``tickvisor replay`` and strategies in a user's own project.

Without Ray: the pacing and batching rules, the strategy's clock at a paced replay (a fake clock and a
fake sleep, no timed assert), corrupt rows named and skipped, bad arguments refused with exit 2.

With a real job (marked ``ray``): a user project in a temporary directory (``desk/vwap.py`` and its
``config.toml``, ``kind = "desk.vwap:Vwap"``) runs against the bundled simulator from ANOTHER directory
with ``--config``; its strategy writes what it receives, and a recorder beside it records a tape. Then
``python -m actors replay`` feeds that tape, recorded from the simulator, through the same user strategy:
it receives exactly the recorded ticks, in order; ``--codes`` keeps only those codes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.cli import main
from actors.core.normalise import Tick
from actors.replay import MAX_BATCH, Pacer, Tally, batches, replay_tape
from actors.strategy import Strategy
from actors.tape import JsonlWriter
from actors.testing import StrategyHarness
from tests.conftest import ROOT, S, write_readme_project

T0_MS = 1_800_000_000_000
FIELDS = ("code", "seq", "tick_time", "price", "volume", "turnover", "trade_direction")

# The user's strategy: every tick it receives, as one JSON line, to the file named by options["out"].
VWAP_PY = '''
"""A user strategy kept in its own project: it writes every tick it receives to options["out"]."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from actors import Strategy, Tick


class Vwap(Strategy):
    def __init__(self, name: str, symbols: list[str], options: dict[str, Any]) -> None:
        super().__init__(name, symbols, options)
        self.out = open(self.options["out"], "a", encoding="utf-8")  # noqa: SIM115
        self.notional: dict[str, Decimal] = {}
        self.volume: dict[str, Decimal] = {}

    async def on_ticks(self, ticks: list[Tick]) -> None:
        for t in ticks:
            row = [t.code, t.seq, t.tick_time, t.price, t.volume, t.turnover, t.trade_direction]
            self.out.write(json.dumps(row) + "\\n")
            if t.volume:
                v = Decimal(t.volume)
                self.notional[t.code] = self.notional.get(t.code, Decimal(0)) + Decimal(t.price) * v
                self.volume[t.code] = self.volume.get(t.code, Decimal(0)) + v
        self.out.flush()

    async def on_stop(self) -> None:
        self.out.close()
'''

CONFIG_TOML = """
[feed]
heartbeat_interval_s = 2.0
silence_deadline_s = 5.0

[endpoints.stock]
url = "ws://127.0.0.1:0/quote-stock-b-ws-api"

[endpoints.forex_crypto]
url = "ws://127.0.0.1:0/quote-b-ws-api"

[simulator]
enabled = true
tick_rate = 20.0

[[strategies]]
name = "vwap"
kind = "desk.vwap:Vwap"
symbols = ["AAPL.US", "BTCUSDT", "EURUSD"]
options = {{ out = "{out}" }}

[[strategies]]
name = "tape"
kind = "recorder"
path = "{tape}"
symbols = ["AAPL.US", "BTCUSDT", "EURUSD"]
"""


def write_project(root: Path, package: str = "desk") -> Path:
    """A user project: ``<package>/vwap.py``; returns its directory."""
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("", encoding="utf-8")
    (root / package / "vwap.py").write_text(VWAP_PY, encoding="utf-8")
    return root


def clean_env() -> dict[str, str]:
    """The environment of a user's shell: tickvisor importable (here from the checkout), no cluster."""
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env["PYTHONPATH"] = str(ROOT)
    return env


def run(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m actors ARGS`` in ``cwd`` to its end, in a session of its own killed if it overstays."""
    proc = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "actors", *args],
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(
            f"python -m actors {' '.join(args)} overstayed {timeout:g} s:\n{out[-2000:]}\n{err[-3000:]}"
        )
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def rows_of(path: Path) -> list[list[Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def tape_rows(path: Path) -> list[list[Any]]:
    return [[row[f] for f in FIELDS] for row in rows_of(path)]  # type: ignore[call-overload]


def write_tape(path: Path, ticks: list[Tick]) -> Path:
    writer = JsonlWriter(path)
    writer.write(ticks)
    writer.close(0.0)
    return path


# --- pacing and batches ------------------------------------------------------------------------------


class PacerTests:
    def test_the_first_batch_is_due_at_once_and_sets_the_origin(self) -> None:
        pacer = Pacer(2.0)
        assert pacer.delay(T0_MS, 100.0) == 0.0
        assert pacer.delay(T0_MS + 1000, 100.0) == 0.5  # 1 s of tape at twice the pace
        assert pacer.delay(T0_MS + 1000, 100.2) == pytest.approx(0.3)
        assert pacer.delay(T0_MS + 4000, 100.5) == pytest.approx(1.5)

    def test_a_replay_behind_or_an_earlier_tick_time_waits_for_nothing(self) -> None:
        pacer = Pacer(1.0)
        pacer.delay(T0_MS, 0.0)
        assert pacer.delay(T0_MS + 1000, 5.0) == 0.0
        assert pacer.delay(T0_MS - 500, 0.0) == 0.0

    def test_a_speed_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="a pace needs a speed > 0, not 0"):
            Pacer(0.0)


TICKS_30_MS_APART = [Tick("A", s, T0_MS + 30 * s, "1", "1", "1", 0, 0) for s in range(10)]


class BatchTests:
    def test_at_max_speed_batches_are_cut_by_size_only(self) -> None:
        cut = list(batches(TICKS_30_MS_APART, most=4, span_ms=None))
        assert [len(b) for b in cut] == [4, 4, 2]
        assert [t for b in cut for t in b] == TICKS_30_MS_APART

    def test_paced_batches_span_at_most_span_ms_of_tape(self) -> None:
        cut = list(batches(TICKS_30_MS_APART, most=100, span_ms=100.0))  # ticks every 30 ms
        assert [[t.seq for t in b] for b in cut] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        assert list(batches([], most=4, span_ms=100.0)) == []


def test_the_tally_says_ticks_codes_span_and_rate() -> None:
    tally = Tally()
    tally.add([Tick("A", 1, T0_MS + 2590, "1", "1", "1", 0, 0), Tick("B", 1, T0_MS, "1", "1", "1", 0, 0)])
    tally.skipped = 1
    line = tally.line(0.5, done=True)
    assert line == (
        "tickvisor replay: done: 2 ticks, 2 codes, span 2027-01-15T08:00:00.000Z .. "
        "2027-01-15T08:00:02.590Z (2.6 s), 0.50 s, 4 ticks/s, 1 corrupt rows skipped"
    )


# --- a paced replay, on a fake clock -----------------------------------------------------------------


class Clocked(Strategy):
    """Keeps each tick with its own ``self.clock()`` at delivery."""

    def __init__(self, name: str, symbols: list[str], options: dict[str, Any]) -> None:
        super().__init__(name, symbols, options)
        self.seen: list[tuple[int, float]] = []

    async def on_ticks(self, ticks: list[Tick]) -> None:
        self.seen += [(t.seq, self.clock()) for t in ticks]


async def test_a_paced_replay_sleeps_the_recorded_gaps_over_the_speed(tmp_path: Path) -> None:
    # 11 ticks 100 ms apart, then one 2 s later: at speed 2, 50 ms between the first ones, then 1 s.
    recorded = [Tick("AAPL.US", s, T0_MS + 100 * s, "1", "1", "1", 0, 0) for s in range(11)]
    recorded.append(Tick("AAPL.US", 11, T0_MS + 3000, "1", "1", "1", 0, 0))
    path = write_tape(tmp_path / "t.jsonl", recorded)
    now = [1000.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async with StrategyHarness(Clocked) as h:
        tally, took = await replay_tape(h, path, pace=2.0, monotonic=lambda: now[0], sleep=sleep)
    assert slept == pytest.approx([0.05] * 10 + [1.0])
    assert took == pytest.approx(1.5)  # 3 s of tape at twice the pace
    assert tally.ticks == 12
    # The strategy's clock is each tick's recorded time (one tick per batch at this pace).
    assert h.strategy.seen == [(t.seq, t.tick_time / 1000) for t in recorded]


async def test_at_max_speed_nothing_sleeps_and_the_clock_still_follows_the_tape(tmp_path: Path) -> None:
    recorded = [Tick("EURUSD", s, T0_MS + 1000 * s, "1.08", "0", "0", 0, 0) for s in range(1, 2 * MAX_BATCH)]
    path = write_tape(tmp_path / "t.jsonl", recorded)

    async def sleep(seconds: float) -> None:
        pytest.fail(f"slept {seconds} s at max speed")

    async with StrategyHarness(Clocked) as h:
        tally, _ = await replay_tape(h, path, pace=None, sleep=sleep)
    assert tally.ticks == len(recorded)
    assert [seq for seq, _ in h.strategy.seen] == [t.seq for t in recorded]
    clocks = [clock for _, clock in h.strategy.seen]
    assert clocks == sorted(clocks)  # per batch: its latest tick time
    assert clocks[-1] == recorded[-1].tick_time / 1000


# --- the command, in-process -------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A user project as the current directory, its package named uniquely (imports are cached)."""
    package = "desk_" + uuid.uuid4().hex[:8]
    root = write_project(tmp_path / "proj", package)
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    yield root, package
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


def test_a_corrupt_row_is_named_and_the_replay_goes_on(
    project: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, package = project
    tape = write_tape(root / "t.jsonl", [Tick("AAPL.US", s, T0_MS + s, "1", "1", "1", 0, 0) for s in (1, 2)])
    with tape.open("ab") as f:
        f.write(b'{"code": "AAPL.US", "seq": "x"}\n')
    write_tape(root / "more.jsonl", [Tick("AAPL.US", 3, T0_MS + 3, "1", "1", "1", 0, 0)])
    tape.write_bytes(tape.read_bytes() + (root / "more.jsonl").read_bytes())
    out = root / "got.jsonl"
    code = main(
        [
            "replay",
            str(tape),
            "--strategy",
            f"{package}.vwap:Vwap",
            "--options",
            json.dumps({"out": str(out)}),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured
    assert f"tickvisor replay: tape {tape}, row 3: " in captured.err
    assert "; row skipped" in captured.err
    assert [row[1] for row in rows_of(out)] == [1, 2, 3]
    assert captured.out.startswith("tickvisor replay: done: 3 ticks, 1 codes, span ")
    assert captured.out.rstrip().endswith("1 corrupt rows skipped")


BAD_ARGUMENTS = {
    "no-strategy": (["TAPE"], "the following arguments are required: --strategy"),
    "bad-speed": (["TAPE", "--strategy", "S", "--speed", "fast"], "argument --speed: 'fast' is not a speed"),
    "zero-speed": (["TAPE", "--strategy", "S", "--speed", "0"], "argument --speed: '0' is not a speed"),
    "bad-json": (["TAPE", "--strategy", "S", "--options", "{window: 2}"], "argument --options: not JSON"),
    "not-an-object": (["TAPE", "--strategy", "S", "--options", "[2]"], "'[2]' is not a JSON object"),
    "foreign-option": (
        ["TAPE", "--strategy", "S", "--config", "x.toml"],
        "--config is not an option of replay",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_a_bad_argument_exits_2_naming_it(
    case: str, project: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, package = project
    args, expected = BAD_ARGUMENTS[case]
    tape = write_tape(root / "t.jsonl", [Tick("AAPL.US", 1, T0_MS, "1", "1", "1", 0, 0)])
    args = [str(tape) if a == "TAPE" else f"{package}.vwap:Vwap" if a == "S" else a for a in args]
    with pytest.raises(SystemExit) as exc:
        main(["replay", *args])
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err


def test_no_tape_an_unimportable_or_unbuildable_strategy_exit_2_naming_it(
    project: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, package = project
    tape = write_tape(root / "t.jsonl", [Tick("AAPL.US", 1, T0_MS, "1", "1", "1", 0, 0)])
    kind = f"{package}.vwap:Vwap"
    assert main(["replay", str(root / "absent.jsonl"), "--strategy", kind]) == 2
    assert f"tickvisor replay: tape {root / 'absent.jsonl'}: no such tape" in capsys.readouterr().err
    assert main(["replay", str(tape), "--strategy", f"{package}.nope:Vwap"]) == 2
    err = capsys.readouterr().err
    assert f"config error at --strategy: cannot import '{package}.nope:Vwap'" in err
    assert main(["replay", str(tape), "--strategy", kind]) == 2  # no options["out"]: its __init__ raises
    assert f"tickvisor replay: cannot start --strategy {kind}: KeyError: 'out'" in capsys.readouterr().err


# --- a user project run as a job, then its tape replayed ---------------------------------------------


@pytest.fixture(scope="module")
def user_job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The user project's job, run from another directory for a few seconds: its strategy's output and
    the recorder's tape.
    """
    tmp = tmp_path_factory.mktemp("user")
    project = write_project(tmp / "project")
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    out, tape = tmp / "job-vwap.jsonl", tmp / "ticks.jsonl"
    config = project / "config.toml"
    config.write_text(CONFIG_TOML.format(out=out, tape=tape), encoding="utf-8")
    done = run(["--config", str(config), "--duration", "3", "--status-every", "0"], elsewhere, 180 * S)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    return {"project": project, "out": out, "tape": tape, "tmp": tmp}


@pytest.mark.ray
def test_a_strategy_is_imported_from_the_config_files_directory(user_job: dict[str, Path]) -> None:
    got = rows_of(user_job["out"])
    assert got, "the user strategy received no tick"
    assert {row[0] for row in got} <= {"AAPL.US", "BTCUSDT", "EURUSD"}


@pytest.mark.ray
def test_replaying_a_simulator_tape_delivers_exactly_the_recorded_ticks_in_order(
    user_job: dict[str, Path],
) -> None:
    recorded = tape_rows(user_job["tape"])
    assert len({row[0] for row in recorded}) == 3, "the tape should hold every code"
    out = user_job["tmp"] / "replayed.jsonl"
    options = json.dumps({"out": str(out)})
    done = run(
        ["replay", str(user_job["tape"]), "--strategy", "desk.vwap:Vwap", "--options", options],
        user_job["project"],  # the strategy is imported from the working directory
        120 * S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert rows_of(out) == recorded
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"tickvisor replay: done: {len(recorded)} ticks, 3 codes, span "), summary
    assert "ticks/s" in summary

    only = user_job["tmp"] / "only.jsonl"
    options = json.dumps({"out": str(only)})
    kind, codes = ["--strategy", "desk.vwap:Vwap"], ["--codes", "EURUSD", "AAPL.US"]
    done = run(
        ["replay", str(user_job["tape"]), *kind, *codes, "--options", options, "--speed", "max"],
        user_job["project"],
        120 * S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert rows_of(only) == [row for row in recorded if row[0] in {"EURUSD", "AAPL.US"}]


# --- the README's user project, as written -----------------------------------------------------------


def test_the_readmes_user_project_checks_tests_and_replays_as_written(tmp_path: Path) -> None:
    project = tmp_path / "project"
    files = write_readme_project(project)
    assert files == {"desk/vwap.py", "config.toml", "tests/test_vwap.py"}, files
    checked = run(["check", "--config", "config.toml"], project, 60 * S)
    assert checked.returncode == 0, checked.stderr
    assert "vwap  desk.vwap:Vwap  3 codes" in checked.stdout
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", "tests"],
        cwd=project,
        env={**clean_env(), "PYTHONPATH": os.pathsep.join([str(ROOT), str(project)])},
        capture_output=True,
        text=True,
        timeout=120 * S,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout[-3000:]
    assert "1 passed" in tested.stdout
    tape = write_tape(
        tmp_path / "ticks.jsonl",
        [Tick("AAPL.US", s, T0_MS + 1000 * s, f"{10 * s}", "1", f"{10 * s}", 1, 0) for s in range(1, 4)],
    )
    replayed = run(
        ["replay", str(tape), "--strategy", "desk.vwap:Vwap", "--options", '{"window_s": 30}'],
        project,
        60 * S,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert "vwap: AAPL.US vwap 20" in replayed.stdout  # on_stop: (10 + 20 + 30) / 3
    assert replayed.stdout.strip().splitlines()[-1].startswith("tickvisor replay: done: 3 ticks, 1 codes")
