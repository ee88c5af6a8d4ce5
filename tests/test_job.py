"""The main job as users run it: ``python supervisor.py`` and ``ray job submit``, as subprocesses.

Everything runs on 127.0.0.1 and is bounded in time. The only timing assertion is the documented
promise of supervisor.py: SIGINT or SIGTERM stops the job cleanly within 10 s (measured from the signal
to the exit of the process). The other waits are generous and scale with TICKVISOR_TEST_S.

What is checked, beyond exit codes and printed lines:

* no process outlives the job: not the bundled simulator (it runs in a session of its own), not the
  local Ray (gcs_server, raylet, dashboard, workers: all in the job's session);
* a recorder flushes on SIGTERM: ticks received between its last periodic flush and the signal are
  in the file after the exit, every line whole, valid JSON, with the documented keys;
* the token (the value of the variable named by ``feed.token_env``) appears in no output, not in the
  actor logs Ray forwards to the driver, not in the log files of the job's Ray session;
* a bad config exits 2 at once, naming the key, before any Ray starts;
* the docs' cluster recipe (docs/scaling.md) runs as written: on a machine with no cluster and no Ray token,
  its commands start a ``ray start --head`` cluster with token authentication, submit the job, follow its
  logs and stop it cleanly; the job joins that cluster and leaves it running, and neither the AllTick token
  nor the cluster token is shown. While it runs, ``status``, ``status --json``, ``subscribe`` (accepted, and
  refused with exit 2) and ``unsubscribe`` reach the submitted job;
* on the same cluster, the docs' user-project recipe: tickvisor pre-installed from its wheel (on
  the ``PYTHONPATH`` and ``PATH`` of ``ray start``), a copy of the README's user project outside the
  checkout as ``--working-dir``, and its strategy ``desk.vwap:Vwap`` receiving ticks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from scripts.bench.wait import WaitTimeoutError
from scripts.bench.wait import wait_for as poll
from tests.conftest import ROOT, S, wait_for, write_readme_project

STOP_PROMISE_S = 10.0  # supervisor.py: "SIGINT or SIGTERM stops it cleanly within 10 s"
RECORDED_KEYS = {"code", "seq", "tick_time", "price", "volume", "turnover", "trade_direction", "received_ns"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The console strategy's view, forwarded by Ray from the actor:
# "(Console pid=N) [console] 6 codes, 12.0 ticks/s", then one row per code.
CONSOLE_VIEW = re.compile(r"\[console\] 6 codes, \d+(\.\d+)? ticks/s")
STATUS_UP = r"tickvisor: 2/2 connections up, in sync, {codes} codes, [1-9]\d* ticks"
CONSOLE_ROW = re.compile(r"\(Console pid=\d+\)\s+AAPL\.US\s+\d+(\.\d+)?\s+seq \d+")
# A line Ray logs at WARNING or above, from Python ("2026-01-02 10:11:12,345\tWARNING x.py:85 -- ...")
# or from its C++ core ("[2026-01-02 10:11:12,345 E 17795 17795] core_worker.cc:2465: ..."), the
# driver's own or forwarded from an actor ("(Registry pid=N) ...").
RAY_WARNING = re.compile(
    r"\d{4}-\d\d-\d\d [\d:,]+\s+(WARNING|ERROR|CRITICAL) \S+\.py:\d+ -- "
    r"|\[\d{4}-\d\d-\d\d [\d:,]+ [WEF] \d+ \d+\] \S+:\d+:"
)


# --- processes ------------------------------------------------------------------------------------


class Proc(NamedTuple):
    pid: int
    ppid: int
    sid: int
    state: str
    start: int  # clock ticks after boot: (pid, start) names a process even if the pid is reused
    cmd: str


def proc_table() -> dict[int, Proc]:
    """Every process on the machine, from /proc (psutil is not installed)."""
    out: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):  # noqa: PTH208 - /proc entries are names, read as strings
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:  # noqa: PTH123 - a /proc file by its path string
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:  # noqa: PTH123 - a /proc file by its path string
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        out[int(entry)] = Proc(int(entry), int(rest[1]), int(rest[3]), rest[0], int(rest[19]), cmd)
    return out


def descendants(table: dict[int, Proc], roots: set[int]) -> set[int]:
    """``roots`` and every process below them."""
    found = set(roots)
    grew = True
    while grew:
        grew = False
        for p in table.values():
            if p.ppid in found and p.pid not in found:
                found.add(p.pid)
                grew = True
    return found


def ancestors_of_me() -> set[int]:
    table = proc_table()
    out, pid = set(), os.getpid()
    while pid in table and pid not in out:
        out.add(pid)
        pid = table[pid].ppid
    return out


def alive(tracked: dict[int, int], sids: set[int]) -> list[str]:
    """Tracked processes (same pid and start time) and members of ``sids`` that still run."""
    out = []
    for p in proc_table().values():
        if p.state == "Z":  # dead, waiting for a reaper that is not ours
            continue
        if tracked.get(p.pid) == p.start or p.sid in sids:
            out.append(f"pid {p.pid} sid {p.sid}: {p.cmd[:160]}")
    return out


def kill_all(pids: set[int], *, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL what is left after ``grace_s``; never this process or its parents."""
    pids = pids - ancestors_of_me()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

        def gone() -> bool:
            nonlocal pids
            table = proc_table()
            pids = {p for p in pids if p in table and table[p].state != "Z"}
            return not pids

        with contextlib.suppress(WaitTimeoutError):
            poll(gone, grace_s, what=f"{sig.name} to end them", every=0.2)
            return


# --- the job as a subprocess ----------------------------------------------------------------------


def job_env(**extra: str) -> dict[str, str]:
    """The environment of a job run by hand: the repo importable, INFO logs, no cluster to join."""
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # the job must start its own local Ray
    env["PYTHONPATH"] = str(ROOT)
    env["LOGURU_LEVEL"] = "INFO"
    env.update(extra)
    return env


class Job:
    """``python supervisor.py ARGS`` in a session of its own, stdout and stderr collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "supervisor.py", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self._lock = threading.Lock()
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.tracked: dict[int, int] = {}
        self.sids: set[int] = {self.pid}
        self.namespace: str | None = None  # set by a test whose job joins the session's Ray

    def _read(self, stream: Any, into: list[bytes]) -> None:
        for line in iter(stream.readline, b""):
            with self._lock:
                into.append(line)

    def raw(self) -> bytes:
        with self._lock:
            return b"".join(self._out) + b"".join(self._err)

    def stdout(self) -> str:
        with self._lock:
            return ANSI.sub("", b"".join(self._out).decode(errors="replace"))

    def stderr(self) -> str:
        with self._lock:
            return ANSI.sub("", b"".join(self._err).decode(errors="replace"))

    def wait_stdout(self, pattern: re.Pattern[str] | str, timeout: float, what: str) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            if self.proc.poll() is not None:
                pytest.fail(f"the job exited ({self.proc.returncode}) before {what}\n{self.tail()}")
            return re.search(pattern, self.stdout())

        return wait_for(found, timeout, every=0.2, what=what)

    def tail(self, n: int = 40) -> str:
        out = "\n".join(self.stdout().splitlines()[-n:])
        err = "\n".join(self.stderr().splitlines()[-n:])
        return f"--- stdout (tail) ---\n{out}\n--- stderr (tail) ---\n{err}"

    def snapshot(self) -> list[Proc]:
        """Remember every process the job started: its session, and its children in other sessions."""
        table = proc_table()
        mine = descendants(table, {self.pid}) | {p.pid for p in table.values() if p.sid in self.sids}
        self.sids |= {table[p].sid for p in mine if p in table and table[p].ppid == self.pid}
        mine |= {p.pid for p in table.values() if p.sid in self.sids}
        self.tracked.update({p: table[p].start for p in mine if p in table})
        return [table[p] for p in mine if p in table]

    def stop(self, sig: signal.Signals, timeout: float = 60.0) -> tuple[int, float]:
        """Send ``sig``; returns the exit code and the seconds from the signal to the exit."""
        self.snapshot()
        sent = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout * S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the job did not exit within {timeout * S:.0f} s of {sig.name}\n{self.tail()}")
        took = time.monotonic() - sent
        for reader in self._readers:
            reader.join(timeout=5)
        return code, took

    def leftovers(self, within: float = 5.0) -> list[str]:
        """What still runs of the job ``within`` seconds after its exit (Ray's daemons take a moment)."""
        with contextlib.suppress(WaitTimeoutError):
            poll(lambda: not alive(self.tracked, self.sids), within * S, what="the job's exit", every=0.2)
        return alive(self.tracked, self.sids)

    def kill(self) -> None:
        """Cleanup after a failed test: nothing of the job may outlive the test."""
        if self.proc.poll() is None:
            self.snapshot()
        table = proc_table()
        pids = {p for p, start in self.tracked.items() if p in table and table[p].start == start}
        pids |= {p.pid for p in table.values() if p.sid in self.sids}
        if pids:
            kill_all(pids, grace_s=2.0)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def jobs() -> Iterator[Callable[..., Job]]:
    started: list[Job] = []

    def start(args: list[str], env: dict[str, str]) -> Job:
        job = Job(args, env)
        started.append(job)
        return job

    yield start
    for job in started:
        job.kill()


def ray_session_logs(job_pid: int) -> list[Path]:
    """The log files of the local Ray a job started (Ray names the session after the driver's pid)."""
    base = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray"
    return [p for d in base.glob(f"session_*_{job_pid}") for p in (d / "logs").rglob("*") if p.is_file()]


# --- 1. the embedded default, and a recorder, stopped by a signal ---------------------------------


# The embedded default stopped by SIGINT (ticks shown, exit 0 within the promise, no process left) is
# checked in tests/test_cli.py, on the job its commands run against: one local Ray start for both.


@pytest.fixture(scope="module")
def recorder_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One job with a recorder and a secret token, stopped by SIGTERM; what it did, for the tests below."""
    tmp = tmp_path_factory.mktemp("job")
    tape = tmp / "tape" / "ticks.jsonl"
    codes = ["AAPL.US", "700.HK", "EURUSD", "BTCUSDT"]
    token_env = "TICKVISOR_JOB_TOKEN_" + uuid.uuid4().hex[:8].upper()
    secret = "SeCrEt-" + str(uuid.uuid4())
    config = tmp / "job.toml"
    config.write_text(
        f"""
[feed]
token_env = "{token_env}"
heartbeat_interval_s = 1.0
silence_deadline_s = 3.0

[feed.sessions]
"*" = "always"

[endpoints.stock]
url = "ws://127.0.0.1:0/quote-stock-b-ws-api"

[endpoints.forex_crypto]
url = "ws://127.0.0.1:0/quote-b-ws-api"

[simulator]
enabled = true
tick_rate = 5.0

[[strategies]]
name = "tape"
kind = "recorder"
path = "{tape}"
symbols = {json.dumps(codes)}
""",
        encoding="utf-8",
    )
    args = ["--config", str(config), "--duration", "0", "--status-every", "2"]
    job = Job(args, job_env(**{token_env: secret}))
    try:
        port = int(job.wait_stdout(r"bundled simulator on 127\.0\.0\.1:(\d+)", 60, "the simulator's port")[1])
        job.wait_stdout(STATUS_UP.format(codes=4), 90, "2/2 connections up")

        # The simulator accepts only the token it was started with: the secret, not its default token.
        base = f"http://127.0.0.1:{port}/admin/state?token="
        with urllib.request.urlopen(base + urllib.parse.quote(secret), timeout=10) as response:  # noqa: S310
            state = json.loads(response.read())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "tickvisor-sim", timeout=10)  # noqa: S310
        assert refused.value.code == 401
        served = {c for conn in state["connections"] if conn["open"] for c in conn["trades"]}

        def recorded() -> list[str]:  # complete lines only: a buffer may reach the file mid-line
            text = tape.read_text(encoding="utf-8") if tape.exists() else ""
            return text[: text.rfind("\n") + 1].splitlines()

        wait_for(lambda: len(recorded()) >= 20, 20, what="20 recorded ticks")
        running = job.snapshot()

        def pushed() -> int:
            with urllib.request.urlopen(base + urllib.parse.quote(secret), timeout=10) as response:  # noqa: S310
                return int(json.loads(response.read())["totals"]["pushes"])

        # The recorder flushes every second. Signal right after a periodic flush (the file just grew)
        # once the server has pushed 6 more ticks (4 codes at 5 ticks/s: about 0.3 s): those received
        # since the flush are written but not flushed, the next periodic flush is most of a second
        # away, so they reach the file through the flush on stop (or, if the stop is slow, a periodic
        # flush during it: durable either way, which is the promise).
        size = tape.stat().st_size
        wait_for(lambda: tape.stat().st_size != size, 5, every=0.01, what="a periodic flush")
        flushed_at_ns = time.time_ns()
        pushes = pushed()
        wait_for(lambda: pushed() >= pushes + 6, 5, every=0.02, what="6 ticks pushed since the flush")
        before = recorded()
        signalled_at_ns = time.time_ns()
        code, took = job.stop(signal.SIGTERM)
        yield {
            "job": job,
            "code": code,
            "took": took,
            "secret": secret,
            "served": served,
            "codes": codes,
            "tape": tape,
            "before": before,
            "flushed_at_ns": flushed_at_ns,
            "signalled_at_ns": signalled_at_ns,
            "running": running,
        }
    finally:
        job.kill()


@pytest.mark.ray
def test_sigterm_stops_cleanly_and_the_recorder_flushes(recorder_run: dict[str, Any]) -> None:
    job: Job = recorder_run["job"]
    assert recorder_run["code"] == 0, job.tail()
    took = recorder_run["took"]
    assert took < STOP_PROMISE_S, f"clean stop took {took:.1f} s\n{job.tail()}"
    assert "tickvisor: SIGTERM, stopping" in job.stderr()
    assert job.stdout().rstrip().endswith("tickvisor: stopped"), job.tail()
    # Where the stop's time went, on stderr (a slow stop above shows it in job.tail()).
    steps = re.search(
        r"tickvisor: stop took ([\d.]+) s from the signal \(supervisor ([\d.]+) s, "
        r"simulator ([\d.]+) s, Ray ([\d.]+) s\)",
        job.stderr(),
    )
    assert steps, job.tail()
    assert float(steps[1]) <= took + 0.1  # the driver's own count ends before the process exits
    assert abs(sum(float(x) for x in steps.groups()[1:]) - float(steps[1])) <= 0.2

    text = recorder_run["tape"].read_text(encoding="utf-8")
    assert text.endswith("\n"), "the last line was cut"
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) > len(recorder_run["before"]), "no line was added by the stop"
    assert text.splitlines()[: len(recorder_run["before"])] == recorder_run["before"]
    for row in rows:
        assert set(row) == RECORDED_KEYS, row
        assert row["code"] in recorder_run["codes"], row
        assert isinstance(row["price"], str), row
        assert row["tick_time"] > 10**12, row  # milliseconds
    # ticks received between the last periodic flush and the signal: unflushed then, in the file now
    flushed, signalled = recorder_run["flushed_at_ns"], recorder_run["signalled_at_ns"]
    late = [r for r in rows if flushed < r["received_ns"] < signalled]
    assert late, "no tick received between the last periodic flush and the signal is in the file"
    print(
        f"SIGTERM: exit {recorder_run['code']} after {recorder_run['took']:.2f} s; {len(rows)} lines, "
        f"{len(rows) - len(recorder_run['before'])} written since the signal, "
        f"{len(late)} received between the last periodic flush and the signal"
    )

    assert any("-m actors.sim" in p.cmd for p in recorder_run["running"])
    left = job.leftovers()
    assert left == [], "processes outlived the job:\n" + "\n".join(left)


@pytest.mark.ray
def test_a_clean_start_and_stop_print_no_warning_from_ray(recorder_run: dict[str, Any]) -> None:
    """Nothing a user cannot act on: no line of Ray's at WARNING or above (such as ray#53727's
    "constructor arguments in the object store" or the note that token authentication is on), and no
    channel break warned at the stop.
    """
    job: Job = recorder_run["job"]
    assert recorder_run["code"] == 0, job.tail()
    output = job.stdout() + "\n" + job.stderr()
    assert RAY_WARNING.search("2026-12-07 11:59:53,214\tWARNING authentication_token_setup.py:85 -- x")
    assert RAY_WARNING.search("[2026-12-07 11:59:59,849 E 17795 17795] core_worker.cc:2465: Actor x")
    warned = [line for line in output.splitlines() if RAY_WARNING.search(line)]
    assert warned == [], "\n".join(warned)
    assert "receiver went away" not in output, job.tail()


# --- 2. the token is never shown --------------------------------------------------------------------


@pytest.mark.ray
def test_token_never_appears_in_any_output(recorder_run: dict[str, Any]) -> None:
    job: Job = recorder_run["job"]
    secret: str = recorder_run["secret"]
    # ticks flowed with that token: the simulator served every configured code, the recorder wrote them
    assert recorder_run["served"] == set(recorder_run["codes"])
    assert {json.loads(line)["code"] for line in recorder_run["before"]} == set(recorder_run["codes"])
    # Ray prefixes an actor's lines with "(<repr> pid=N)"; a Connection's repr has parentheses of its own
    assert re.search(r"\((Connection|Supervisor|Registry|Decoder)\b.*? pid=\d+\)", job.stderr()), (
        "no actor log reached the driver: the check below would prove little"
    )

    output = job.raw()
    assert secret.encode() not in output, "the token was printed"
    assert secret.lower().encode() not in output.lower()
    assert urllib.parse.quote(secret, safe="").encode() not in output

    # Ray also writes every actor's output to the session's log files: the token is in none of them.
    logs = ray_session_logs(job.pid)
    leaked = [str(p) for p in logs if secret.encode() in p.read_bytes()]
    assert leaked == [], f"the token is in Ray's log files: {leaked}"
    print(f"token absent from {len(output)} bytes of output and {len(logs)} Ray log files")


# --- 3. a bad config: exit 2 at once, naming the key -----------------------------------------------

_SIM = """
[endpoints.stock]
url = "ws://127.0.0.1:0/quote-stock-b-ws-api"

[simulator]
enabled = true
"""
_ABSENT_ENV = "TICKVISOR_ABSENT_" + uuid.uuid4().hex[:8].upper()

BAD_CONFIGS = {
    "unknown-key": (
        "[feed]\nheartbet_interval_s = 2.0\n" + _SIM,
        ["feed.heartbet_interval_s", "unknown key", "did you mean 'heartbeat_interval_s'"],
    ),
    "bad-symbol": (
        _SIM + '\n[[strategies]]\nname = "c"\nkind = "console"\nsymbols = ["NASDAQ:AAPL"]\n',
        ["strategies[0].symbols[0]", "NASDAQ:AAPL", "AAPL.US"],
    ),
    "heartbeat-out-of-range": (
        "[feed]\nheartbeat_interval_s = 11\n" + _SIM,
        ["feed.heartbeat_interval_s", "<= 10"],
    ),
    "missing-token": (
        (
            f'[feed]\ntoken_env = "{_ABSENT_ENV}"\n\n[endpoints.stock]\n'
            'url = "wss://quote.alltick.co/quote-stock-b-ws-api"\n'
        ),
        ["feed.token_env", _ABSENT_ENV, "is not set"],
    ),
    "unimportable-strategy": (
        _SIM + '\n[[strategies]]\nname = "c"\nkind = "nopkg_x.mod:Thing"\nsymbols = ["AAPL.US"]\n',
        ["strategies[0].kind", "nopkg_x.mod:Thing", "No module named"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_exits_2_naming_the_key(case: str, tmp_path: Path) -> None:
    text, expected = BAD_CONFIGS[case]
    config = tmp_path / f"{case}.toml"
    config.write_text(text, encoding="utf-8")
    env = job_env()
    env.pop(_ABSENT_ENV, None)
    done = subprocess.run(  # noqa: S603
        [sys.executable, "supervisor.py", "--config", str(config), "--duration", "5"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60 * S,
        check=False,
        start_new_session=True,
    )
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    for needle in expected:
        assert needle in done.stderr, (needle, done.stderr)
    assert done.stderr.startswith("tickvisor: config error at "), done.stderr
    assert str(config) in done.stderr or case in {"missing-token", "unimportable-strategy"}
    assert done.stdout == ""  # nothing started: no simulator, no Ray
    assert "Token authentication" not in done.stderr  # the warning ray.init prints
    # `check` refuses it the same way, with the same line, and starts nothing either.
    checked = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "actors", "check", "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60 * S,
        check=False,
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (2, "", done.stderr)


# --- 3b. a job that cannot start: exit 1 with one line that says why ------------------------------


def run_to_exit(
    config: Path, env: dict[str, str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``python supervisor.py --config CONFIG`` run to its end (it must end by itself), joining the test
    session's Ray in a namespace of its own: these jobs end before they start, and a local Ray of their
    own would cost each several seconds (the local-Ray path is the default job's, tests/test_cli.py).
    """
    import ray

    address = ray.get_runtime_context().gcs_address
    where = ["--address", address, "--namespace", f"tv-exit-{uuid.uuid4().hex[:8]}"]
    return subprocess.run(  # noqa: S603
        [sys.executable, "supervisor.py", "--config", str(config), "--status-every", "0", *where],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout * S,
        check=False,
        start_new_session=True,
    )


def one_line_why(done: subprocess.CompletedProcess[str]) -> str:
    """The job's own account of why it ended: exit 1, one ``tickvisor:`` line on stderr, no traceback,
    and never ``started`` before it.
    """
    assert done.returncode == 1, (done.returncode, done.stdout[-2000:], done.stderr[-3000:])
    assert "tickvisor: started" not in done.stdout, done.stdout
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [ln for ln in ANSI.sub("", done.stderr).splitlines() if ln.startswith("tickvisor: ")]
    assert len(lines) == 1, done.stderr[-3000:]
    return lines[0]


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_wrong_token_ends_the_job_at_the_first_401(tmp_path: Path) -> None:
    from scripts.simulator import SimulatorThread
    from tests.conftest import collector_toml, system_toml

    sim = SimulatorThread(token="the-right-token", tick_rate=5.0)
    sim.start()
    try:
        # One endpoint, so one connection: every 401 the simulator counts is one attempt of it.
        text = system_toml(sim.port, collector_toml("c", ["AAPL.US"]))
        fx = text.index("[endpoints.forex_crypto]")
        config = tmp_path / "wrong-token.toml"
        config.write_text(text[:fx] + text[text.index("[[strategies]]") :], encoding="utf-8")
        done = run_to_exit(config, job_env(TICKVISOR_TEST_TOKEN="WRONG"))
        why = one_line_why(done)
        assert why.startswith("tickvisor: connection:stock-0: 401 token invalid"), why
        assert "feed.token_env" in why  # the vendor advice reaches the user
        totals = sim.state()["totals"]
        assert (totals["connections_opened"], totals["refused_401"]) == (0, 1), (
            totals
        )  # refused once, not retried
    finally:
        sim.stop()
    assert "WRONG" not in done.stdout + done.stderr


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_an_untrusted_certificate_ends_the_job_at_once(tmp_path: Path) -> None:
    """wss:// to the simulator with a self-signed certificate: refused by the system's trust store,
    not retried (a new socket meets the same certificate), named in the job's last line.
    """
    import ssl

    from scripts.simulator import SimulatorThread
    from tests.conftest import collector_toml, system_toml
    from tests.test_transport import self_signed

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path))
    sim = SimulatorThread(token="t", tick_rate=5.0, tls=context)
    sim.start()
    try:
        text = system_toml(sim.port, collector_toml("c", ["AAPL.US"])).replace("ws://", "wss://")
        fx = text.index("[endpoints.forex_crypto]")
        config = tmp_path / "self-signed.toml"
        config.write_text(text[:fx] + text[text.index("[[strategies]]") :], encoding="utf-8")
        done = run_to_exit(config, job_env(TICKVISOR_TEST_TOKEN="t"))
        why = one_line_why(done)
        assert "SSLCertVerificationError" in why, why
        assert "self-signed certificate" in why, why  # OpenSSL's reason, through either TLS engine
        assert sim.state()["totals"]["connections_opened"] == 0
    finally:
        sim.stop()


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_connection_that_never_opens_names_the_endpoint_and_the_last_error(tmp_path: Path) -> None:
    from tests.conftest import collector_toml, system_toml

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "closed-port.toml"
    config.write_text(
        system_toml(port, collector_toml("c", ["AAPL.US"]), start_timeout_s=3.0), encoding="utf-8"
    )
    done = run_to_exit(config, job_env(TICKVISOR_TEST_TOKEN="t"))
    why = one_line_why(done)
    assert "did not start within 3 s" in why, why
    assert re.search(r"to the (stock|forex_crypto) endpoint \(ws://127\.0\.0\.1:\d+/quote", why), why
    assert "last error: " in why
    assert "Connect call failed" in why or "Connection refused" in why or "ConnectionRefusedError" in why, why
    assert "token=t" not in why


# --- 4. the README's cluster recipe, as written, against a real `ray start --head` -----------------

RAY_CLI = Path(sys.executable).parent / "ray"
# The fenced block right after the marker in docs/scaling.md ("A cluster with `ray job submit`").
RECIPE_PAGE = ROOT / "docs" / "scaling.md"  # the docs' "Scaling and clusters"
RECIPE = re.compile(r"<!-- cluster-recipe\b[^>]*-->\s*```(?:sh|bash)\n(.*?)\n```", re.DOTALL)
# The fenced block right after this marker (docs/scaling.md, "From your own project"); it runs in the
# README's user project (tests/conftest.py ``write_readme_project``).
USER_RECIPE = re.compile(r"<!-- user-project-recipe\b[^>]*-->\s*```(?:sh|bash)\n(.*?)\n```", re.DOTALL)
SUBMITTED = re.compile(r"Job '([\w.-]+)' submitted successfully")
# configs/simulator.toml: 7 codes, a console on 3 of them, a recorder.
CONSOLE_VIEW_SIM = re.compile(r"\[console\] 3 codes, \d+(\.\d+)? ticks/s")
CONSOLE_ROW_SIM = re.compile(r"\(Console pid=\d+\)\s+700\.HK\s+\d+(\.\d+)?\s+seq \d+")


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def ray_job_cli_available() -> str:
    """Why ``ray job submit`` cannot run here, or "" when it can (no import of ray, no subprocess)."""
    if not RAY_CLI.exists():
        return f"no ray CLI next to {sys.executable}"
    ray_spec = importlib.util.find_spec("ray")
    locations = list(ray_spec.submodule_search_locations or []) if ray_spec else []
    if not any((Path(d) / "dashboard" / "modules" / "job" / "cli.py").exists() for d in locations):
        return "ray has no job CLI (ray.dashboard.modules.job.cli)"
    if importlib.util.find_spec("aiohttp") is None:
        return "ray[default] is not installed (no aiohttp): the dashboard's job API cannot run"
    if shutil.which("bash") is None:
        return "no bash to run the README's commands"
    return ""


def readme_recipe() -> list[str]:
    """The README's cluster recipe: its commands in order, each as written (continuation lines kept).

    Blank lines and comment lines are left out; a comment at the end of a command stays with it.
    """
    blocks = RECIPE.findall(RECIPE_PAGE.read_text(encoding="utf-8"))
    assert len(blocks) == 1, f"{RECIPE_PAGE} must hold one fenced block after the marker: {blocks}"
    return recipe_commands(blocks[0])


def user_project_recipe(into: Path) -> list[str]:
    """The docs' user-project recipe (as ``readme_recipe``), and the README's project written out ``into``."""
    blocks = USER_RECIPE.findall(RECIPE_PAGE.read_text(encoding="utf-8"))
    assert len(blocks) == 1, (
        f"{RECIPE_PAGE} must hold one fenced block after <!-- user-project-recipe -->: {blocks}"
    )
    files = write_readme_project(into)
    assert {"desk/vwap.py", "config.toml"} <= files, files
    return recipe_commands(blocks[0])


def recipe_commands(block: str) -> list[str]:
    """A fenced block's commands in order, each as written (continuation lines kept)."""
    commands: list[str] = []
    current: list[str] = []
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current.append(line)
        if not line.endswith("\\"):
            commands.append("\n".join(current))
            current = []
    assert not current, f"the recipe ends inside a continued command: {current}"
    return commands


class Shell:
    """One bash that runs commands as a user types them: one at a time, in order, sharing its variables.

    Each command goes to bash NUL-terminated on stdin and runs through ``eval`` with stdin from
    /dev/null; bash then prints a line with a random mark and the command's exit code. stdout and
    stderr share one pipe, read as they come. bash leads a session of its own: everything the commands
    start that does not leave it (``ray start``'s daemons do not) can be found and killed afterwards.
    """

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.mark = "@@done-" + secrets.token_hex(8)
        loop = (
            'while IFS= read -r -d "" __cmd; do eval "$__cmd" </dev/null; '
            f'printf "\\n{self.mark} %d\\n" "$?"; done'
        )
        self.proc = subprocess.Popen(  # noqa: S603
            ["bash", "--noprofile", "--norc", "-c", loop],  # noqa: S607
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self._lock = threading.Lock()
        self._lines: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            with self._lock:
                self._lines.append(line)

    def send(self, command: str) -> int:
        """Start ``command``; returns where its output begins (for ``output`` and ``exit_code``)."""
        assert self.proc.stdin is not None
        with self._lock:
            since = len(self._lines)
        self.proc.stdin.write(command.encode() + b"\0")
        self.proc.stdin.flush()
        return since

    def raw(self) -> bytes:
        with self._lock:
            return b"".join(self._lines)

    def output(self, since: int) -> str:
        with self._lock:
            lines = self._lines[since:]
        text = b"".join(lines).decode(errors="replace")
        return ANSI.sub("", text.split(f"\n{self.mark} ")[0])

    def exit_code(self, since: int) -> int | None:
        with self._lock:
            lines = self._lines[since:]
        for line in lines:
            if line.startswith(self.mark.encode() + b" "):
                return int(line.split()[1])
        return None

    def wait(self, since: int, timeout: float, what: str) -> tuple[int, str]:
        """The exit code and the output of the command started at ``since``, once it ended."""
        wait_for(lambda: self.exit_code(since) is not None, timeout, every=0.2, what=what)
        code = self.exit_code(since)
        assert code is not None
        return code, self.output(since)

    def run(self, command: str, timeout: float = 120.0) -> tuple[int, str]:
        return self.wait(self.send(command), timeout, f"`{command}` to finish")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)


class RayHead:
    """What must differ when the README's recipe runs here, and the cleanup of the cluster it starts.

    The recipe runs with the environment of a user who exported ``ALLTICK_TOKEN`` and activated
    ``.venv``. Only these differ: a private HOME (so ``~/.ray/auth_token`` is a fresh one, not the
    developer's), a short private ``RAY_TMPDIR`` (Ray's unix socket paths live under it, and ``ray job``
    finds the head through it) and, on ``ray start --head``, free ports on 127.0.0.1: the machine is
    shared, Ray's default ports may be taken. tickvisor is pre-installed for the user-project recipe
    as the README says: ``site`` (the wheel installed with ``--target``) on the ``PYTHONPATH`` and its
    ``bin`` on the ``PATH`` of ``ray start``.
    """

    def __init__(self, site: Path) -> None:
        self.base = Path(f"/tmp/rjs{secrets.token_hex(3)}")  # noqa: S108
        self.base.mkdir(mode=0o700)
        self.home = self.base / "home"
        self.home.mkdir()
        self.port, self.dash, self.client, self.agent = free_ports(4)
        self.alltick_token = "SeCrEt-" + str(uuid.uuid4())
        self.env = dict(os.environ)
        for name in (
            "RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
            "PYTHONPATH",
        ):  # fmt: skip
            self.env.pop(name, None)
        self.env["HOME"] = str(self.home)
        self.env["RAY_TMPDIR"] = str(self.base)
        self.env["ALLTICK_TOKEN"] = self.alltick_token
        self.env["PATH"] = os.pathsep.join([str(site / "bin"), str(RAY_CLI.parent), self.env.get("PATH", "")])
        self.env["PYTHONPATH"] = str(site)
        self.site = site
        self.shell = Shell(ROOT, self.env)
        self.project = self.base / "project"  # the README's user project, outside the checkout
        self.project.mkdir()
        self.project_shell = Shell(self.project, self.env)

    @property
    def auth_token_file(self) -> Path:
        return self.home / ".ray" / "auth_token"

    def start_options(self) -> str:
        """What the test adds to the recipe's ``ray start --head``: private ports, loopback only."""
        return " ".join(
            [
                "--port", str(self.port),
                # Ray replaces a loopback node ip with the machine's routable one
                # (services.resolve_ip_for_localhost) and binds GCS and raylet on every interface;
                # the dashboard does stay on 127.0.0.1.
                "--node-ip-address", "127.0.0.1",
                "--num-cpus", "2",
                "--dashboard-host", "127.0.0.1",
                "--dashboard-port", str(self.dash),
                "--dashboard-agent-listen-port", str(self.agent),
                "--ray-client-server-port", str(self.client),
                "--disable-usage-stats",
            ]
        )  # fmt: skip

    def adapt(self, commands: list[str]) -> list[str]:
        """The recipe with what must differ here, each replacement found exactly once or the test fails."""
        replacements = {
            "ray start --head": f"ray start --head {self.start_options()}",
            # No AllTick here: the bundled simulator's configuration, a file of the repository too.
            "--config configs/example.toml": "--config configs/simulator.toml",
        }
        out = list(commands)
        for old, new in replacements.items():
            hits = [i for i, command in enumerate(out) if old in command]
            assert len(hits) == 1, f"the README's recipe must hold `{old}` once, in one command: {commands}"
            assert out[hits[0]].count(old) == 1, out[hits[0]]
            out[hits[0]] = out[hits[0]].replace(old, new)
        return out

    def processes(self) -> list[Proc]:
        table = proc_table()
        sids = {self.shell.pid, self.project_shell.pid}
        mine = {p.pid for p in table.values() if p.sid in sids or str(self.base) in p.cmd}
        return [table[p] for p in descendants(table, mine) if p in table and table[p].state != "Z"]

    def session_logs(self) -> list[Path]:
        sessions = (self.base / "ray").glob("session_*")
        return [p for d in sessions for p in (d / "logs").rglob("*") if p.is_file()]

    def stop(self) -> None:
        """Never `ray stop` (it stops every Ray on the machine): kill exactly this cluster's processes
        (a throwaway cluster: what SIGTERM has not ended within a second gets SIGKILL).
        """
        for _ in range(3):
            pids = {p.pid for p in self.processes()}
            if not pids:
                break
            kill_all(pids, grace_s=1.0)
        self.shell.close()
        self.project_shell.close()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def ray_head(installed_wheel: tuple[Path, Path]) -> Iterator[RayHead]:
    reason = ray_job_cli_available()
    if reason:
        pytest.skip(f"ray job submit is unavailable: {reason}")
    head = RayHead(site=installed_wheel[1])
    try:
        yield head
    finally:
        head.stop()


def simulator_accepts(port: int, token: str) -> int:
    """What the simulator's admin API answers for ``token``: 200 only for the token it was started with."""
    url = f"http://127.0.0.1:{port}/admin/state?token={urllib.parse.quote(token)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_ray_job_submit_joins_the_cluster_and_leaves_it_running(ray_head: RayHead) -> None:
    """The README's cluster recipe, run as written on a machine with no cluster and no Ray token.

    Every command must exit 0, except ``ray job logs --follow``: that one is stopped with SIGINT, as a
    user's Ctrl-C, once the job's output shows ticks flowing. Then the job must still run, ``ray job
    stop`` must stop it cleanly, and the cluster must be left running. Then, on that cluster, the
    README's user-project recipe runs as written from a copy of its project: the job runs the
    pre-installed ``tickvisor`` and its strategy gets ticks, and it stops cleanly too. Neither the
    AllTick token nor the cluster token may appear in any output or Ray log file.
    """
    commands = readme_recipe()
    assert not any(re.search(r"\bray\s+stop\b", c) for c in commands), (
        "the recipe must not run `ray stop`: it stops every Ray on the machine"
    )
    follows = [i for i, c in enumerate(commands) if re.search(r"\bray job logs\b.*\s(--follow|-f)\b", c)]
    assert len(follows) == 1, f"the recipe must follow the job's logs once: {commands}"
    shell = ray_head.shell
    job_id = ""
    recipe_sims: set[int] = set()
    for i, command in enumerate(ray_head.adapt(commands)):
        print(f"$ {command}")
        if i != follows[0]:
            code, out = shell.run(command, timeout=180)
            assert code == 0, f"`{command}` exited {code}:\n{out[-4000:]}"
            if match := SUBMITTED.search(out):
                job_id = match[1]
            continue

        # `ray job logs --follow`: watch as a user does, then Ctrl-C.
        assert job_id, "no `Job '...' submitted successfully` before the logs are followed"
        since = shell.send(command)

        def seen(pattern: re.Pattern[str] | str, since: int = since) -> re.Match[str] | None:
            if shell.exit_code(since) is not None:
                out = shell.output(since)[-4000:]
                pytest.fail(f"`{command}` ended before the job's output showed ticks:\n{out}")  # noqa: B023 - called only within this iteration
            return re.search(pattern, shell.output(since))

        sim = wait_for(lambda: seen(r"bundled simulator on 127\.0\.0\.1:(\d+)"), 120, what="the simulator")
        port = int(sim[1])
        wait_for(lambda: seen(STATUS_UP.format(codes=7)), 120, every=0.5, what="2/2 connections up, ticks")
        wait_for(lambda: seen(CONSOLE_VIEW_SIM), 30, every=0.5, what="a console view")
        wait_for(lambda: seen(CONSOLE_ROW_SIM), 30, every=0.5, what="a console row with a price")
        # ALLTICK_TOKEN went from the environment of `ray start --head` to the job's driver: the
        # simulator it started accepts that token, and not its own default one.
        assert simulator_accepts(port, ray_head.alltick_token) == 200
        assert simulator_accepts(port, "tickvisor-sim") == 401
        # The job's actors run in this cluster, under its raylet.
        running = ray_head.processes()
        assert any("ray::Console" in p.cmd for p in running), [p.cmd[:80] for p in running]
        assert any("-m actors.sim" in p.cmd for p in running), [p.cmd[:80] for p in running]
        recipe_sims = {p.pid for p in running if "-m actors.sim" in p.cmd}

        table = proc_table()
        followers = [p.pid for p in table.values() if p.ppid == shell.pid and "job logs" in p.cmd]
        assert len(followers) == 1, [p.cmd for p in table.values() if p.ppid == shell.pid]
        os.kill(followers[0], signal.SIGINT)
        shell.wait(since, 30, "`ray job logs --follow` to end on SIGINT")
        # Ctrl-C stopped the following, not the job.
        code, out = shell.run(f"ray job status {job_id}")
        assert code == 0, out[-2000:]
        assert "RUNNING" in out, out[-2000:]
        # The commands on a running job reach a submitted one as well: no --address, the head here.
        code, out = shell.run("python supervisor.py status")
        assert code == 0, out[-3000:]
        assert "tickvisor OK: namespace 'tickvisor'" in out, out[-3000:]
        code, out = shell.run("python supervisor.py status --json 2>/dev/null")
        assert code == 0, out[-3000:]
        doc = json.loads(out)
        assert {c["id"]: c["state"] for c in doc["connections"]} == {"stock-0": "up", "forex_crypto-0": "up"}
        assert {s["name"] for s in doc["strategies"]} == {"tape", "console"}
        assert len(doc["codes"]) == 7, doc
        assert doc["registry"]["quarantined"] == {}, doc
        code, out = shell.run("python supervisor.py subscribe console NVDA.US 2>/dev/null")
        assert (code, out.strip()) == (0, "NVDA.US: subscribe accepted (held 1 time(s) by this strategy)"), (
            out
        )
        code, out = shell.run("python supervisor.py subscribe console aapl.us 2>/dev/null")
        assert code == 2, out[-3000:]
        assert out.startswith("aapl.us: refused:"), out
        assert "did you mean AAPL.US?" in out, out
        code, out = shell.run("python supervisor.py unsubscribe console NVDA.US 2>/dev/null")
        assert (code, out.strip()) == (
            0,
            "NVDA.US: unsubscribe accepted (held 0 time(s) by this strategy)",
        ), out

    assert job_id, "no command of the recipe submitted a job"
    # The user project's job, on the same cluster: submitted now, checked after the recipe's job.
    project = ray_head.project_shell
    user_job = ""
    print(f"$ cd {ray_head.project}    # the README's user project")
    for command in user_project_recipe(ray_head.project):
        print(f"$ {command}")
        code, out = project.run(command, timeout=180)
        assert code == 0, f"`{command}` exited {code}:\n{out[-4000:]}"
        if match := SUBMITTED.search(out):
            user_job = match[1]
    assert user_job, "the user-project recipe submitted no job"

    token_file = ray_head.auth_token_file
    assert token_file.is_file(), "the recipe left no ~/.ray/auth_token"
    assert token_file.stat().st_mode & 0o077 == 0, oct(token_file.stat().st_mode)

    # The job stopped cleanly: its driver printed its last line, and Ray did not need SIGKILL.
    code, status = shell.run(f"ray job status {job_id}")
    assert code == 0, status[-2000:]
    assert "STOPPED" in status or "was stopped" in status, status[-2000:]
    code, logs = shell.run(f"ray job logs {job_id}")
    assert code == 0, logs[-2000:]
    assert "tickvisor: SIGTERM, stopping" in logs, logs[-4000:]
    assert logs.rstrip().endswith("tickvisor: stopped"), logs[-4000:]
    assert "Traceback" not in logs, logs[-4000:]
    supervisor_logs = list((ray_head.base / "ray").glob(f"session_*/logs/jobs/supervisor-{job_id}.log"))
    assert supervisor_logs, "Ray's log of the job's supervisor was not found"
    assert "terminated gracefully with SIGTERM" in supervisor_logs[0].read_text(errors="replace")

    # The job left the cluster running ...
    code, out = shell.run("ray status")
    assert code == 0, out[-2000:]
    assert "Active:" in out, out[-2000:]
    # ... and took its simulator with it.
    sims = [p.cmd for p in ray_head.processes() if p.pid in recipe_sims]
    assert sims == [], sims

    check_user_project_job(ray_head, user_job)

    # Neither token was shown: not by the recipe, not in `ray job list` (runtime environments), not by
    # the job, not in Ray's log files.
    code, listed = shell.run("ray job list")
    assert code == 0, listed[-2000:]
    assert job_id in listed, listed[-2000:]
    cluster_token = token_file.read_text(encoding="utf-8").strip()
    assert len(cluster_token) >= 32
    output = shell.raw() + project.raw()
    logs_files = ray_head.session_logs()
    for name, secret in (("ALLTICK_TOKEN", ray_head.alltick_token), ("the cluster token", cluster_token)):
        assert secret.encode() not in output, f"{name} was printed"
        leaked = [str(p) for p in logs_files if secret.encode() in p.read_bytes()]
        assert leaked == [], f"{name} is in Ray's log files: {leaked}"
    print(
        f"recipe: {len(commands)} commands; job {job_id}; no token in {len(output)} bytes of output "
        f"or {len(logs_files)} Ray log files"
    )


def check_user_project_job(ray_head: RayHead, job_id: str) -> None:
    """The user-project job runs the pre-installed command, its strategy gets ticks, and it stops cleanly."""
    project = ray_head.project_shell
    since = project.send(f"ray job logs --follow {job_id}")  # it ends when the job does
    wait_for(lambda: "tickvisor: started" in project.output(since), 120, every=0.5, what="the project's job")
    command = ray_head.site / "bin" / "tickvisor"
    drivers = [p.cmd for p in ray_head.processes() if str(command) in p.cmd and "config.toml" in p.cmd]
    assert drivers, "the job's driver does not run the pre-installed tickvisor"

    def flowing() -> dict[str, Any] | None:
        """The job's status once both connections are up and desk.vwap:Vwap (from the --working-dir) got
        ticks; the first answer usually.
        """
        status = subprocess.run(  # noqa: S603 - the installed command
            [str(command), "status", "--json"],
            cwd=ray_head.project,
            env=ray_head.env,
            capture_output=True,
            text=True,
            timeout=120 * S,
            check=False,
        )
        if status.returncode != 0:  # 1: not up or not in sync yet
            return None
        doc: dict[str, Any] = json.loads(status.stdout)
        vwap = [s for s in doc["strategies"] if s["name"] == "vwap"]
        return doc if vwap and (vwap[0]["ticks"] or 0) > 0 else None

    doc = wait_for(flowing, 60, every=0.5, what="the project's job up, its strategy getting ticks")
    assert {s["name"] for s in doc["strategies"]} == {"vwap", "tape"}, doc["strategies"]
    assert {c["state"] for c in doc["connections"]} == {"up"}, doc["connections"]
    assert len(doc["codes"]) == 3, doc["codes"]
    code, out = ray_head.shell.run(f"ray job stop {job_id}")
    assert code == 0, out[-2000:]
    _, out = project.wait(since, 60, "`ray job logs --follow` to end with the job")
    # The job's last line; the CLI's own lines on the stop follow it.
    assert "tickvisor: SIGTERM, stopping" in out, out[-4000:]
    assert "\ntickvisor: stopped\n" in out, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
