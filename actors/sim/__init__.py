"""A local AllTick real-time WebSocket server, faithful to /work/shared/PROTOCOL.md, with fault injection.

The connection actors are tested and benchmarked against this server. It is self-contained (stdlib,
websockets and msgspec only) and deliberately imports nothing of ``actors`` outside ``actors.sim``, so
that a client bug and a server bug cannot cancel out (tests/test_simulator.py checks it).

Command line
============

    tickvisor simulator --host 127.0.0.1 --port 8765 --token TOKEN --heartbeat-timeout 30

(the same as ``python -m actors.sim ...`` and, from a checkout, ``python scripts/simulator.py ...``)

    --plan free|basic|premium|pro   connection and code limits of PROTOCOL.md "Limits" (default pro)
    --max-connections N             connections per token per endpoint path (overrides the plan)
    --max-codes N                   codes per connection, trades and book separately (overrides the plan)
    --tick-rate R                   22998 trade pushes per second per subscribed code (default 2.0, 0 = none)
    --book-rate R                   22999 book pushes per second per book-subscribed code (default 1.0)
    --codes N                       extra codes per endpoint: S0001.US.. (stock), C0001USDT.. (forex/crypto),
                                    default 200
    --seed N                        random-walk seed (default 0)
    --clock-offset S                the server's clock shifted: S seconds added to every tick_time (default 0;
                                    the ``clock`` fault changes it while running)
    --conn-gap-s S                  min seconds between subscription requests on one connection (default 1.0)
    --token-gap-s S                 min seconds between subscription requests on different connections of
                                    the token on one path (default 3.0, 0 disables)
    --token-env NAME                read the token from this environment variable instead of --token
                                    (keeps it out of `ps`); one of the two is required
    --more-token TOKEN              a further valid token, with its own connection limit and rate clocks
                                    (repeatable; the bundled benchmarks' second token)
    --log-level LEVEL               stderr logging level (default INFO); the token is logged as "***"
    --tls CERT KEY                  serve wss:// (and https:// admin) with this PEM certificate and key

``--port 0`` picks a free port. On start the server prints exactly one line to stdout,
``SIMULATOR LISTENING <host>:<port>``, and flushes. SIGINT or SIGTERM closes it with exit code 0.

Endpoints (PROTOCOL.md "Endpoints"): ``/quote-stock-b-ws-api`` and ``/quote-b-ws-api``, token in
``?token=``. A wrong or missing token gets a 401 error frame, then close code 1008. An unknown path is
refused with HTTP 404. A connection over the limit gets a 606 error frame, then close code 1008. A
connection without a 22000 for ``--heartbeat-timeout`` seconds is closed with 1000 "heartbeat timeout".

Our readings, where the brief or PROTOCOL.md leave room:

* A subscription request (22002/22004/22006) is "accepted" when it is answered 200; only accepted
  requests start the ``--conn-gap-s`` / ``--token-gap-s`` clocks. The rate check comes first, so a
  too-early malformed request is answered 429, not 400. Closed connections still count for the token gap.
* Every code in the request is checked (also those past the code limit); one unknown code makes the
  whole request 600 and the previous subscription stays in force.
* Book depth: ``min(depth_level or 1, class maximum)``; class maxima are forex/metals/oil/CFD 1 (volume
  ""), US 1, crypto and A-shares 5, HK 10 (PROTOCOL.md: "without depth_level the server sends one level").
* ``data`` is required on every request, 22000 included (PROTOCOL.md "Frame envelope"); without it: 400.
* Trade and book pushes carry an extra ``sent_ns`` (``time.time_ns()`` at send) for latency benchmarks.
  Trade ``seq`` and book ``seq`` are separate counters per code, global to the server.
* The server sends no WebSocket pings of its own; it answers the client's.
* A client with 16 MiB unsent in the server's buffer misses normal ticks (seq gaps) until it catches up.

HTTP admin API (same port, plain GET, ``token`` query parameter required, else HTTP 401)
======================================================================================

    GET /admin/state?token=T                                  -> JSON of Simulator.state()
    GET /admin/fault?token=T&name=stall&path=/quote-b-ws-api&conn=3&count=5...
                                                              -> {"affected": [connection ids]}

``path`` may be a path or an endpoint name (``stock``, ``forex_crypto``); omitted = every path. ``conn``
omitted = every current connection on the path. An unknown fault or bad parameter is HTTP 400.

Faults (``Simulator.inject(name, *, path=None, conn=None, **params)`` or ``/admin/fault``)
========================================================================================

    stall      keep reading (WebSocket pings are answered), discard every request, send nothing, never
               close, not even on heartbeat timeout: the "false-alive" socket
    blackhole  stop reading (transport.pause_reading) and writing: pings go unanswered; never close
    drop       tear the TCP connection down without a close frame (transport.abort)
    ghost      push ``count`` (default 5) trades for ``code``, a code the connection did not subscribe
               (default: the first such code of the path)
    malformed  push one malformed frame; ``kind``: json (invalid JSON), fields (22998 without price),
               types (price as a JSON number); default json
    burst      push ``count`` (default 100000) trades round-robin over the subscribed codes, pre-encoded
               and written in bulk as raw frames with flow control; ``rate`` (trades/s) paces them in
               1 ms slices instead. Normal pushes to that connection pause meanwhile; seq stays increasing
    refuse     the next ``count`` (default 1) NEW connections on the path (any path if omitted) get 606
               and are closed; returns []
    reply      answer the next subscription request with ``ret`` (default 603) and ``msg`` (default: the
               PROTOCOL.md message of ret); the subscription stays unchanged
    hold       the next ``count`` (default 1) subscription requests on the path (any path if omitted),
               on any connection, new ones included, are read and never answered: a request stays in
               flight (recorded in ``requests`` with ret 0, counted in totals ``held``); returns []
    clear      remove stall, blackhole and reply, stop a running burst, and lift every per-code fault;
               with ``code``: lift that code's mute and tick_time_skew only
    clock      shift the server's clock to ``offset_s`` seconds (default 0) from the real one: every
               tick_time from now on (as ``--clock-offset``); returns []. With ``mute`` (a code's market
               closes) and ``clear`` (it opens), a test plays a session's close and open without waiting

Per-code faults (``code`` required; they act on the code wherever it is subscribed, and return the
connections on ``path``/``conn`` that hold it):

    mute            no more normal pushes (trades and books) for the code, until ``clear``
    seq_reset       the code's trade and book seq restart at 1 (as after a vendor restart); tick_time goes on
    tick_time_skew  the code's tick_time is off by ``skew_s`` seconds (default 3600; negative = in the
                    past), until ``clear``
    corrupt         push ``count`` (default 1) trades of the code at once with ``price`` (default "0") and,
                    if given, ``volume``; seq advances as for any trade

State (``Simulator.state()``, ``/admin/state``)
===============================================

    {"connections": [{"id", "path", "peer", "open", "trades": [sorted codes], "books": [sorted codes],
                      "faults": [...], "heartbeats": n, "pushes": n,
                      "requests": [[monotonic_time, cmd_id, ret], ...],   # subscription requests only
                      "refused": {"429": n, "400": n, ...}}, ...],
     "closed": [same, the last 100 closed connections],
     "totals": {"connections_opened", "refused_606", "refused_401", "pushes", "429", "400", "600", ...},
     "code_faults": {"muted": [codes], "tick_time_skew_ms": {code: ms}},
     "clock_offset_s": seconds}

``max_requests_in_window(conn_state, window_s)`` is the largest number of subscription requests a
connection sent within any ``window_s`` seconds.

In-process use: ``Simulator`` (asyncio, ``await sim.start()`` returns the port) and ``SimulatorThread``
(its own event loop in a daemon thread, for synchronous callers such as Ray tests; a context manager).

Layout
======

This package re-exports the public names, so that ``from actors.sim import Simulator, SimulatorThread,
SimState, ...`` works (``scripts/simulator.py`` re-exports them too, for code written against it):

    protocol.py  PROTOCOL.md constants: paths, commands, error codes, close codes, plan limits
    frames.py    push Structs, raw WebSocket text frames, the response/error envelope
    market.py    asset classes, codes, prices and per-code sequence numbers (Market)
    state.py     SimState, the sans-I/O core, and max_requests_in_window
    link.py      Link: one live WebSocket connection
    faults.py    FaultInjector: the faults above, on live connections
    admin.py     AdminAPI: the HTTP admin API and 404 for unknown paths
    server.py    Simulator: the websockets server, its connections and tick loops
    thread.py    SimulatorThread
    cli.py       the command line above (``main``); ``__main__.py`` runs it
"""

from __future__ import annotations

from actors.sim.cli import main
from actors.sim.faults import FAULTS
from actors.sim.market import format_units
from actors.sim.protocol import ENDPOINT_PATHS, FOREX_CRYPTO_PATH, PLAN_LIMITS, STOCK_PATH, PlanLimits
from actors.sim.server import Simulator
from actors.sim.state import SimState, max_requests_in_window
from actors.sim.thread import SimulatorThread

__all__ = [
    "ENDPOINT_PATHS",
    "FAULTS",
    "FOREX_CRYPTO_PATH",
    "PLAN_LIMITS",
    "STOCK_PATH",
    "PlanLimits",
    "SimState",
    "Simulator",
    "SimulatorThread",
    "format_units",
    "main",
    "max_requests_in_window",
]
