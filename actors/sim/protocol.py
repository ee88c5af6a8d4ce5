"""PROTOCOL.md's constants as the simulator serves them.

Endpoint paths, commands, error codes and messages, close codes, plan limits and the protocol's
default timings. No I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

STOCK_PATH = "/quote-stock-b-ws-api"  # PROTOCOL.md "Endpoints"
FOREX_CRYPTO_PATH = "/quote-b-ws-api"  # PROTOCOL.md "Endpoints"
ENDPOINT_PATHS: Mapping[str, str] = {"stock": STOCK_PATH, "forex_crypto": FOREX_CRYPTO_PATH}

CMD_HEARTBEAT = 22000  # PROTOCOL.md "Commands"
CMD_SUBSCRIBE_BOOK = 22002
CMD_SUBSCRIBE_TRADES = 22004
CMD_CANCEL = 22006
CMD_TRADE_PUSH = 22998
CMD_BOOK_PUSH = 22999
SUBSCRIPTION_CMDS = frozenset({CMD_SUBSCRIBE_BOOK, CMD_SUBSCRIBE_TRADES, CMD_CANCEL})  # rate limited

CANCEL_ALL, CANCEL_BOOK, CANCEL_TRADES = 0, 1, 2  # PROTOCOL.md 22006 cancel_type

UINT32_MAX = 2**32 - 1  # PROTOCOL.md: cmd_id and seq_id are uint32
TRACE_MAX_CHARS = 64  # PROTOCOL.md: trace string <= 64 chars

OK = 200
MSG_OK = "ok"
MSG_HEADER_INVALID = "request header param invalid"
MSG_DATA_INVALID = "request data param invalid"
ERROR_MESSAGES: Mapping[int, str] = {  # PROTOCOL.md "Error codes"
    200: MSG_OK,
    400: MSG_HEADER_INVALID,
    401: "token invalid",
    429: "rate limit",
    600: "code invalid",
    603: "token level not enough",
    604: "code unauthorized",
    606: "too many requests and connection will be closed",
}

CLOSE_NORMAL = 1000  # RFC 6455: heartbeat timeout
CLOSE_POLICY = 1008  # RFC 6455 policy violation: after the 401 and 606 error frames
HEARTBEAT_TIMEOUT_REASON = "heartbeat timeout"


@dataclasses.dataclass(frozen=True, slots=True)
class PlanLimits:
    """Limits of one plan. PROTOCOL.md "Limits"; both endpoints are counted separately."""

    max_connections: int  # per token per endpoint path
    max_codes: int  # per connection, trades and order book separately


PLAN_LIMITS: Mapping[str, PlanLimits] = {  # PROTOCOL.md "Limits"
    "free": PlanLimits(max_connections=1, max_codes=5),
    "basic": PlanLimits(max_connections=1, max_codes=100),
    "premium": PlanLimits(max_connections=3, max_codes=200),
    "pro": PlanLimits(max_connections=10, max_codes=3000),
}

DEFAULT_CONN_GAP_S = 1.0  # PROTOCOL.md "Limits": one subscription request per second per connection
DEFAULT_TOKEN_GAP_S = 3.0  # PROTOCOL.md "Limits": 3 s between requests across connections of one token
DEFAULT_HEARTBEAT_TIMEOUT_S = 30.0  # PROTOCOL.md "Liveness"


def endpoint_path(endpoint: str | None) -> str | None:
    """The path of an endpoint name (``stock``, ``forex_crypto``) or path; None for None or an unknown one."""
    if endpoint is None:
        return None
    if endpoint in ENDPOINT_PATHS:
        return ENDPOINT_PATHS[endpoint]
    return endpoint if endpoint in ENDPOINT_PATHS.values() else None
