"""tickvisor, the main job: supervise AllTick market-data feeds on Ray.

    python supervisor.py                          # the embedded default: bundled simulator + console
    python supervisor.py --config configs/example.toml
    ray job submit --working-dir . -- python supervisor.py --config configs/simulator.toml

Commands on a running job (they need no token; README "Operating a running job"):

    python supervisor.py status [--json]                      # exit 0 up and in sync, 1 not, 3 no job
    python supervisor.py subscribe STRATEGY CODE... [--book]  # exit 0 all accepted, 2 any refused
    python supervisor.py unsubscribe STRATEGY CODE... [--book]

Each finds the job by ``--namespace`` (default tickvisor) and ``--address`` (default RAY_ADDRESS, else
the local Ray that a ``python supervisor.py`` on this machine started).

With RAY_ADDRESS set (as under ``ray job submit``) or ``--address``, the job joins that cluster and
leaves it running; otherwise it starts a local Ray and stops it on exit. SIGINT or SIGTERM stops it
cleanly within 10 s: strategies flush, sockets close, the simulator (if any) stops.
Exit codes: 0 clean stop, 1 the job could not start or the supervisor gave up (one line says why),
2 bad configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from actors.config import load_settings
from actors.core.errors import ConfigError, FeedError  # noqa: E402
from actors.core.settings import Settings, default_settings, with_simulator
from actors.core.tokens import Secret, resolve_tokens

STOP_WITHIN_S = 10.0  # the whole clean stop, as promised above, counted from the signal
#: Of that, what the end of the stop needs after the Supervisor's own stop: the simulator (about 0.2 s,
#: at most SIMULATOR_STOP_S) and ray.shutdown of a local Ray (about 2 s, more on a loaded machine).
STOP_RESERVE_S = 4.0
SIMULATOR_STOP_S = 1.0
SIMULATOR_START_S = 20.0
SIMULATOR_TOKEN_ENV = "TICKVISOR_SIMULATOR_TOKEN"
#: Beyond feed.start_timeout_s, what the start may take: creating the actors and starting the strategies.
START_GRACE_S = 60.0
#: How long the main loop waits for an answer of the Supervisor. Ray restarts a killed one in about
#: 1-2 s (more on a loaded machine) and holds the calls meanwhile; past this the job exits 1.
SUPERVISOR_PATIENCE_S = 30.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="supervisor.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="TOML config (default: the embedded default, no token needed)")
    p.add_argument(
        "--duration", type=float, default=0.0, help="stop cleanly after this many seconds (0: run)"
    )
    p.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines (0: none)")
    p.add_argument("--namespace", default="tickvisor", help="Ray namespace of the job's named actors")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else local)")
    p.add_argument(
        "--metrics-port", type=int, default=0,
        help="a local Ray serves Prometheus metrics on this port (a cluster: ray start --metrics-export-port)",
    )  # fmt: skip
    p.add_argument(
        "--log-format", choices=("text", "json"), default=None,
        help="text (readable, the default) or json (one object per line); also TICKVISOR_LOG_FORMAT",
    )  # fmt: skip
    commands = p.add_subparsers(dest="command", metavar="{status,subscribe,unsubscribe}")
    where = argparse.ArgumentParser(add_help=False)
    # Also accepted after the command; SUPPRESS keeps a value given before it.
    where.add_argument("--namespace", default=argparse.SUPPRESS, help="Ray namespace of the job")
    where.add_argument(
        "--address", default=argparse.SUPPRESS, help="its Ray (default: RAY_ADDRESS, else local)"
    )
    status = commands.add_parser("status", parents=[where], help="one screen about the running job")
    status.add_argument("--json", action="store_true", help="the same as one JSON document")
    for name, verb in (("subscribe", "hold"), ("unsubscribe", "release")):
        sub = commands.add_parser(
            name, parents=[where], help=f"{verb} codes for a strategy of the running job"
        )
        sub.add_argument("strategy", help="the strategy's name")
        sub.add_argument("codes", nargs="+", metavar="CODE", help="codes in the vendor's notation")
        sub.add_argument("--book", action="store_true", help="order books (22002) instead of trades")
    return p.parse_args(argv)


def send_cluster_token(environ: dict[str, str] | os._Environ[str]) -> None:
    """Have this process send the Ray cluster token, when one is at hand, before Ray is imported.

    Ray 2.60 turns token authentication on for every local cluster, but a driver that joins one sends
    the token only under RAY_AUTH_MODE=token (README, "The cluster token"), read when Ray is imported.
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
    """Start scripts/simulator.py on 127.0.0.1 with a free port; returns the process and the port."""
    sim = settings.simulator
    assert sim is not None
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "simulator.py"),
        "--host", "127.0.0.1",
        "--port", "0",
        "--token-env", SIMULATOR_TOKEN_ENV,  # the token travels in the environment, not on `ps`
        "--tick-rate", str(sim.tick_rate),
        "--plan", sim.plan,
        "--codes", str(sim.codes),
        "--log-level", "WARNING",
    ]  # fmt: skip
    env = {**os.environ, SIMULATOR_TOKEN_ENV: token.reveal()}
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
    raise RuntimeError("the bundled simulator did not start; run scripts/simulator.py --port 0 to see why")


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


def init_ray(args: argparse.Namespace) -> bool:
    """Join a cluster or start a local Ray. Returns True when this process started Ray."""
    import ray

    address = args.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, namespace=args.namespace, logging_level=logging.WARNING)
        return False
    # Workers of a local Ray inherit this process's environment. Setting it here rather than through
    # runtime_env keeps Ray's prestarted worker pool usable: actors start in about half the time.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    metrics = {"_metrics_export_port": args.metrics_port} if args.metrics_port else {}
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
                "the local Ray did not start within its startup window (a loaded machine?); trying once more"
            )
            print(f"tickvisor: {why}", file=sys.stderr, flush=True)  # noqa: T201
            ray.shutdown()
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
    from actors.supervision import load_strategy_class

    for i, strategy in enumerate(settings.strategies):
        load_strategy_class(strategy.kind, f"strategies[{i}].kind")


def main(argv: list[str] | None = None) -> int:  # noqa: C901, PLR0915
    """Run the job; returns the exit code."""
    args = parse_args(argv)
    if args.log_format:
        # Before any shell imports actors.log; the workers of a local Ray inherit it (see init_ray).
        os.environ["TICKVISOR_LOG_FORMAT"] = args.log_format
    if args.command:
        return run_command(args)
    try:
        settings = load_settings(args.config) if args.config else default_settings()
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

    from actors.supervision import launch

    started_ray = False
    sup = None
    code = 0
    try:
        started_ray = init_ray(args)
        if started_ray:  # so that `supervisor.py status` on this machine finds this job's Ray
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


if __name__ == "__main__":
    sys.exit(main())
