"""The job's configuration: one TOML text, decoded into one schema and validated whole. Pure: no I/O.

Rules of this module:

1. One schema. Every table is a frozen msgspec Struct that forbids unknown keys, and the text is read
   with ``msgspec.toml.decode(text, type=Settings)``. Types and ranges are ``msgspec.Meta`` constraints
   whose ``description`` says what the key is; rules across keys live in ``_validate``.
2. A ``Settings`` that exists is valid: ``parse_settings`` is the only way in, and it checks everything
   (plan limits, endpoint paths, every symbol) before returning. The job never fails later on a key.
3. Every problem is one ``ConfigError`` whose ``key`` is the dotted path of the bad key
   (``feed.heartbeat_interval_s``, ``strategies[0].symbols[1]``) and whose reason says what is expected
   (``actors.core.config_errors`` words msgspec's errors).
4. The file holds the NAME of the token's environment variable, never the token (``actors.core.tokens``).
   Reading the file is the shell's (``actors.config.load_settings``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import msgspec

from actors.core.codes import ENDPOINT_PATHS, Endpoint, endpoint_of
from actors.core.config_errors import explain, syntax_reason
from actors.core.errors import ConfigError, InvalidCode
from actors.core.liveness import HEARTBEAT_INTERVAL_S, Liveness
from actors.core.plans import PLANS, Plan
from actors.core.tokens import redact

#: no heartbeat (PROTOCOL.md "Liveness"), so the job notices a dead socket before the server acts.
MAX_SILENCE_DEADLINE_S: Final = 25.0
#: The shortest silence deadline: short enough that tests against the simulator notice a dead socket fast.
MIN_SILENCE_DEADLINE_S: Final = 1.0
#: The WebSocket libraries a Connection actor can read with (actors/transport.py), the default first.
TRANSPORTS: Final = ("picows", "websockets")

#: The plans scripts/simulator.py knows (its --plan choices; it imports nothing from actors).
SIMULATOR_PLANS: Final = ("free", "basic", "premium", "pro")
#: Strategy kinds built into tickvisor; anything else is "package.module:Class".
BUILTIN_KINDS: Final = ("recorder", "console")

# Upper case only: by convention every environment variable is, and a token pasted here by mistake
# (mixed case, dashes) is refused by the pattern instead of being echoed in "ALLTICK... is not set".
_ENV_NAME_RE: Final = r"^[A-Z_][A-Z0-9_]*$"
_STRATEGY_NAME_RE: Final = r"^[A-Za-z0-9_.-]+$"
_IDENTIFIER: Final = r"[A-Za-z_][A-Za-z0-9_]*"
_USER_KIND_RE: Final = re.compile(rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})*:{_IDENTIFIER}(?:\.{_IDENTIFIER})*")


# --- the schema ----------------------------------------------------------------------------------


class _Table(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every table: immutable, and an unknown key is an error."""


class FeedSettings(_Table, frozen=True):
    """``[feed]``: the vendor feed, its liveness and its batching."""

    token_env: Annotated[
        str,
        msgspec.Meta(
            pattern=_ENV_NAME_RE,
            description="the NAME of the environment variable holding the AllTick token (upper-case "
            "letters, digits and _), never the token itself",
        ),
    ] = "ALLTICK_TOKEN"  # noqa: S105 - the NAME of the variable, not a token
    token_envs: Annotated[
        tuple[Annotated[str, msgspec.Meta(pattern=_ENV_NAME_RE)], ...],
        msgspec.Meta(
            description="the NAMES of the environment variables holding several AllTick tokens of the "
            "same plan, each once; when given it replaces token_env. Quotas add up: each token holds "
            "its own connections and keeps its own rate limits",
        ),
    ] = ()
    heartbeat_interval_s: Annotated[
        float,
        msgspec.Meta(
            gt=0,
            le=HEARTBEAT_INTERVAL_S,
            description="the seconds between the 22000 heartbeats the client sends, in (0, 10] "
            "(PROTOCOL.md: every 10 s)",
        ),
    ] = 10.0
    silence_deadline_s: Annotated[
        float,
        msgspec.Meta(
            ge=MIN_SILENCE_DEADLINE_S,
            le=MAX_SILENCE_DEADLINE_S,
            description="the seconds without a frame after which a socket is dead and replaced, "
            "in [1, 25] (the server itself closes after 30 s without a heartbeat)",
        ),
    ] = 15.0
    ping_deadline_s: Annotated[
        float,
        msgspec.Meta(
            gt=0,
            description="the seconds a Connection actor may take to answer the heartbeat actor's ping, > 0",
        ),
    ] = 2.0
    start_timeout_s: Annotated[
        float,
        msgspec.Meta(
            gt=0,
            description="the seconds the job waits at start for every connection to be accepted by the "
            "server; past that it exits 1 naming the endpoint and the last error, > 0",
        ),
    ] = 60.0
    plan: Annotated[
        str, msgspec.Meta(description=f"the token's AllTick plan, one of: {', '.join(PLANS)}")
    ] = "professional"
    max_connections: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="the connections per endpoint; 0 means the plan's connections_per_token, "
            "anything else must not exceed it",
        ),
    ] = 0
    max_codes_per_connection: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="the codes per connection; 0 means the plan's codes_per_connection, "
            "anything else must not exceed it",
        ),
    ] = 0
    idle_connection_close_s: Annotated[
        float,
        msgspec.Meta(
            ge=0,
            description="the seconds a connection opened for more room may hold nothing before it is "
            "closed, >= 0 (the start-up connections are never closed)",
        ),
    ] = 30.0
    batch_max_frames: Annotated[
        int, msgspec.Meta(ge=1, description="the most frames a connection hands on in one batch, >= 1")
    ] = 256
    batch_max_age_ms: Annotated[
        float,
        msgspec.Meta(
            gt=0, description="the age, in ms, of its oldest frame at which a batch is handed on, > 0"
        ),
    ] = 5.0
    strategy_queue_batches: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            description="the batches on their way from a decoder to a strategy, unacknowledged (beyond "
            "them its new ticks join one waiting batch), and the strategy's own queue per decoder, >= 1",
        ),
    ] = 64
    strategy_queue_ticks: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            description="the ticks a decoder holds for a strategy that is behind (sent or waiting, not "
            "acknowledged); beyond them its ticks are dropped and reported to on_missed, >= 1",
        ),
    ] = 50_000
    transport: Annotated[
        str,
        msgspec.Meta(
            description=f"the WebSocket library each connection reads with, one of: {', '.join(TRANSPORTS)}"
        ),
    ] = TRANSPORTS[0]
    stale_after_s: Annotated[
        float,
        msgspec.Meta(
            ge=0,
            description="the seconds without a tick after which a held code on a live connection is "
            "stale (and a newly subscribed one never started), >= 0; 0 disables the check; "
            "[endpoints.NAME] stale_after_s overrides it per endpoint",
        ),
    ] = 60.0
    open_grace_s: Annotated[
        float,
        msgspec.Meta(
            ge=0,
            description="the seconds a held code gets at its session's open, on top of stale_after_s, "
            "before it is stale or never started, >= 0; [endpoints.NAME] open_grace_s overrides it per "
            "endpoint",
        ),
    ] = 120.0
    sessions: Annotated[
        dict[str, str],
        msgspec.Meta(
            description="code or glob pattern -> trading session ('always', 'fx', an exchange calendar "
            "such as XNYS, or windows 'DAYS HH:MM-HH:MM ZONE'); the most specific match wins, codes it "
            "does not match follow the built-in default of their market",
        ),
    ] = {}
    deliver_corrupt: Annotated[
        bool,
        msgspec.Meta(
            description="whether to deliver ticks with a price at or below zero or a negative volume "
            "(counted and reported either way); true only for instruments that can trade at or below zero",
        ),
    ] = False


class RestartSettings(_Table, frozen=True):
    """``[restart]``: how children are restarted and connections retried."""

    max_restarts: Annotated[
        int, msgspec.Meta(ge=1, description="the restarts allowed per child within within_s seconds, >= 1")
    ] = 5
    within_s: Annotated[
        float, msgspec.Meta(gt=0, description="the window of max_restarts, in seconds, > 0")
    ] = 60.0
    backoff_initial_s: Annotated[
        float, msgspec.Meta(gt=0, description="the first reconnect delay, in seconds, > 0")
    ] = 0.5
    backoff_max_s: Annotated[
        float,
        msgspec.Meta(gt=0, description="the longest reconnect delay, in seconds, >= backoff_initial_s"),
    ] = 30.0
    backoff_jitter: Annotated[
        float,
        msgspec.Meta(
            ge=0, le=1, description="the fraction by which a delay may be shortened at random, in [0, 1]"
        ),
    ] = 0.5


class EndpointSettings(_Table, frozen=True, kw_only=True):
    """``[endpoints.<name>]``: where one AllTick endpoint lives."""

    url: Annotated[
        str,
        msgspec.Meta(
            description="a ws:// or wss:// url with the endpoint's path and no token (the job appends "
            "?token= from the environment)"
        ),
    ]
    stale_after_s: Annotated[
        float | None,
        msgspec.Meta(
            description="this endpoint's [feed] stale_after_s: seconds without a tick after which a "
            "held code is stale, >= 0 (0 disables); omitted = [feed] stale_after_s"
        ),
    ] = None
    open_grace_s: Annotated[
        float | None,
        msgspec.Meta(
            description="this endpoint's [feed] open_grace_s: seconds a held code gets at its session's "
            "open on top of stale_after_s, >= 0; omitted = [feed] open_grace_s"
        ),
    ] = None


class SimulatorSettings(_Table, frozen=True):
    """``[simulator]``: when enabled, the job starts the bundled simulator and connects to it."""

    enabled: Annotated[
        bool,
        msgspec.Meta(description="whether to start the bundled simulator and point every endpoint url at it"),
    ] = False
    tick_rate: Annotated[
        float,
        msgspec.Meta(
            ge=0, description="the 22998 trade pushes per second per subscribed code, >= 0 (0: none)"
        ),
    ] = 2.0
    plan: Annotated[
        str,
        msgspec.Meta(
            description=f"the plan whose limits the simulator enforces, one of: {', '.join(SIMULATOR_PLANS)}"
        ),
    ] = "pro"
    codes: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="the extra codes the simulator lists per endpoint (S0001.US.., C0001USDT..), >= 0",
        ),
    ] = 200


class StrategySettings(_Table, frozen=True, kw_only=True):
    """One ``[[strategies]]`` entry: a consumer of ticks."""

    name: Annotated[
        str,
        msgspec.Meta(
            pattern=_STRATEGY_NAME_RE,
            description="a unique, non-empty name of letters, digits, '_', '.' and '-'",
        ),
    ]
    kind: Annotated[
        str, msgspec.Meta(description="'recorder', 'console', or 'package.module:Class' for your own class")
    ]
    path: Annotated[
        str | None, msgspec.Meta(description="the file a recorder appends ticks to (recorder only)")
    ] = None
    symbols: Annotated[
        tuple[str, ...],
        msgspec.Meta(description="a list of AllTick codes such as AAPL.US, 700.HK, EURUSD, BTCUSDT"),
    ] = ()
    options: Annotated[
        dict[str, Any], msgspec.Meta(description="a free-form table passed to a user class")
    ] = {}


class Settings(_Table, frozen=True, kw_only=True):
    """The whole configuration of one job. Built only by ``parse_settings`` (rule 2)."""

    feed: FeedSettings = FeedSettings()
    restart: RestartSettings = RestartSettings()
    endpoints: Annotated[
        dict[str, EndpointSettings],
        msgspec.Meta(
            description="the table of endpoints, at least one of [endpoints.stock] and "
            "[endpoints.forex_crypto]"
        ),
    ]
    simulator: SimulatorSettings = SimulatorSettings()
    strategies: tuple[StrategySettings, ...] = ()

    def token_names(self) -> tuple[str, ...]:
        """The names of the token variables: ``feed.token_envs``, or the one ``feed.token_env``."""
        return self.feed.token_envs or (self.feed.token_env,)

    def stale_after_s(self, endpoint: str) -> float:
        """The seconds after which a code of ``endpoint`` without a tick is stale (0: never)."""
        own = self.endpoints[endpoint].stale_after_s if endpoint in self.endpoints else None
        return self.feed.stale_after_s if own is None else own

    def open_grace_s(self, endpoint: str) -> float:
        """The seconds a code of ``endpoint`` gets at its session's open, on top of ``stale_after_s``."""
        own = self.endpoints[endpoint].open_grace_s if endpoint in self.endpoints else None
        return self.feed.open_grace_s if own is None else own

    def plan_limits(self) -> Plan:
        """The effective limits: the plan's, lowered by ``max_connections``/``max_codes_per_connection``."""
        plan = PLANS[self.feed.plan]
        return Plan(
            connections_per_token=self.feed.max_connections or plan.connections_per_token,
            codes_per_connection=self.feed.max_codes_per_connection or plan.codes_per_connection,
        )


# --- reading -------------------------------------------------------------------------------------

_DEFAULT_TOML: Final = """
[feed]
heartbeat_interval_s = 2.0
silence_deadline_s = 5.0

[endpoints.stock]
url = "ws://127.0.0.1:0/quote-stock-b-ws-api"

[endpoints.forex_crypto]
url = "ws://127.0.0.1:0/quote-b-ws-api"

[feed.sessions]
"*" = "always"

[simulator]
enabled = true

[[strategies]]
name = "console"
kind = "console"
symbols = ["AAPL.US", "TSLA.US", "700.HK", "EURUSD", "XAUUSD", "BTCUSDT"]
"""


def parse_settings(text: str, *, source: str = "<config>") -> Settings:
    """Read and validate a whole configuration.

    Args:
        text: the TOML text.
        source: where the text came from (a file name), for messages.

    Raises:
        ConfigError: the TOML is malformed (the message names ``source`` and the line), or a key is
            unknown, missing, of the wrong type, out of range, or inconsistent with another key (the
            error's ``key`` is its dotted path).

    """
    where = "" if source == "<config>" else f" (in {source})"
    try:
        settings = msgspec.toml.decode(text, type=Settings)
    except msgspec.ValidationError as exc:
        key, reason = explain(str(exc), text, Settings, _endpoint_name)
        raise ConfigError(key, reason + where) from None
    except msgspec.DecodeError as exc:
        raise ConfigError("", syntax_reason(str(exc), source)) from None
    try:
        _validate(settings)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.reason + where) from None
    return settings


def default_settings() -> Settings:
    """The embedded default: the bundled simulator, both endpoints, one console strategy.

    The endpoint urls are placeholders (``ws://127.0.0.1:0/...``) that ``with_simulator`` replaces
    once the simulator listens.
    """
    return parse_settings(_DEFAULT_TOML, source="<default settings>")


# --- rules across keys ---------------------------------------------------------------------------


def _unknown_endpoint_reason() -> str:
    return f"unknown endpoint; known endpoints are: {', '.join(e.value for e in Endpoint)}"


def _endpoint_name(table: str, name: str) -> str | None:
    """An ``[endpoints.<name>]`` entry's name is the first thing wrong with it (config_errors' hook)."""
    return _unknown_endpoint_reason() if table == "endpoints" and name not in ENDPOINT_PATHS else None


def _check_finite(prefix: str, table: msgspec.Struct) -> None:
    for field in msgspec.structs.fields(table):
        value = getattr(table, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{prefix}.{field.encode_name}", f"expected a finite number, got {value}")


def _check_feed(feed: FeedSettings) -> None:
    plan = PLANS.get(feed.plan)
    if plan is None:
        hint = f"; plan names are lower-case: {feed.plan.lower()!r}" if feed.plan.lower() in PLANS else ""
        raise ConfigError(
            "feed.plan", f"unknown plan {feed.plan!r}; known plans are: {', '.join(PLANS)}{hint}"
        )
    if feed.transport not in TRANSPORTS:
        raise ConfigError(
            "feed.transport",
            f"unknown transport {feed.transport!r}; use one of: {', '.join(repr(t) for t in TRANSPORTS)}",
        )
    try:
        # The deadline must leave room for the liveness probe's answer; Liveness owns that rule.
        Liveness(heartbeat_every=feed.heartbeat_interval_s, silent_after=feed.silence_deadline_s)
    except ValueError as exc:
        raise ConfigError("feed.silence_deadline_s", str(exc)) from None
    for i, name in enumerate(feed.token_envs):
        if name in feed.token_envs[:i]:
            raise ConfigError(
                f"feed.token_envs[{i}]", f"{name} is listed twice; list each token's variable once"
            )
    if feed.max_connections > plan.connections_per_token:
        raise ConfigError(
            "feed.max_connections",
            f"the {feed.plan!r} plan allows at most {plan.connections_per_token} connections per endpoint "
            f'(PROTOCOL.md "Limits"); use 0 for the plan\'s limit',
        )
    if feed.max_codes_per_connection > plan.codes_per_connection:
        raise ConfigError(
            "feed.max_codes_per_connection",
            f"the {feed.plan!r} plan allows at most {plan.codes_per_connection} codes per connection "
            f'(PROTOCOL.md "Limits"); use 0 for the plan\'s limit',
        )


def _check_sessions(sessions: Mapping[str, str]) -> None:
    # The form only: whether a calendar or a zone exists is the shell's to check (actors.calendars),
    # as this core reads no time-zone database.
    for pattern, spec in sessions.items():
        key = f"feed.sessions.{pattern!r}"
        if not pattern.strip():
            raise ConfigError(key, "expected a code or a glob pattern such as '*.US', got an empty key")
        if not spec.strip():
            raise ConfigError(
                key, "expected a session: 'always', 'fx', an exchange calendar (XNYS) or windows"
            )


def _check_url(name: str, url: str) -> None:
    key = f"endpoints.{name}.url"
    if "token=" in url.lower():
        raise ConfigError(
            key,
            "the url must not carry a token: secrets belong in the environment variable named by "
            "feed.token_env, and the job appends ?token= itself",
        )
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ConfigError(key, f"expected a ws:// or wss:// url, got {redact(url)!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            key, "the url must not carry credentials (user:password@); secrets belong in the env"
        )
    if not parts.hostname:
        raise ConfigError(key, f"the url has no host: {redact(url)!r}")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise ConfigError(key, f"the url has an invalid port: {redact(url)!r}") from None
    expected = ENDPOINT_PATHS[Endpoint(name)]
    if parts.path != expected:
        others = [e.value for e, path in ENDPOINT_PATHS.items() if path == parts.path]
        whose = f" ({parts.path} is the {others[0]} endpoint's path)" if others else ""
        raise ConfigError(
            key, f"the {name} endpoint's path is {expected}, not {parts.path or '(none)'!r}{whose}"
        )


def _check_endpoints(endpoints: Mapping[str, EndpointSettings]) -> None:
    if not endpoints:
        raise ConfigError(
            "endpoints", "configure at least one of [endpoints.stock] and [endpoints.forex_crypto]"
        )
    for name, endpoint in endpoints.items():
        if name not in ENDPOINT_PATHS:
            raise ConfigError(f"endpoints.{name}", _unknown_endpoint_reason())
        _check_url(name, endpoint.url)
        stale = endpoint.stale_after_s
        if stale is not None and not (math.isfinite(stale) and stale >= 0):
            raise ConfigError(
                f"endpoints.{name}.stale_after_s",
                f"expected seconds >= 0 (0 disables the check), got {stale}; "
                "omit it to use [feed] stale_after_s",
            )
        grace = endpoint.open_grace_s
        if grace is not None and not (math.isfinite(grace) and grace >= 0):
            raise ConfigError(
                f"endpoints.{name}.open_grace_s",
                f"expected seconds >= 0, got {grace}; omit it to use [feed] open_grace_s",
            )


def _check_strategy(index: int, strategy: StrategySettings, endpoints: Iterable[str]) -> None:
    prefix = f"strategies[{index}]"
    kind = strategy.kind
    if kind not in BUILTIN_KINDS and _USER_KIND_RE.fullmatch(kind) is None:
        raise ConfigError(
            f"{prefix}.kind", f"expected 'recorder', 'console' or 'package.module:Class', got {kind!r}"
        )
    if kind == "recorder" and not strategy.path:
        raise ConfigError(f"{prefix}.path", "a recorder needs path, the file it appends ticks to")
    if kind != "recorder" and strategy.path is not None:
        raise ConfigError(f"{prefix}.path", f"path is for kind 'recorder' only; a {kind!r} takes options")
    configured = set(endpoints)
    for position, code in enumerate(strategy.symbols):
        key = f"{prefix}.symbols[{position}]"
        try:
            endpoint = endpoint_of(code)
        except InvalidCode as exc:
            raise ConfigError(key, str(exc)) from None
        if endpoint.value not in configured:
            raise ConfigError(
                key,
                f"{code} is served by the {endpoint.value} endpoint, which is not configured; add "
                f'[endpoints.{endpoint.value}] with url = "wss://quote.alltick.co{endpoint.path}"',
            )


def _check_capacity(settings: Settings) -> None:
    # PROTOCOL.md "Limits": codes beyond a connection's limit are silently ignored, and each endpoint
    # holds at most connections_per_token connections: more codes than that can never be served.
    limits = settings.plan_limits()
    tokens = len(settings.token_names())
    capacity = limits.connections_per_token * limits.codes_per_connection * tokens
    seen: dict[Endpoint, set[str]] = {}
    for index, strategy in enumerate(settings.strategies):
        for position, code in enumerate(strategy.symbols):
            codes = seen.setdefault(endpoint_of(code), set())
            codes.add(code)
            if len(codes) > capacity:
                raise ConfigError(
                    f"strategies[{index}].symbols[{position}]",
                    f"more than {capacity} distinct codes on the {endpoint_of(code).value} endpoint: the "
                    f"limits allow {limits.connections_per_token} connection(s) x "
                    f"{limits.codes_per_connection} codes (feed.plan {settings.feed.plan!r})"
                    + (f" on each of {tokens} tokens" if tokens > 1 else ""),
                )


def _validate(settings: Settings) -> None:
    for prefix in ("feed", "restart", "simulator"):
        _check_finite(prefix, getattr(settings, prefix))
    _check_feed(settings.feed)
    _check_sessions(settings.feed.sessions)
    restart = settings.restart
    if restart.backoff_max_s < restart.backoff_initial_s:
        raise ConfigError(
            "restart.backoff_max_s",
            f"must be at least backoff_initial_s ({restart.backoff_initial_s:g}), "
            f"got {restart.backoff_max_s:g}",
        )
    _check_endpoints(settings.endpoints)
    if settings.simulator.plan not in SIMULATOR_PLANS:
        raise ConfigError(
            "simulator.plan",
            f"unknown simulator plan {settings.simulator.plan!r}; "
            f"the simulator knows: {', '.join(SIMULATOR_PLANS)}",
        )
    first_index: dict[str, int] = {}
    for index, strategy in enumerate(settings.strategies):
        if strategy.name in first_index:
            raise ConfigError(
                f"strategies[{index}].name",
                f"duplicate strategy name {strategy.name!r} "
                f"(strategies[{first_index[strategy.name]}] has it)",
            )
        first_index[strategy.name] = index
        _check_strategy(index, strategy, settings.endpoints)
    _check_capacity(settings)


def with_simulator(settings: Settings, host: str, port: int) -> Settings:
    """``settings`` with every endpoint url pointed at the simulator, ``ws://host:port/<path>``.

    Args:
        settings: valid settings.
        host: the simulator's host (an IPv6 address is bracketed for you).
        port: the simulator's port, 0..65535.

    Raises:
        ValueError: an empty host or a port out of range.

    """
    if not host:
        raise ValueError("host must not be empty")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in 0..65535, not {port!r}")
    netloc = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    endpoints = {
        name: msgspec.structs.replace(endpoint, url=f"ws://{netloc}{Endpoint(name).path}")
        for name, endpoint in settings.endpoints.items()
    }
    return msgspec.structs.replace(settings, endpoints=endpoints)
