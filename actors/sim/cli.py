"""The simulator's command line: ``tickvisor simulator``, ``python -m actors.sim``, ``scripts/simulator.py``.

Its options are listed in actors.sim's docstring. ``main`` serves until SIGINT or SIGTERM and returns 0;
a bad option exits 2 (argparse).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl
import sys
from typing import TYPE_CHECKING

from actors.sim.protocol import (
    DEFAULT_CONN_GAP_S,
    DEFAULT_HEARTBEAT_TIMEOUT_S,
    DEFAULT_TOKEN_GAP_S,
    PLAN_LIMITS,
)
from actors.sim.server import DEFAULT_BOOK_RATE, DEFAULT_EXTRA_CODES, DEFAULT_TICK_RATE, Simulator

if TYPE_CHECKING:
    from collections.abc import Sequence

EPILOG = """exit codes:
  0  stopped by SIGINT or SIGTERM
  2  bad command line (e.g. --token-env names an unset variable)

On start it prints one line, SIMULATOR LISTENING <host>:<port>, on stdout."""


def _parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="A local AllTick WebSocket server with fault injection (PROTOCOL.md).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    tok = p.add_mutually_exclusive_group(required=True)
    tok.add_argument("--token", help="the only valid token (never printed)")
    tok.add_argument(
        "--token-env",
        metavar="NAME",
        help="read the token from this environment variable instead (keeps it out of `ps`)",
    )
    p.add_argument(
        "--more-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="a further valid token with its own limits and rate clocks (repeatable; benchmarks)",
    )
    p.add_argument("--heartbeat-timeout", type=float, default=DEFAULT_HEARTBEAT_TIMEOUT_S)
    p.add_argument("--plan", choices=sorted(PLAN_LIMITS), default="pro")
    p.add_argument("--max-connections", type=int, default=None)
    p.add_argument("--max-codes", type=int, default=None)
    p.add_argument("--tick-rate", type=float, default=DEFAULT_TICK_RATE)
    p.add_argument("--book-rate", type=float, default=DEFAULT_BOOK_RATE)
    p.add_argument("--codes", type=int, default=DEFAULT_EXTRA_CODES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        metavar="S",
        help="shift the server's clock: S seconds added to every pushed tick_time (default 0)",
    )
    p.add_argument("--conn-gap-s", type=float, default=DEFAULT_CONN_GAP_S)
    p.add_argument("--token-gap-s", type=float, default=DEFAULT_TOKEN_GAP_S)
    p.add_argument("--log-level", default="INFO")
    p.add_argument(
        "--tls",
        nargs=2,
        metavar=("CERT", "KEY"),
        default=None,
        help="serve wss:// with this PEM certificate chain and private key",
    )
    return p


def _tls(files: list[str] | None) -> ssl.SSLContext | None:
    """Return the server-side SSL context of ``--tls CERT KEY``, or None."""
    if files is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*files)
    return context


async def _serve(args: argparse.Namespace) -> None:
    sim = Simulator(
        host=args.host,
        port=args.port,
        token=args.token,
        heartbeat_timeout=args.heartbeat_timeout,
        plan=args.plan,
        max_connections=args.max_connections,
        max_codes=args.max_codes,
        tick_rate=args.tick_rate,
        book_rate=args.book_rate,
        codes=args.codes,
        seed=args.seed,
        conn_gap_s=args.conn_gap_s,
        token_gap_s=args.token_gap_s,
        tls=_tls(args.tls),
        more_tokens=tuple(args.more_token),
        clock_offset_s=args.clock_offset,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    port = await sim.start()
    sys.stdout.write(f"SIMULATOR LISTENING {args.host}:{port}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run the simulator until SIGINT/SIGTERM; return the exit code.

    Args:
        argv: the options (default: ``sys.argv[1:]``).
        prog: the command's name in usage and error lines.

    """
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.token_env is not None:
        args.token = os.environ.get(args.token_env, "")
        if not args.token:
            parser.error(f"--token-env {args.token_env}: that environment variable is not set or empty")
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_serve(args))
    return 0
