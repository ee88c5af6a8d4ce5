"""The job's configuration: one TOML file, validated whole at start. Pure: no socket, no clock.

Rules of this module:

1. One schema. Every table is a frozen msgspec Struct that forbids unknown keys, and the file is read
   with ``msgspec.toml.decode(text, type=Settings)``. Types and ranges are ``msgspec.Meta`` constraints
   whose ``description`` says what the key is; rules across keys live in ``_validate``.
2. A ``Settings`` that exists is valid: ``parse_settings`` is the only way in, and it checks everything
   (plan limits, endpoint paths, every symbol) before returning. The job never fails later on a key.
3. Every problem is one ``ConfigError`` whose ``key`` is the dotted path of the bad key
   (``feed.heartbeat_interval_s``, ``strategies[0].symbols[1]``) and whose reason says what is expected.
4. The token never lives in the file, only the NAME of the environment variable holding it. In memory
   it is a ``Secret`` that prints as ``***``; only ``endpoint_url`` reveals it, for the socket. No
   message built here contains a token: urls are passed through ``redact`` before they are shown.
"""

from __future__ import annotations

import difflib
import functools
import hmac
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import msgspec
import msgspec.inspect as msgspec_inspect

from actors.core.codes import ENDPOINT_PATHS, Endpoint, endpoint_of
from actors.core.errors import ConfigError, InvalidCode
from actors.core.liveness import HEARTBEAT_INTERVAL_S, Liveness
from actors.core.plans import PLANS, Plan

#: The longest silence deadline: well inside the 30 s after which the server closes a socket that sent
#: no heartbeat (PROTOCOL.md "Liveness"), so the job notices a dead socket before the server acts.
MAX_SILENCE_DEADLINE_S: Final = 25.0
#: The shortest silence deadline: short enough that tests against the simulator notice a dead socket fast.
MIN_SILENCE_DEADLINE_S: Final = 1.0
#: The token the bundled simulator accepts when the token's environment variable is unset.
SIMULATOR_TOKEN: Final = "tickvisor-sim"  # noqa: S105 - public: only the local simulator accepts it
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
_TOKEN_RE: Final = re.compile(r"(token=)[^&#\s]*", re.IGNORECASE)


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
        key, reason = _translate(str(exc), text)
        raise ConfigError(key, reason + where) from None
    except msgspec.DecodeError as exc:
        raise ConfigError("", _syntax_reason(str(exc), source)) from None
    try:
        _validate(settings)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.reason + where) from None
    return settings


def load_settings(path: str | os.PathLike[str]) -> Settings:
    """Read and validate the configuration file at ``path``.

    Args:
        path: the TOML file.

    Raises:
        ConfigError: the file is missing, unreadable or not UTF-8 (the message names the path), or see
            ``parse_settings``.

    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", f"config file {str(file)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "", f"config file {str(file)!r} is not UTF-8 text (bad byte at {exc.start})"
        ) from None
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {str(file)!r}: {exc.strerror or exc}") from None
    return parse_settings(text, source=str(file))


def default_settings() -> Settings:
    """The embedded default: the bundled simulator, both endpoints, one console strategy.

    The endpoint urls are placeholders (``ws://127.0.0.1:0/...``) that ``with_simulator`` replaces
    once the simulator listens.
    """
    return parse_settings(_DEFAULT_TOML, source="<default settings>")


def _syntax_reason(message: str, source: str) -> str:
    # tomllib says e.g. "Invalid value (at line 2, column 5)".
    match = re.fullmatch(r"(?s)(.*?)\s*\((at line \d+, column \d+|at end of document)\)", message)
    if match is None:
        return f"invalid TOML in {source}: {message}"
    what, at = match.groups()
    return f"invalid TOML in {source} {at}: {what[:1].lower()}{what[1:]}"


# --- turning msgspec's errors into ConfigError ---------------------------------------------------

_AT_RE: Final = re.compile(r"(?s)(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?")
_SEGMENT_RE: Final = re.compile(r"\.([^.\[\]]+)|\[(\d+|\.\.\.)\]")


@functools.cache
def _schema() -> msgspec_inspect.Type:
    return msgspec_inspect.type_info(Settings)


def _unwrap(node: msgspec_inspect.Type) -> msgspec_inspect.Type:
    while True:
        if isinstance(node, msgspec_inspect.Metadata):
            node = node.type
        elif isinstance(node, msgspec_inspect.UnionType):
            rest = [t for t in node.types if not isinstance(t, msgspec_inspect.NoneType)]
            if len(rest) != 1:
                return node
            node = rest[0]
        else:
            return node


def _node_at(key: str) -> msgspec_inspect.Type | None:
    """The schema node of a dotted key like ``strategies[0].name`` (dict keys are any name)."""
    node = _schema()
    for name, index in _SEGMENT_RE.findall("." + key if key else ""):
        node = _unwrap(node)
        if name and isinstance(node, msgspec_inspect.StructType):
            found = [field.type for field in node.fields if field.encode_name == name]
            if not found:
                return None
            node = found[0]
        elif isinstance(node, msgspec_inspect.DictType):
            node = node.value_type
        elif index and isinstance(node, msgspec_inspect.ListType | msgspec_inspect.VarTupleType):
            node = node.item_type
        else:
            return None
    return node


def _description(key: str) -> str:
    node = _node_at(key)
    while isinstance(node, msgspec_inspect.Metadata):
        description = (node.extra_json_schema or {}).get("description")
        if description:
            return str(description)
        node = node.type
    return ""


def _known_keys(key: str) -> list[str]:
    node = _node_at(key)
    if node is None:
        return []
    node = _unwrap(node)
    if isinstance(node, msgspec_inspect.StructType):
        return [field.encode_name for field in node.fields]
    return []


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _split(message: str) -> tuple[str, str]:
    match = _AT_RE.fullmatch(message)
    assert match is not None  # the pattern matches any text
    return match["message"], match["path"] or ""


def _failing_entry(text: str) -> tuple[str, str] | None:
    """The failing [endpoints] entry, found by checking each alone (msgspec writes its path as ``[...]``)."""
    raw = msgspec.toml.decode(text)
    entries = raw.get("endpoints") if isinstance(raw, dict) else None
    if not isinstance(entries, dict):
        return None
    for name, value in entries.items():
        if name not in ENDPOINT_PATHS:
            return f"endpoints.{name}", _unknown_endpoint_reason()  # its name is the first thing wrong
        try:
            msgspec.convert(value, type=EndpointSettings)
        except msgspec.ValidationError as exc:
            message, inner = _split(str(exc))
            return _translate(f"{message} - at `$.endpoints.{name}{inner}`", text)
    return None


def _translate(error: str, text: str) -> tuple[str, str]:
    """``(key, reason)`` for one of msgspec's validation messages about ``text``."""
    message, path = _split(error)
    if "[...]" in path:
        entry = _failing_entry(text)
        if entry is not None:
            return entry
    key = path.lstrip(".")
    unknown = re.fullmatch(r"Object contains unknown field `(.*)`", message)
    if unknown:
        name = unknown[1]
        known = _known_keys(key)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return _join(key, name), f"unknown key; known keys are: {', '.join(known)}{hint}"
    missing = re.fullmatch(r"Object missing required field `(.*)`", message)
    if missing:
        full = _join(key, missing[1])
        description = _description(full)
        return full, "required key is missing" + (f"; {missing[1]} is {description}" if description else "")
    reason = message.replace("`object`", "`table`")
    reason = reason[:1].lower() + reason[1:]
    description = _description(key)
    name = key.rpartition(".")[2]
    return key, reason + (f"; {name} is {description}" if description else "")


# --- rules across keys ---------------------------------------------------------------------------


def _unknown_endpoint_reason() -> str:
    return f"unknown endpoint; known endpoints are: {', '.join(e.value for e in Endpoint)}"


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


# --- the token -----------------------------------------------------------------------------------


class Secret:
    """Holds the token. Prints as ``***``; ``reveal()`` returns it.

    ``__reduce__`` keeps it picklable because Ray must ship it to the connection actors; ``repr``,
    ``str`` and formatting never show it, so logging a Secret (or a Struct holding one) is safe.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        """Wrap ``value``.

        Args:
            value: the token, a non-empty string.

        Raises:
            ValueError: ``value`` is not a non-empty string.

        """
        if not isinstance(value, str) or not value:
            raise ValueError("a Secret holds a non-empty string")
        self._value = value

    def reveal(self) -> str:
        """The token itself: for the socket only, never for a message."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        return (Secret, (self._value,))


def resolve_token(settings: Settings, environ: Mapping[str, str]) -> Secret:
    """The token from the environment variable named by ``feed.token_env``.

    With the simulator enabled and the variable unset (or empty), the simulator's fixed token.

    Args:
        settings: the job's settings.
        environ: the environment (pass ``os.environ``).

    Raises:
        ConfigError: key ``feed.token_env``; the variable is unset, empty or blank and the simulator is
            not enabled. The message names the variable, never a value.

    """
    name = settings.feed.token_env
    value = environ.get(name)
    token = value.strip() if value is not None else ""
    if token:
        return Secret(token)
    if settings.simulator.enabled:
        return Secret(SIMULATOR_TOKEN)
    state = "is not set" if value is None else "is empty"
    raise ConfigError(
        "feed.token_env",
        f"the environment variable {name} {state}; export {name}=<your AllTick token>, "
        "or enable [simulator] to run against the bundled simulator",
    )


def resolve_tokens(settings: Settings, environ: Mapping[str, str]) -> dict[str, Secret]:
    """Every token, by the name of its variable (``feed.token_envs``, or the one ``feed.token_env``).

    With the simulator enabled, a variable unset or empty gives the simulator's fixed token.

    Raises:
        ConfigError: key ``feed.token_env`` or ``feed.token_envs[i]``: a variable is unset, empty or
            blank (and the simulator is not enabled), or two variables hold the same token. Messages
            name the variables, never a value.

    """
    if not settings.feed.token_envs:
        return {settings.feed.token_env: resolve_token(settings, environ)}
    out: dict[str, Secret] = {}
    for i, name in enumerate(settings.feed.token_envs):
        value = environ.get(name)
        token = value.strip() if value is not None else ""
        if not token:
            if settings.simulator.enabled:
                out[name] = Secret(SIMULATOR_TOKEN)
                continue
            state = "is not set" if value is None else "is empty"
            raise ConfigError(
                f"feed.token_envs[{i}]",
                f"the environment variable {name} {state}; export {name}=<an AllTick token>, or remove "
                "it from feed.token_envs",
            )
        same = [other for other, secret in out.items() if secret == Secret(token)]
        if same:
            raise ConfigError(
                f"feed.token_envs[{i}]",
                f"{name} holds the same token as {same[0]}; each entry must be a different token "
                "(one token's quota does not grow by listing it twice)",
            )
        out[name] = Secret(token)
    return out


def endpoint_url(url: str, token: Secret) -> str:
    """``url`` with ``token=`` appended to its query: for opening the socket, never for printing.

    Args:
        url: an endpoint url from the settings (``redact`` it before showing it anywhere).
        token: the token.

    Raises:
        ValueError: the url already carries a token.

    """
    if "token=" in url.lower():
        raise ValueError(f"the url already carries a token: {redact(url)}")
    parts = urlsplit(url)
    param = f"token={quote(token.reveal(), safe='')}"
    query = f"{parts.query}&{param}" if parts.query else param
    return urlunsplit(parts._replace(query=query))


def redact(url: str) -> str:
    """``url`` (or any text) with every ``token=...`` value replaced by ``***``.

    Args:
        url: the text to show.

    """
    return _TOKEN_RE.sub(r"\1***", url)


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
