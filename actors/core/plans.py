"""The AllTick plans' limits (PROTOCOL.md "Limits"): connections, codes and subscription rate. Pure.

The numbers are the vendor's; ``Settings.plan_limits`` lowers them where the config asks.
"""

from __future__ import annotations

from typing import Final

import msgspec


class Plan(msgspec.Struct, frozen=True):
    """Limits of one plan, per endpoint (PROTOCOL.md "Limits")."""

    connections_per_token: int
    codes_per_connection: int


PLANS: Final = {
    "free": Plan(1, 5),
    "basic": Plan(1, 100),
    "premium": Plan(3, 200),
    "professional": Plan(10, 3000),
    "all-hk": Plan(10, 3000),
    "all-cn": Plan(10, 3000),
    "all-us": Plan(10, 3000),
}
SUBSCRIBE_GAP_PER_CONNECTION_S: Final = 1.0  # PROTOCOL.md "Limits": one subscription request per second
SUBSCRIBE_GAP_PER_TOKEN_S: Final = 3.0  # PROTOCOL.md "Limits": 3 s between requests across connections
