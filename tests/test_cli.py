"""``supervisor.py status|subscribe|unsubscribe`` against running jobs, as operators run them.

Two jobs, each started the way users do: a ``python supervisor.py`` subprocess with the bundled
simulator (found with no ``--address``, through the address its local Ray left for this namespace),
and a job on the test session's Ray (``actors.control.Job``, what tests and embedders use) reached
with ``--address``. Each command is its own ``python supervisor.py ...`` process, with no AllTick
token in its environment. Every wait is bounded; the machine is shared, so nothing is timed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, S, collector_toml, start_system, wait_for
from tests.test_job import (
    CONSOLE_ROW,
    CONSOLE_VIEW,
    STATUS_UP,
    STOP_PROMISE_S,
    Job,
    job_env,
    jobs,  # noqa: F401 - the fixture, reused
)

pytestmark = [pytest.mark.ray]


def command(
    args: list[str], env: dict[str, str], timeout: float = 90.0, *, entry: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``python supervisor.py ARGS`` (or ``ENTRY ARGS``, e.g. scripts/run) to the end; the AllTick token
    is never in its environment.
    """
    env = {k: v for k, v in env.items() if "TOKEN" not in k or k.startswith("RAY_AUTH")}
    return subprocess.run(  # noqa: S603 - our own script
        [*(entry or (sys.executable, "supervisor.py")), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout * S,
        check=False,
    )


@pytest.fixture
def tmp_env() -> dict[str, str]:
    """The environment of a job run by hand (its address file is per namespace, and each test has its own)."""
    return job_env()


def start_job(jobs: Callable[..., Job], args: list[str], env: dict[str, str]) -> Job:  # noqa: F811
    """``python supervisor.py ARGS``, waited for until started. On this shared machine a local Ray
    sometimes misses its fixed 30 s for the raylet to register; that start is tried once more.
    """
    for attempt in (1, 2):
        job = jobs(args, env)
        try:
            job.wait_stdout(r"tickvisor: started", 120, "the job started")
        except pytest.fail.Exception:
            if attempt == 2 or "timed out during startup" not in job.stderr():
                raise
            continue
        return job
    raise AssertionError("unreachable")


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines in a job's stderr (Ray prefixes an actor's lines with ``(Name pid=N) ``)."""
    out = []
    for line in stderr.splitlines():
        start = line.find("{")
        if start >= 0:
            try:
                out.append(json.loads(line[start:]))
            except ValueError:
                continue
    return out


@pytest.mark.timeout(int(240 * S))  # a job start, several commands and a stop on a shared machine
def test_the_default_job_flows_survives_its_supervisors_death_answers_the_commands_and_stops_on_sigint(
    jobs: Callable[..., Job],  # noqa: F811
    tmp_env: dict[str, str],
) -> None:
    """The embedded default as users run it first (``python supervisor.py``, no config, no token): it
    shows ticks flowing, survives a SIGKILL of its Supervisor actor, answers the commands, and SIGINT
    stops it cleanly within the documented 10 s, leaving no process behind (one job start for all:
    each costs a local Ray).
    """
    namespace = f"tv-cli-{uuid.uuid4().hex[:8]}"
    args = ["--namespace", namespace, "--status-every", "2", "--log-format", "json"]
    job = start_job(jobs, args, tmp_env)
    job.wait_stdout(STATUS_UP.format(codes=6), 90, "2/2 connections up")
    job.wait_stdout(CONSOLE_VIEW, 20, "a console view")
    job.wait_stdout(CONSOLE_ROW, 20, "a console row with a price")
    running = job.snapshot()
    sims = [p for p in running if "-m actors.sim" in p.cmd]
    assert len(sims) == 1, [p.cmd for p in running]
    assert any("raylet" in p.cmd for p in running), "the job's local Ray was not found in its session"

    # The Supervisor actor SIGKILLed: Ray restarts it, it finds its children again, the job goes on
    # (the status lines count the restart) and everything below runs against the restarted one.
    sups = [p for p in running if p.cmd.startswith("ray::Supervisor")]
    assert len(sups) == 1, [p.cmd for p in running]
    lines_before = len(job.stdout().splitlines())
    os.kill(sups[0].pid, signal.SIGKILL)
    killed_at = time.monotonic()
    up_after_restart = re.compile(STATUS_UP.format(codes=6) + r" \(\d+/s\), restarts [1-9]")

    def status_after_kill() -> str | None:
        if job.proc.poll() is not None:
            pytest.fail(f"the job exited ({job.proc.returncode}) after the SIGKILL\n{job.tail()}")
        new = job.stdout().splitlines()[lines_before:]
        return next((line for line in new if up_after_restart.search(line)), None)

    line = wait_for(status_after_kill, 60, every=0.2, what="a status line counting the supervisor's restart")
    print(
        f"SIGKILL supervisor of the main job: status again after {time.monotonic() - killed_at:.2f} s: {line}"
    )
    new_sups = [p for p in job.snapshot() if p.cmd.startswith("ray::Supervisor")]
    assert [p.pid for p in new_sups] != [sups[0].pid], [p.cmd for p in new_sups]
    assert len(new_sups) == 1, [p.cmd for p in new_sups]

    def in_sync() -> dict[str, Any] | None:
        done = command(["status", "--json", "--namespace", namespace], tmp_env)
        return json.loads(done.stdout) if done.returncode == 0 else None

    doc = wait_for(in_sync, 60, every=1.0, what="status exit 0 (up and in sync)")
    assert {c["id"] for c in doc["connections"]} == {"stock-0", "forex_crypto-0"}
    assert all(c["state"] == "up" and c["codes"] == 3 for c in doc["connections"])
    assert all(c["ticks_per_s"] is not None and c["ticks_per_s"] > 0 for c in doc["connections"]), doc
    assert doc["strategies"][0]["name"] == "console"
    assert len(doc["codes"]) == 6
    assert {e["state"] for e in doc["codes"].values()} == {"ok"}
    assert doc["registry"] == {"pending": [], "quarantined": {}, "vendor_errors": [], "routes_awaited": {}}

    # The Quick start's entry point takes the subcommands too: `scripts/run status`.
    screen = command(["status", "--namespace", namespace], tmp_env, entry=(str(ROOT / "scripts" / "run"),))
    assert screen.returncode == 0, screen.stderr[-2000:]
    assert screen.stdout.startswith(f"tickvisor OK: namespace '{namespace}'")
    assert "codes: all 6 ok" in screen.stdout

    added = command(["subscribe", "console", "NVDA.US", "GBPUSD", "--namespace", namespace], tmp_env)
    assert added.returncode == 0, added.stdout + added.stderr[-2000:]
    assert added.stdout.splitlines() == [
        "NVDA.US: subscribe accepted (held 1 time(s) by this strategy)",
        "GBPUSD: subscribe accepted (held 1 time(s) by this strategy)",
    ]
    doc = wait_for(in_sync, 60, every=1.0, what="in sync with 8 codes")
    assert doc["codes"]["NVDA.US"]["holders"] == ["console"]

    code, took = job.stop(signal.SIGINT)
    print(f"SIGINT: exit {code} after {took:.2f} s")
    assert code == 0, job.tail()
    assert took < STOP_PROMISE_S, f"clean stop took {took:.1f} s\n{job.tail()}"
    assert "tickvisor: SIGINT, stopping" in job.stderr()
    assert "the supervisor did not answer" not in job.stderr()
    assert job.stdout().rstrip().endswith("tickvisor: stopped"), job.tail()
    left = job.leftovers()
    assert left == [], "processes outlived the job:\n" + "\n".join(left)
    # --log-format json: the actors' lines are JSON objects; a connection's carry its id and endpoint.
    logged = json_lines(job.stderr())
    connected = [line for line in logged if "connected to" in line.get("message", "")]
    assert {(line["connection"], line["endpoint"]) for line in connected} >= {
        ("stock-0", "stock"), ("forex_crypto-0", "forex_crypto"),
    }, job.stderr()[-3000:]  # fmt: skip
    # A clean stop closes the sockets on purpose: no holder is told its codes went stale.
    dead = [line["message"] for line in logged if "is dead" in line.get("message", "")]
    assert dead == [], dead[:3]
    from actors.control import address_file

    assert not address_file(namespace).exists(), "the stopped job left its address behind"
    empty = tempfile.mkdtemp(prefix="tv-cli-")  # no address file, no `ray start` of another cluster
    try:
        gone = command(["status", "--namespace", namespace], {**tmp_env, "TMPDIR": empty})
    finally:
        Path(empty).rmdir()
    assert gone.returncode == 3, gone.stdout + gone.stderr
    assert f"no job found in namespace '{namespace}' at no Ray address" in gone.stderr
    assert f"{namespace}.ray-address nor" in gone.stderr  # it names where it looked


@pytest.fixture(scope="module")
def system(ray_session: None, sim: Any) -> Iterator[Any]:
    job = start_system(sim, collector_toml("tape", ["AAPL.US", "EURUSD"]))
    yield job
    job.stop()


@pytest.mark.timeout(int(240 * S))  # a job start, several commands and a stop on a shared machine
def test_commands_on_a_job_reached_with_address(system: Any, tmp_env: dict[str, str]) -> None:
    import ray

    where = ["--namespace", system.namespace, "--address", ray.get_runtime_context().gcs_address]
    done = command(["status", "--json", *where], tmp_env)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert doc["namespace"] == system.namespace
    assert sorted(doc["codes"]) == ["AAPL.US", "EURUSD"]
    # "queue" and "behind": batches waiting for on_ticks and ticks its decoders hold for it at that
    # instant (a batch that came in just before the status call may not have been through the hook
    # yet), so only their kind and bound are certain.
    tape = doc["strategies"][0]
    assert 0 <= tape["queue"] <= 64
    assert 0 <= tape["behind"] <= 50_000
    assert tape | {"ticks": 0, "queue": 0, "behind": 0} == {
        "name": "tape", "codes": ["AAPL.US", "EURUSD"], "queue": 0, "behind": 0, "ticks": 0, "missed": 0,
    }  # fmt: skip

    # A foreign notation is refused before anything is sent; the other codes are not sent either.
    done = command(["subscribe", "tape", "aapl.us", "TSLA.US", *where], tmp_env)
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        "aapl.us: refused: codes are case-sensitive and upper-case; hint: did you mean AAPL.US?",
        "TSLA.US: not sent: another code of this request was refused (nothing changed)",
    ]
    assert "TSLA.US" not in system.registry().union

    # The registry refuses: a code the strategy does not hold.
    done = command(["unsubscribe", "tape", "TSLA.US", *where], tmp_env)
    assert done.returncode == 2
    assert done.stdout.startswith(
        "TSLA.US: refused: strategy 'tape' holds it 0 time(s), cannot drop 1; hint: "
    )

    done = command(["subscribe", "tape", "TSLA.US", *where], tmp_env)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    wait_for(
        lambda: "TSLA.US" in system.registry().union and system.registry().in_sync, 30, what="TSLA.US held"
    )
    done = command(["unsubscribe", "tape", "TSLA.US", *where], tmp_env)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.strip() == "TSLA.US: unsubscribe accepted (held 0 time(s) by this strategy)"
    assert "TSLA.US" not in system.registry().union

    done = command(["status", "--namespace", "no-such-namespace", "--address", where[-1]], tmp_env)
    assert done.returncode == 3
    assert done.stderr.strip().endswith(
        f"no job found in namespace 'no-such-namespace' at {where[-1]}: "
        "no supervisor actor runs in that namespace"
    )
    assert os.environ.get("TICKVISOR_TEST_TOKEN", "x-no-token") not in done.stdout + done.stderr


@pytest.mark.timeout(int(240 * S))
def test_status_exits_1_while_a_connection_is_out_of_sync(
    system: Any, sim: Any, tmp_env: dict[str, str]
) -> None:
    """Every subscription request on the forex/crypto endpoint is read and never answered from here on
    (the simulator's ``hold``); its socket is dropped, so the new one's resubscription stays in flight.
    Runs last on this module's system: it leaves it out of sync.
    """
    import ray

    where = ["--namespace", system.namespace, "--address", ray.get_runtime_context().gcs_address]
    sim.inject("hold", path="forex_crypto", count=100_000)
    sim.inject("drop", path="forex_crypto")
    wait_for(lambda: sim.state()["totals"].get("held", 0) >= 1, 30, what="a request held in flight")
    done = command(["status", "--json", *where], tmp_env)
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert doc["in_sync"] is False
    assert doc["failure"] == ""
    assert "EURUSD" in doc["registry"]["pending"], doc["registry"]
    done = command(["status", *where], tmp_env)
    assert done.returncode == 1
    assert done.stdout.startswith("tickvisor "), done.stdout
    assert not done.stdout.startswith("tickvisor OK"), done.stdout


def test_where_the_commands_look_for_the_job(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from actors import control

    monkeypatch.setattr(control.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    ns = "tv-where"
    assert control.find_address(ns, "10.0.0.1:6379", {"RAY_ADDRESS": "10.0.0.2:6379"}) == "10.0.0.1:6379"
    assert control.find_address(ns, None, {"RAY_ADDRESS": "10.0.0.2:6379"}) == "10.0.0.2:6379"
    with pytest.raises(
        control.NoJob, match=rf"no job found in namespace '{ns}' at no Ray address .*nor .* exists"
    ):
        control.find_address(ns, None, {})
    with socket.socket() as listening:  # a GCS stand-in: something listens at the published address
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        published = f"127.0.0.1:{listening.getsockname()[1]}"
        control.publish_address(ns, published)
        assert control.find_address(ns, None, {}) == published
        control.unpublish_address(ns, "127.0.0.1:9999")  # another job's: kept
        assert control.find_address(ns, None, {}) == published
    with pytest.raises(control.NoJob, match="nor"):
        control.find_address(ns, None, {})  # left by a job that was killed: nothing listens there
    control.unpublish_address(ns, published)
    assert not control.address_file(ns).exists()
    with pytest.raises(control.NoJob, match="that is a dashboard"):
        control.connect(ns, "http://10.1.2.3:8265", {})  # not on this machine
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")  # what `ray start` leaves
    with pytest.raises(control.NoJob, match=r"at 127\.0\.0\.1:1: nothing listens there"):
        control.connect(ns, "http://127.0.0.1:8265", {})  # the head's dashboard here: its GCS is tried
    with pytest.raises(control.NoJob, match=r"at 127\.0\.0\.1:1: nothing listens there"):
        control.connect(ns, "127.0.0.1:1", {})


# --- the command line itself: `tickvisor`, `python -m actors`, `supervisor.py`; no job, no Ray --------


def tickvisor(
    args: list[str], env: dict[str, str] | None = None, *, entry: tuple[str, ...] = ("-m", "actors")
) -> subprocess.CompletedProcess[str]:
    """``python -m actors ARGS`` (or ``python ENTRY ARGS``) to the end, from the repository root."""
    return subprocess.run(  # noqa: S603 - our own interpreter and package
        [sys.executable, *entry, *args],
        cwd=ROOT,
        env=env or job_env(),
        capture_output=True,
        text=True,
        timeout=60 * S,
        check=False,
    )


def test_options_go_before_or_after_the_command() -> None:
    from actors.cli import DEFAULTS, parse_args

    assert vars(parse_args([])) == {**DEFAULTS, "command": "run", "simulator_args": []}
    before = parse_args(["--namespace", "x", "status", "--address", "h:1", "--json"])
    assert (before.command, before.namespace, before.address, before.json) == ("status", "x", "h:1", True)
    after = parse_args(["subscribe", "tape", "AAPL.US", "--book", "--namespace", "y"])
    assert (after.command, after.strategy, after.codes, after.book, after.namespace) == (
        "subscribe", "tape", ["AAPL.US"], True, "y",
    )  # fmt: skip
    for argv in (
        ["--config", "c.toml", "--duration", "5", "--status-every", "0"],
        ["run", "--config", "c.toml", "--duration", "5", "--status-every", "0"],
        ["--config", "c.toml", "run", "--duration", "5", "--status-every=0"],
    ):
        job = parse_args(argv)
        assert (job.command, job.config, job.duration, job.status_every) == ("run", "c.toml", 5.0, 0.0), argv
    assert parse_args(["--config", "c.toml", "check"]).config == "c.toml"
    assert parse_args(["check", "--config", "c.toml"]).config == "c.toml"
    assert parse_args(["check"]).config is None  # the embedded default
    forwarded = parse_args(["simulator", "--port", "0", "--token-env", "T", "--help"])
    assert forwarded.simulator_args == ["--port", "0", "--token-env", "T", "--help"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "5", "status"], "--duration is not an option of status: only run takes it"),
        (["status", "--duration", "5"], "--duration is not an option of status: only run takes it"),
        (
            ["--log-format", "json", "unsubscribe", "s", "X.US"],
            "--log-format is not an option of unsubscribe",
        ),
        (["check", "--namespace", "x"], "--namespace is not an option of check: only run, status, subscribe"),
        (["--config", "c.toml", "status"], "--config is not an option of status: only run and check take it"),
        (["--config", "c.toml", "simulator", "--port", "0"], "--config is not an option of simulator"),
        (["status", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_an_option_the_command_does_not_take_is_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from actors.cli import parse_args

    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["", "run", "status", "subscribe", "unsubscribe", "check", "simulator"])
def test_every_help_lists_its_exit_codes(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from actors.cli import main

    with pytest.raises(SystemExit) as exited:
        main([*([command] if command else []), "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out, out
    assert re.search(r"\b0 ", out.split("exit codes:")[1]), out


def test_version_and_the_entry_points_agree() -> None:
    import actors

    for entry in (("-m", "actors"), ("supervisor.py",)):
        done = tickvisor(["--version"], entry=entry)
        assert (done.returncode, done.stdout.strip()) == (0, f"tickvisor {actors.__version__}"), done.stderr


def test_the_embedded_default_is_package_data_and_the_same_settings() -> None:
    from actors.cli import embedded_default
    from actors.core.settings import default_settings

    assert (ROOT / "actors" / "data" / "default.toml").is_file()
    assert embedded_default() == default_settings()


def test_check_prints_the_plan_without_a_token_value_or_ray(tmp_path: Any) -> None:
    secret = "SeCrEt-" + uuid.uuid4().hex
    env = job_env(ALLTICK_TOKEN=secret)
    done = tickvisor(["check", "--config", "configs/simulator.toml"], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "tickvisor: configs/simulator.toml is valid",
        "plan: professional (10 connections per token per endpoint, 3000 codes per connection)",
        "tokens: ALLTICK_TOKEN (set)",
        "simulator: bundled, on 127.0.0.1 (plan pro, 5 ticks/s per code); every endpoint url points at it",
        "endpoints:",
        "  stock  ws://127.0.0.1:0/quote-stock-b-ws-api",
        "    stock-0  token ALLTICK_TOKEN  3 codes: 700.HK AAPL.US TSLA.US",
        "  forex_crypto  ws://127.0.0.1:0/quote-b-ws-api",
        "    forex_crypto-0  token ALLTICK_TOKEN  4 codes: BTCUSDT ETHUSDT EURUSD XAUUSD",
        "strategies:",
        "  tape  recorder  4 codes: AAPL.US TSLA.US BTCUSDT EURUSD",
        "  console  console  3 codes: 700.HK XAUUSD ETHUSDT",
    ]
    assert secret not in done.stdout + done.stderr
    assert "Ray" not in done.stderr  # no ray.init: it would log the start of a local Ray
    # Two tokens, a plan's limits: connections and codes follow them, tokens by name only.
    config = tmp_path / "two.toml"
    codes = [f"S{i:04d}.US" for i in range(1, 5)]
    config.write_text(
        '[feed]\ntoken_envs = ["TOKEN_A", "TOKEN_B"]\nplan = "free"\nmax_codes_per_connection = 2\n\n'
        '[endpoints.stock]\nurl = "wss://quote.alltick.co/quote-stock-b-ws-api"\n\n'
        f'[[strategies]]\nname = "c"\nkind = "console"\nsymbols = {json.dumps(codes)}\n',
        encoding="utf-8",
    )
    tokens = {"TOKEN_A": "a-" + uuid.uuid4().hex, "TOKEN_B": "b-" + uuid.uuid4().hex}
    done = tickvisor(["--config", str(config), "check"], job_env(**tokens))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "tokens: TOKEN_A (set), TOKEN_B (set)" in lines
    assert [line for line in lines if line.startswith("    ")] == [
        "    stock-0  token TOKEN_A  2 codes: S0001.US S0003.US",
        "    stock-1  token TOKEN_B  2 codes: S0002.US S0004.US",
    ]  # plan free: one connection per token; new codes go to the least-loaded one
    assert not [value for value in tokens.values() if value in done.stdout + done.stderr]


def test_check_refuses_an_unknown_calendar_naming_the_key(tmp_path: Any) -> None:
    config = tmp_path / "sessions.toml"
    config.write_text(
        '[feed.sessions]\n"*.HK" = "XHKEX"\n\n[endpoints.stock]\nurl = "wss://quote.alltick.co/quote-stock-b-ws-api"\n',
        encoding="utf-8",
    )
    done = tickvisor(["check", "--config", str(config)], job_env(ALLTICK_TOKEN="t"))
    assert done.returncode == 2
    assert "config error at feed.sessions.'*.HK'" in done.stderr
    assert "'XHKEX' is neither 'always', 'fx', an exchange calendar nor a window" in done.stderr
    assert "XHKG" in done.stderr


def test_tickvisor_simulator_serves_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "actors",
            "simulator",
            "--port",
            "0",
            "--token",
            "t",
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env=job_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert re.fullmatch(r"SIMULATOR LISTENING 127\.0\.0\.1:\d+\n", line), line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30 * S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_job_and_its_processes_find_the_package_where_it_was_imported_from() -> None:
    import sysconfig

    from actors import cli

    path = cli.job_pythonpath({"PYTHONPATH": "/elsewhere"}).split(os.pathsep)
    assert path in ([str(ROOT), str(Path.cwd()), "/elsewhere"], [str(ROOT), "/elsewhere"])
    assert cli.PACKAGE_ROOT == ROOT
    site = sysconfig.get_paths()["purelib"]
    original = cli.PACKAGE_ROOT
    try:
        cli.PACKAGE_ROOT = type(original)(site)  # installed: the interpreter finds it by itself
        assert site not in cli.job_pythonpath({}).split(os.pathsep)
    finally:
        cli.PACKAGE_ROOT = original
