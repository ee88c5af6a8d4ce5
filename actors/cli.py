"""tickvisor's command line: the main job, the commands on a running job, ``check`` and the simulator.

    tickvisor [run] [--config F] [--duration S] ...  # the main job (no config: the embedded default)
    tickvisor status [--json]                        # exit 0 up and in sync, 1 not, 3 no job
    tickvisor subscribe STRATEGY CODE... [--book]    # exit 0 all accepted, 2 any refused
    tickvisor unsubscribe STRATEGY CODE... [--book]
    tickvisor check [--config F]                     # exit 0 valid, 2 not; no network, no Ray
    tickvisor simulator [--port P] [--token T] ...   # the bundled AllTick simulator (actors.sim)
    tickvisor replay TAPE --strategy KIND [--speed X|max] [--codes C ...] [--options JSON]
                                                     # a tape through a strategy's hooks (actors.replay)
    tickvisor --version

``python -m actors`` and the checkout's ``python supervisor.py`` run this same ``main``, and so does
``ray job submit --working-dir . -- python supervisor.py --config configs/simulator.toml``.

The commands on a running job need no token. Each finds the job by ``--namespace`` (default tickvisor)
and ``--address`` (default RAY_ADDRESS, else the local Ray that a job on this machine started).
Options go before or after the command; one that the command does not take is refused (exit 2).

With RAY_ADDRESS set (as under ``ray job submit``) or ``--address``, the job joins that cluster and
leaves it running; otherwise it starts a local Ray and stops it on exit. SIGINT or SIGTERM stops it
cleanly within 10 s: strategies flush, sockets close, the simulator (if any) stops.
Exit codes of the job: 0 clean stop, 1 the job could not start or the supervisor gave up (one line
says why), 2 bad configuration or command line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import logging
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import actors
from actors.calendars import check_sessions
from actors.config import load_settings
from actors.core.assignment import assign
from actors.core.codes import Endpoint
from actors.core.errors import ConfigError, FeedError
from actors.core.settings import Settings, parse_settings, with_simulator
from actors.core.tokens import Secret, redact, resolve_tokens
from actors.replay import add_arguments, replay_command  # neither imports Ray nor pyarrow at import

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: The directory ``actors`` was imported from: a checkout, a working directory or site-packages.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
#: The embedded default configuration, package data beside this module.
DEFAULT_CONFIG = "data/default.toml"
DEFAULT_SOURCE = "<default settings>"

STOP_WITHIN_S = 10.0  # the whole clean stop, as promised above, counted from the signal
#: Of that, what the end of the stop needs after the Supervisor's own stop: the simulator (about 0.2 s,
#: at most SIMULATOR_STOP_S) and ray.shutdown of a local Ray (about 2 s, more on a loaded machine).
STOP_RESERVE_S = 4.0
SIMULATOR_STOP_S = 1.0
SIMULATOR_START_S = 20.0
SIMULATOR_TOKEN_ENV = "TICKVISOR_SIMULATOR_TOKEN"  # noqa: S105 - the name of the variable, not a token
#: Beyond feed.start_timeout_s, what the start may take: creating the actors and starting the strategies.
START_GRACE_S = 60.0
#: How long the main loop waits for an answer of the Supervisor. Ray restarts a killed one in about
#: 1-2 s (more on a loaded machine) and holds the calls meanwhile; past this the job exits 1.
SUPERVISOR_PATIENCE_S = 30.0


# --- the command line ------------------------------------------------------------------------------

#: Options of the job (``run``); refused before any other command.
RUN_OPTIONS = ("config", "duration", "status_every", "metrics_port", "log_format")
#: Where a running job is: taken by the job and by the commands on it.
WHERE_OPTIONS = ("namespace", "address")
DEFAULTS: dict[str, Any] = {
    "config": None,
    "duration": 0.0,
    "status_every": 5.0,
    "metrics_port": 0,
    "log_format": None,
    "namespace": "tickvisor",
    "address": None,
}
#: The options (given before or after it) that each command takes.
TAKES: dict[str, tuple[str, ...]] = {
    "run": RUN_OPTIONS + WHERE_OPTIONS,
    "status": WHERE_OPTIONS,
    "subscribe": WHERE_OPTIONS,
    "unsubscribe": WHERE_OPTIONS,
    "check": ("config",),
    "simulator": (),
    "replay": (),
}
EXIT_CODES = {
    "run": "0 clean stop; 1 the job could not start or the supervisor gave up (one line says why); "
    "2 bad configuration or command line",
    "status": "0 up and in sync; 1 not (a connection down, codes pending); 2 bad command line; 3 no job",
    "subscribe": "0 every code accepted; 2 any refused (nothing of the request changed) or bad command "
    "line; 3 no job",
    "check": "0 valid (the plan is printed); 2 invalid (one line names the key) or bad command line",
    "replay": "0 done (a corrupt row is named on stderr and skipped); 2 bad command line, no readable tape "
    "or a strategy that cannot be imported or built",
}
EXIT_CODES["unsubscribe"] = EXIT_CODES["subscribe"]


def _epilog(command: str) -> str:
    return "exit codes: " + EXIT_CODES[command]


def _run_options(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: an option left out stays out of the namespace, so one given before the command is kept
    # and one the command does not take can be told from a default (parse_args).
    s = argparse.SUPPRESS
    parser.add_argument("--config", default=s, help="TOML config (default: the embedded default, no token)")
    parser.add_argument(
        "--duration", type=float, default=s, help="stop cleanly after this many seconds (default 0: run)"
    )
    parser.add_argument(
        "--status-every", type=float, default=s, help="seconds between status lines (default 5, 0: none)"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=s,
        help="a local Ray serves Prometheus metrics here (a cluster: ray start --metrics-export-port)",
    )  # fmt: skip
    parser.add_argument(
        "--log-format", choices=("text", "json"), default=s,
        help="text (readable, the default) or json (one object per line); also TICKVISOR_LOG_FORMAT",
    )  # fmt: skip


def _where_options(parser: argparse.ArgumentParser) -> None:
    s = argparse.SUPPRESS
    parser.add_argument("--namespace", default=s, help="Ray namespace of the job (default tickvisor)")
    parser.add_argument("--address", default=s, help="its Ray cluster (default: RAY_ADDRESS, else local)")


def build_parser(prog: str = "tickvisor") -> argparse.ArgumentParser:
    """Build the command line of ``prog``; ``parse_args`` adds the rules across a command and its options."""
    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog=prog,
        description="Supervise AllTick market-data feeds on Ray. With no command: run the job.",
        epilog=_epilog("run") + "\n\nEvery command has --help; run's options are also taken here.",
        formatter_class=raw,
    )
    p.add_argument("--version", action="version", version=f"tickvisor {actors.__version__}")
    _run_options(p)
    _where_options(p)
    commands = p.add_subparsers(
        dest="command", metavar="{run,status,subscribe,unsubscribe,check,simulator,replay}"
    )
    run = commands.add_parser(
        "run", help="run the job (the default command)", epilog=_epilog("run"), formatter_class=raw
    )
    _run_options(run)
    _where_options(run)
    status = commands.add_parser(
        "status", help="one screen about the running job", epilog=_epilog("status"), formatter_class=raw
    )
    _where_options(status)
    status.add_argument("--json", action="store_true", help="the same as one JSON document")
    for name, verb in (("subscribe", "hold"), ("unsubscribe", "release")):
        sub = commands.add_parser(
            name,
            help=f"{verb} codes for a strategy of the running job",
            epilog=_epilog(name),
            formatter_class=raw,
        )
        _where_options(sub)
        sub.add_argument("strategy", help="the strategy's name")
        sub.add_argument("codes", nargs="+", metavar="CODE", help="codes in the vendor's notation")
        sub.add_argument("--book", action="store_true", help="order books (22002) instead of trades")
    check = commands.add_parser(
        "check",
        help="validate a configuration and print the plan (no network, no Ray)",
        description="Validate a configuration as the job would at its start (the token variables are "
        "read, never shown) and print the resolved plan: endpoints, connections and the codes of each, "
        "strategies, tokens by their variable's name.",
        epilog=_epilog("check"),
        formatter_class=raw,
    )
    check.add_argument("--config", default=argparse.SUPPRESS, help="TOML config (default: the embedded one)")
    # Its options are the simulator's own (actors.sim.cli), handed over as they are: see `simulator --help`.
    commands.add_parser(
        "simulator", help="the bundled AllTick simulator (see: simulator --help)", add_help=False
    )
    add_arguments(
        commands.add_parser(
            "replay",
            help="feed a recorded tape through a strategy's hooks (no feed, no token, no Ray)",
            description="Feed a recorded tape (actors.tape: JSON lines or Parquet) through a strategy "
            "in-process (actors.testing.StrategyHarness), in recorded per-code order, at the recorded pace "
            "times --speed or as fast as possible. The strategy's self.clock() follows the tape's tick "
            "times. Progress goes to stderr every few seconds; a summary line ends the replay.",
            epilog=_epilog("replay"),
            formatter_class=raw,
        )
    )
    return p


def parse_args(argv: Sequence[str] | None, prog: str = "tickvisor") -> argparse.Namespace:
    """Parse the command line: ``command`` is set (``run`` when none is given), every option has a value.

    An option that the command does not take, given before or after it, is refused with exit 2. The
    ``simulator`` command's own options are in ``simulator_args``.
    """
    parser = build_parser(prog)
    args, rest = parser.parse_known_args(argv)
    args.command = args.command or "run"
    args.simulator_args = rest if args.command == "simulator" else []
    if rest and args.command != "simulator":
        misplaced = [
            a for a in rest if a.startswith("--") and a.split("=")[0][2:].replace("-", "_") in DEFAULTS
        ]
        if misplaced:
            option = misplaced[0].split("=", 1)[0]
            parser.error(f"{option} is not an option of {args.command}: {_where(option)}")
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    for name in DEFAULTS:
        if hasattr(args, name) and name not in TAKES[args.command]:
            option = "--" + name.replace("_", "-")
            parser.error(f"{option} is not an option of {args.command}: {_where(option)}")
    for name, value in DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    return args


def _where(option: str) -> str:
    name = option.split("=", 1)[0][2:].replace("-", "_")
    takers = [command for command, names in TAKES.items() if name in names]
    who = f"{', '.join(takers[:-1])} and {takers[-1]} take" if len(takers) > 1 else f"{takers[0]} takes"
    return f"only {who} it; leave it out here"


def send_cluster_token(environ: dict[str, str] | os._Environ[str]) -> None:
    """Have this process send the Ray cluster token, when one is at hand, before Ray is imported.

    Ray 2.60 turns token authentication on for every local cluster, but a driver that joins one sends
    the token only under RAY_AUTH_MODE=token (docs/scaling.md), read when Ray is imported.
    """
    if "RAY_AUTH_MODE" in environ:
        return
    if (
        environ.get("RAY_AUTH_TOKEN")
        or environ.get("RAY_AUTH_TOKEN_PATH")
        or (Path.home() / ".ray" / "auth_token").exists()
    ):
        environ["RAY_AUTH_MODE"] = "token"


def run_command(args: argparse.Namespace) -> int:
    """``status``, ``subscribe`` or ``unsubscribe`` on the running job; returns the exit code."""
    import json

    send_cluster_token(os.environ)

    from actors.control import NoJob, change_subscription, connect, status_document
    from actors.core.status import NO_JOB, invalid_codes, render_status, status_exit, subscription_report

    if args.command != "status":
        # A code in a foreign notation is refused here, before any Ray: it never reaches the server.
        invalid = invalid_codes(args.codes)
        if invalid:
            lines, code = subscription_report(args.command, args.codes, invalid=invalid)
            print("\n".join(lines))  # noqa: T201
            return code
    try:
        job, address = connect(args.namespace, args.address)
    except NoJob as exc:
        print(exc, file=sys.stderr)  # noqa: T201
        return NO_JOB
    if args.command == "status":
        doc = status_document(job, address)
        print(json.dumps(doc, indent=2) if args.json else render_status(doc))  # noqa: T201
        return status_exit(doc)
    kind = "book" if args.book else "trades"
    lines, code = change_subscription(job, args.command, args.strategy, args.codes, kind)
    print("\n".join(lines))  # noqa: T201
    return code


def start_simulator(settings: Settings, token: Secret) -> tuple[subprocess.Popen[str], int]:
    """Start the bundled simulator (``python -m actors.sim``) on 127.0.0.1 with a free port; returns the
    process and the port.
    """
    sim = settings.simulator
    assert sim is not None
    cmd = [
        sys.executable,
        "-m", "actors.sim",
        "--host", "127.0.0.1",
        "--port", "0",
        "--token-env", SIMULATOR_TOKEN_ENV,  # the token travels in the environment, not on `ps`
        "--tick-rate", str(sim.tick_rate),
        "--plan", sim.plan,
        "--codes", str(sim.codes),
        "--log-level", "WARNING",
    ]  # fmt: skip
    env = {**os.environ, SIMULATOR_TOKEN_ENV: token.reveal(), "PYTHONPATH": job_pythonpath(os.environ)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True, env=env)  # noqa: S603
    deadline = time.monotonic() + SIMULATOR_START_S
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("SIMULATOR LISTENING"):
            port = int(line.rsplit(":", 1)[1])
            threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
            return proc, port
    proc.kill()
    raise RuntimeError(
        "the bundled simulator did not start; run `tickvisor simulator --port 0 --token T` to see why"
    )


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


def _get(ref: Any, timeout: float, stop: threading.Event) -> Any:
    """``ray.get(ref, timeout=timeout)``, but None as soon as ``stop`` is set: a signal must not wait
    for a start or a status answer (a blocking ray.get only returns when the answer comes).
    """
    import ray

    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        ready, _ = ray.wait([ref], timeout=max(0.0, min(0.2, left)))
        if ready:
            return ray.get(ready[0])
        if stop.is_set():
            return None
        if left <= 0:
            return ray.get(ref, timeout=0)  # raises GetTimeoutError, as ray.get(ref, timeout) did


def ask(method: Any, stop: threading.Event) -> Any:
    """``method.remote()``'s answer (None once ``stop`` is set), patient with a Supervisor that Ray is
    restarting: Ray holds the calls made meanwhile and retries those it lost, and a call that still
    fails as unavailable is made again, for up to SUPERVISOR_PATIENCE_S in all.

    Raises:
        GetTimeoutError, ActorUnavailableError: no answer within SUPERVISOR_PATIENCE_S.
        ActorDiedError: the Supervisor is dead for good.

    """
    from ray.exceptions import ActorUnavailableError

    deadline = time.monotonic() + SUPERVISOR_PATIENCE_S
    while True:
        try:
            return _get(method.remote(), max(0.1, deadline - time.monotonic()), stop)
        except ActorUnavailableError:
            if time.monotonic() >= deadline or stop.is_set():
                raise
            stop.wait(0.2)


#: The logger of Ray's note that a local Ray it starts uses token authentication (Ray 2.60).
RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
RAY_AUTH_ON_NOTE = "Token authentication is enabled for this Ray cluster"


def _not_the_token_note(record: logging.LogRecord) -> bool:
    """Drop Ray's note that token authentication is on: the local Ray the job starts always uses it
    (docs/getting-started.md), and the note's advice (turn it off) is not one we give. Its other lines pass.
    """
    return not record.getMessage().startswith(RAY_AUTH_ON_NOTE)


def init_ray(args: argparse.Namespace) -> bool:
    """Join a cluster or start a local Ray. Returns True when this process started Ray."""
    import ray

    address = args.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, namespace=args.namespace, logging_level=logging.WARNING)
        return False
    # Workers of a local Ray inherit this process's environment. Setting it here rather than through
    # runtime_env keeps Ray's prestarted worker pool usable: actors start in about half the time.
    os.environ["PYTHONPATH"] = job_pythonpath(os.environ, args.config)
    metrics = {"_metrics_export_port": args.metrics_port} if args.metrics_port else {}
    auth_logger = logging.getLogger(RAY_AUTH_LOGGER)
    auth_logger.addFilter(_not_the_token_note)
    try:
        for attempt in (1, 2):
            try:
                ray.init(
                    address="local",
                    namespace=args.namespace,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    **metrics,
                )
                break
            except Exception as exc:  # Ray raises a bare Exception when its node misses its startup window
                if attempt == 2 or "timed out during startup" not in str(exc):
                    raise
                why = (
                    "the local Ray did not start within its startup window (a loaded machine?); "
                    "trying once more"
                )
                print(f"tickvisor: {why}", file=sys.stderr, flush=True)  # noqa: T201
                ray.shutdown()
    finally:
        auth_logger.removeFilter(_not_the_token_note)
    return True


class StopSteps:
    """How long each step of the clean stop took, counted from the signal: one line on stderr at the
    end of a stop by SIGINT or SIGTERM, so that a stop slower than STOP_WITHIN_S says where the time
    went.
    """

    def __init__(self, began: float) -> None:
        self._began = self._last = began
        self._steps: list[tuple[str, float]] = []

    def done(self, step: str) -> None:
        """Step ``step`` ended now."""
        now = time.monotonic()
        self._steps.append((step, now - self._last))
        self._last = now

    def __str__(self) -> str:
        parts = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in self._steps)
        return f"stop took {self._last - self._began:.1f} s from the signal ({parts})"


def status_line(status: dict[str, Any], previous_ticks: int, span_s: float) -> tuple[str, int]:
    """One compact line from the supervisor's status."""
    conns = status.get("connections", {})
    up = sum(1 for c in conns.values() if isinstance(c, dict) and c.get("connected"))
    ticks = sum(d.get("ticks", 0) for d in status.get("decoders", {}).values() if isinstance(d, dict))
    registry = status.get("registry") or {}
    restarts = sum(1 for e in status.get("events", []) if e.get("event") in {"restart", "restarted"})
    rate = (ticks - previous_ticks) / span_s if span_s > 0 else 0.0
    sync = "in sync" if registry.get("in_sync") else "subscribing"
    line = (
        f"tickvisor: {up}/{len(conns)} connections up, {sync}, {len(registry.get('union', []))} codes, "
        f"{ticks} ticks ({rate:.0f}/s), restarts {restarts}"
    )
    return line, ticks


def start_job(sup: Any, settings: Settings, stop: threading.Event) -> tuple[Any, FeedError | None]:
    """Start the Supervisor; returns its connection ids (None when a signal came first) and the failure
    that stops the job before it runs, if any: a connection not accepted in time (ConnectFailed, naming
    the endpoint and the last error) or refused for good (ChildFailed, e.g. 401 token invalid).
    """
    from ray.exceptions import RayTaskError

    try:
        # The supervisor's own deadline (feed.start_timeout_s) comes first; this one only bounds a hang.
        conns = _get(sup.start.remote(), settings.feed.start_timeout_s + START_GRACE_S, stop)
    except RayTaskError as exc:
        if not isinstance(exc.cause, FeedError):
            raise
        return None, exc.cause
    if conns is None:
        return None, None
    # Started, but a child may have failed for good meanwhile: never print "started" before giving up.
    return conns, _get(sup.failure.remote(), 10, stop)


def check_strategy_classes(settings: Settings) -> None:
    """Import every strategy class now, so a bad ``kind`` is a config error (exit 2), not a crash later.

    Raises:
        ConfigError: naming ``strategies[i].kind``.

    """
    from actors.children import load_strategy_class

    for i, strategy in enumerate(settings.strategies):
        load_strategy_class(strategy.kind, f"strategies[{i}].kind")


def main(argv: Sequence[str] | None = None, *, prog: str = "tickvisor") -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    Args:
        argv: the arguments after the program's name.
        prog: the program's name in usage and error lines (``supervisor.py``, ``python -m actors``).

    """
    args = parse_args(argv, prog)
    if args.command == "simulator":
        from actors.sim.cli import main as simulator_main

        return simulator_main(args.simulator_args, prog=f"{prog} simulator")
    if args.command in {"status", "subscribe", "unsubscribe"}:
        return run_command(args)
    for directory in project_dirs(args.config):  # strategy kinds are imported from here (job_pythonpath)
        if directory not in sys.path:
            sys.path.append(directory)
    if args.command == "replay":
        return replay_command(args)
    if args.command == "check":
        return check_command(args)
    return run_job(args)


def run_job(args: argparse.Namespace) -> int:  # noqa: C901, PLR0915, PLR0912
    """Run the job; returns the exit code."""
    if args.log_format:
        # Before any shell imports actors.log; the workers of a local Ray inherit it (see init_ray).
        os.environ["TICKVISOR_LOG_FORMAT"] = args.log_format
    try:
        settings = load_settings(args.config) if args.config else embedded_default()
        tokens = resolve_tokens(settings, os.environ)
        token = next(iter(tokens.values()))  # the bundled simulator's
        from actors.log import hide

        for secret in tokens.values():
            hide(secret)  # this process's log lines never show one
        check_strategy_classes(settings)
    except ConfigError as exc:
        print(f"tickvisor: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    stop = threading.Event()
    signalled_at: list[float] = []

    def on_signal(signum: int, _frame: Any) -> None:
        print(f"tickvisor: {signal.Signals(signum).name}, stopping", file=sys.stderr, flush=True)  # noqa: T201
        if not signalled_at:
            signalled_at.append(time.monotonic())
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    sim_proc = None
    if settings.simulator is not None and settings.simulator.enabled:
        sim_proc, port = start_simulator(settings, token)
        settings = with_simulator(settings, "127.0.0.1", port)
        print(f"tickvisor: bundled simulator on 127.0.0.1:{port}", flush=True)  # noqa: T201

    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError

    from actors.launch import launch

    started_ray = False
    sup = None
    code = 0
    try:
        started_ray = init_ray(args)
        if started_ray:  # so that `tickvisor status` on this machine finds this job's Ray
            from actors.control import publish_address

            published = ray.get_runtime_context().gcs_address
            with contextlib.suppress(OSError):  # the commands then need --address; the job runs on
                publish_address(args.namespace, published)
        # ray.init replaces the SIGTERM handler with one that calls sys.exit(15): SIGTERM then ended the
        # job with exit code 15 (or an abort in ray.shutdown) and no "stopped". Take both signals back.
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        # This process creates, and so owns, the Supervisor and every child (`launched` holds them): a
        # killed Supervisor is restarted by Ray and finds them again; if this process dies, all go.
        launched = launch(settings, tokens, uuid.uuid4().hex[:12], args.namespace)
        sup = launched.supervisor
        conns, failure = start_job(sup, settings, stop)
        if failure is not None:
            print(f"tickvisor: {failure}", file=sys.stderr, flush=True)  # noqa: T201
            code = 1
        elif conns is not None:
            print(f"tickvisor: started, connections {conns}; Ctrl-C stops", flush=True)  # noqa: T201
        began = last = time.monotonic()
        ticks = 0
        while not stop.is_set() and code == 0:
            stop.wait(min(0.5, args.status_every or 0.5))
            now = time.monotonic()
            try:
                failure = ask(sup.failure, stop)
                due = args.status_every and now - last >= args.status_every
                status = ask(sup.status, stop) if due and failure is None and not stop.is_set() else None
            except (GetTimeoutError, ActorUnavailableError):
                why = f"did not answer for {SUPERVISOR_PATIENCE_S:g} s"
                print(f"tickvisor: the supervisor {why}", file=sys.stderr, flush=True)  # noqa: T201
                code = 1
                break
            except ActorDiedError as exc:
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                print(f"tickvisor: the supervisor is gone: {why}", file=sys.stderr, flush=True)  # noqa: T201
                code = 1
                break
            if failure is not None:
                print(f"tickvisor: supervisor gave up: {failure}", file=sys.stderr, flush=True)  # noqa: T201
                code = 1
                break
            if status is not None:
                line, ticks = status_line(status, ticks, now - last)
                print(line, flush=True)  # noqa: T201
                last = now
            if args.duration and now - began >= args.duration:
                break
    except KeyboardInterrupt:
        pass
    finally:
        # The budget counts from the signal (or from now, at the end of --duration), and keeps
        # STOP_RESERVE_S for the simulator and ray.shutdown, which come after the Supervisor's stop.
        began = signalled_at[0] if signalled_at else time.monotonic()
        deadline = began + STOP_WITHIN_S - 1.0
        steps = StopSteps(began)
        if sup is not None:
            with contextlib.suppress(Exception):
                ray.get(sup.stop.remote(), timeout=max(1.0, deadline - time.monotonic() - STOP_RESERVE_S))
            with contextlib.suppress(Exception):
                ray.kill(sup, no_restart=True)
            steps.done("supervisor")
        if sim_proc is not None:
            sim_proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                sim_proc.wait(timeout=SIMULATOR_STOP_S)
            if sim_proc.poll() is None:
                sim_proc.kill()
            steps.done("simulator")
        if started_ray:
            from actors.control import unpublish_address

            unpublish_address(args.namespace, published)
            ray.shutdown()
        elif ray.is_initialized():
            ray.shutdown()  # disconnect this driver; the cluster keeps running
        steps.done("Ray" if started_ray else "Ray driver")
        if signalled_at:  # the promise counts from a signal; a job that failed says why, in one line
            print(f"tickvisor: {steps}", file=sys.stderr, flush=True)  # noqa: T201
    print("tickvisor: stopped", flush=True)  # noqa: T201
    return code


def project_dirs(config: str | None) -> list[str]:
    """Where a strategy's ``kind`` is imported from: the current directory, then the directory of the
    configuration file (a user project keeps its package beside its config.toml), absolute.
    """
    dirs = [str(Path.cwd())]
    if config:
        dirs.append(str(Path(config).expanduser().resolve().parent))
    return list(dict.fromkeys(dirs))


def job_pythonpath(environ: Mapping[str, str], config: str | None = None) -> str:
    """PYTHONPATH for the processes this job starts (the simulator, a local Ray's workers): the directory
    ``actors`` came from unless the interpreter finds it anyway (site-packages), the project directories
    (``project_dirs``: where a strategy's ``kind`` may live), then what ``environ`` had.
    """
    site = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    first = [] if str(PACKAGE_ROOT) in site else [str(PACKAGE_ROOT)]
    parts = [*first, *project_dirs(config), *environ.get("PYTHONPATH", "").split(os.pathsep)]
    return os.pathsep.join(dict.fromkeys(p for p in parts if p))


def embedded_default() -> Settings:
    """Read the embedded default configuration, package data ``actors/data/default.toml``.

    It runs the bundled simulator, both endpoints and one console strategy.

    Raises:
        ConfigError: never for the shipped file; as ``parse_settings`` for a damaged installation.

    """
    text = importlib.resources.files(actors).joinpath(DEFAULT_CONFIG).read_text(encoding="utf-8")
    settings = parse_settings(text, source=DEFAULT_SOURCE)
    check_sessions(settings, DEFAULT_SOURCE)
    return settings


def check_command(args: argparse.Namespace) -> int:
    """``check``: validate the configuration as the job's start does and print its plan; 0 or 2."""
    try:
        settings = load_settings(args.config) if args.config else embedded_default()
        resolve_tokens(settings, os.environ)
        check_strategy_classes(settings)
    except ConfigError as exc:
        print(f"tickvisor: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    print("\n".join(plan_lines(settings, args.config or DEFAULT_SOURCE, os.environ)))  # noqa: T201
    return 0


def plan_lines(settings: Settings, source: str, environ: Mapping[str, str]) -> list[str]:
    """Say what a valid configuration makes the job do at its start, for ``check``.

    Tokens appear by the name of their variable only.
    """
    from actors.children import connection_ids, connection_tokens  # Ray's module, loaded only here

    limits = settings.plan_limits()
    ids = connection_ids(settings)
    token_of = connection_tokens(settings)
    wanted = {code for strategy in settings.strategies for code in strategy.symbols}
    placed = assign(wanted, {Endpoint(e): conns for e, conns in ids.items()}, limits.codes_per_connection)
    sim = settings.simulator
    tokens = ", ".join(
        f"{name} ({'set' if environ.get(name, '').strip() else 'not set: the simulator token'})"
        for name in settings.token_names()
    )
    lines = [
        f"tickvisor: {source} is valid",
        (
            f"plan: {settings.feed.plan} ({limits.connections_per_token} connections per token per "
            f"endpoint, {limits.codes_per_connection} codes per connection)"
        ),
        f"tokens: {tokens}",
    ]
    if sim.enabled:
        lines.append(
            f"simulator: bundled, on 127.0.0.1 (plan {sim.plan}, {sim.tick_rate:g} ticks/s per code); "
            "every endpoint url points at it"
        )
    lines.append("endpoints:")
    for endpoint, conns in ids.items():
        lines.append(f"  {endpoint}  {redact(settings.endpoints[endpoint].url)}")
        for conn in conns:
            codes = sorted(placed.by_connection.get(conn, ()))
            lines.append(f"    {conn}  token {token_of[conn]}  {len(codes)} codes: {' '.join(codes) or '-'}")
    if placed.unplaced:
        lines.append(f"unplaced at the start: {' '.join(sorted(placed.unplaced))}")
    lines.append("strategies:" if settings.strategies else "strategies: none")
    for strategy in settings.strategies:
        symbols = " ".join(strategy.symbols) or "-"
        lines.append(f"  {strategy.name}  {strategy.kind}  {len(strategy.symbols)} codes: {symbols}")
    return lines
