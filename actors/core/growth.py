"""How many connections each endpoint needs, on which token, and which codes find no room. Pure.

The registry owns one ``Pool``. It asks ``fit`` what a set of wanted codes would need (no change),
``commit``s the fit it acts on, and asks ``to_close`` for connections that held nothing for the grace
period. The pool never opens or closes anything itself: it returns ``Slot``s, and the shell asks the
supervisor to create or kill their actors.

Rules of this module:

1. Never more codes on a connection than ``codes_per_connection`` (PROTOCOL.md "Limits": the server
   silently ignores the excess), and never more connections of one token on one endpoint than
   ``connections_per_token`` (the server answers 606 and closes). Trades and order books count
   separately: a connection may hold ``codes_per_connection`` of each.
2. New codes go to connections with room (``actors.core.assignment.assign``, sticky); a connection is
   opened only when the codes of an endpoint exceed the room of its connections, and only while some
   live token has quota left on that endpoint (the token with the fewest connections there, ties to
   the first configured).
3. Codes never move needlessly: a code stays on its connection while that connection lives. When codes
   leave, the others stay where they are; a connection left with nothing is closed after
   ``close_after_s`` (the grace period absorbs an unsubscribe followed by a subscribe), unless it is
   pinned (created at start-up by the job's driver).
4. A token taken out (401) loses its connections; the next fit moves their codes to the room left,
   opening connections on the other tokens when their quota allows. What fits nowhere is refused with
   the plan and its limits named.
5. Connection ids and decoder ids are never reused within one pool's life (the actor of a closed
   connection may still be dying under its name).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, TypeVar

import msgspec

from actors.core.assignment import assign
from actors.core.codes import Endpoint, endpoint_of

CLOSE_AFTER_S: Final = 30.0  # an empty, unpinned connection is closed after this long
K = TypeVar("K")  # a subscription kind (trades, order book): each has its own per-connection limit


class Quota(msgspec.Struct, frozen=True):
    """The effective limits of the job's tokens (each token has the same plan)."""

    plan: str
    connections_per_token: int  # per endpoint (PROTOCOL.md: the endpoints are counted separately)
    codes_per_connection: int  # per kind
    tokens: tuple[str, ...]  # labels (the environment variables' NAMES), never token values

    def refusal(self, endpoint: Endpoint, live_tokens: int) -> str:
        """Why a code of ``endpoint`` found no room, naming the plan and its limits."""
        conns = self.connections_per_token * live_tokens
        dead = len(self.tokens) - live_tokens
        out = f"{dead} of {len(self.tokens)} token(s) taken out, " if dead else ""
        return (
            f"quota exhausted: plan {self.plan!r} allows {self.connections_per_token} connection(s) "
            f"per token x {self.codes_per_connection} codes on the {endpoint.value} endpoint; "
            f"{out}{live_tokens} live "
            f"token(s) give {conns} connection(s), {conns * self.codes_per_connection} codes, all taken; "
            "unsubscribe others, add a token to feed.token_envs or raise the plan"
        )


class Slot(msgspec.Struct, frozen=True):
    """One connection the pool counts: its id, endpoint, token (label) and decoder."""

    conn_id: str
    endpoint: Endpoint
    token: str
    decoder: int
    pinned: bool = False  # created by the driver at start-up: the pool never closes it


class Fit(msgspec.Struct, frozen=True):
    """What the wanted codes need: each kind's assignment, the slots to open, the codes refused."""

    by_kind: dict[str, dict[str, frozenset[str]]]  # kind -> connection id -> codes
    opened: tuple[Slot, ...]
    refused: dict[str, str]  # code -> why (every kind's refusals; a code refused in one kind is listed)


class PoolState(msgspec.Struct):
    """What a restarted registry needs to find its connections again."""

    slots: list[Slot] = []
    dead_tokens: list[str] = []
    next_index: dict[str, int] = {}  # endpoint -> the next connection number
    next_decoder: int = 0


class Pool:
    """The connections of a job, per endpoint and token; decides growth and shrink. No clock, no I/O."""

    def __init__(self, quota: Quota, *, close_after_s: float = CLOSE_AFTER_S) -> None:
        if quota.connections_per_token < 1 or quota.codes_per_connection < 1 or not quota.tokens:
            raise ValueError(f"a quota needs a connection, a code and a token: {quota}")
        self.quota = quota
        self.close_after_s = close_after_s
        self._slots: dict[str, Slot] = {}
        self._dead: set[str] = set()
        self._next_index: dict[str, int] = {}
        self._next_decoder = 0
        self._empty_since: dict[str, float] = {}

    # --- state ------------------------------------------------------------------------------------

    def add(self, slot: Slot) -> None:
        """Count an existing connection (the start-up ones, or a restored one)."""
        self._slots[slot.conn_id] = slot
        self._bump(slot)

    def _bump(self, slot: Slot) -> None:
        prefix, _, number = slot.conn_id.rpartition("-")
        if number.isdigit() and prefix == slot.endpoint.value:
            key = slot.endpoint.value
            self._next_index[key] = max(self._next_index.get(key, 0), int(number) + 1)
        self._next_decoder = max(self._next_decoder, slot.decoder + 1)

    def snapshot(self) -> PoolState:
        """The state to save."""
        slots = list(self._slots.values())
        return PoolState(slots, sorted(self._dead), dict(self._next_index), self._next_decoder)

    @classmethod
    def restore(cls, quota: Quota, state: PoolState, *, close_after_s: float = CLOSE_AFTER_S) -> Pool:
        """A pool as saved (quota from the configuration: it may have changed)."""
        pool = cls(quota, close_after_s=close_after_s)
        for slot in state.slots:
            pool.add(slot)
        pool._dead = set(state.dead_tokens) & set(quota.tokens)
        for endpoint, index in state.next_index.items():
            pool._next_index[endpoint] = max(pool._next_index.get(endpoint, 0), index)
        pool._next_decoder = max(pool._next_decoder, state.next_decoder)
        return pool

    @property
    def slots(self) -> dict[str, Slot]:
        """The counted connections by id, in the order they were added."""
        return dict(self._slots)

    @property
    def live_tokens(self) -> tuple[str, ...]:
        """The tokens not taken out, in configured order."""
        return tuple(t for t in self.quota.tokens if t not in self._dead)

    def endpoint_slots(self, endpoint: Endpoint) -> list[Slot]:
        """The connections of ``endpoint``, pinned first, then in the order they were added."""
        slots = [s for s in self._slots.values() if s.endpoint is endpoint]
        return sorted(slots, key=lambda s: not s.pinned)

    # --- decisions --------------------------------------------------------------------------------

    def fit(
        self,
        wanted: Mapping[K, Iterable[str]],
        previous: Mapping[K, Mapping[str, Iterable[str]]] | None = None,
        endpoints: Iterable[Endpoint] | None = None,
    ) -> Fit:
        """Place ``wanted`` (kind -> codes) on the connections, opening new ones where needed.

        Changes nothing: ``commit`` the fit to make it so.

        Args:
            wanted: the whole union of each kind; valid codes only (``actors.core.codes.endpoint_of``).
            previous: each kind's current assignment, so codes stay where they are.
            endpoints: the endpoints that may hold codes (the configured ones); default every endpoint
                of a counted connection. A code of another endpoint is refused.

        """
        previous = previous or {}
        cap = self.quota.codes_per_connection
        wanted_sets = {kind: set(codes) for kind, codes in wanted.items()}
        allowed = set(endpoints) if endpoints is not None else {s.endpoint for s in self._slots.values()}
        by_endpoint: dict[Endpoint, dict[K, set[str]]] = {}
        refused: dict[str, str] = {}
        for kind, codes in wanted_sets.items():
            for code in codes:
                endpoint = endpoint_of(code)
                if endpoint not in allowed:
                    refused[code] = f"its endpoint {endpoint.value!r} is not configured"
                    continue
                by_endpoint.setdefault(endpoint, {}).setdefault(kind, set()).add(code)
        opened: list[Slot] = []
        next_decoder = self._next_decoder
        by_kind: dict[K, dict[str, frozenset[str]]] = {kind: {} for kind in wanted_sets}
        for endpoint in sorted(allowed | {s.endpoint for s in self._slots.values()}, key=lambda e: e.value):
            kinds = by_endpoint.get(endpoint, {})
            slots = self.endpoint_slots(endpoint)
            need = max((math.ceil(len(codes) / cap) for codes in kinds.values()), default=0)
            new = self._open(endpoint, need - len(slots), next_decoder)
            next_decoder += len(new)
            opened.extend(new)
            conns = {endpoint: [s.conn_id for s in (*slots, *new)]}
            for kind in wanted_sets:
                result = assign(kinds.get(kind, ()), conns, cap, previous.get(kind))
                by_kind[kind].update(result.by_connection)
                if result.unplaced:
                    reason = self.quota.refusal(endpoint, len(self.live_tokens))
                    refused.update(dict.fromkeys(result.unplaced, reason))
        return Fit(by_kind, tuple(opened), refused)  # type: ignore[arg-type]  # K is str-like in practice

    def _open(self, endpoint: Endpoint, count: int, next_decoder: int) -> list[Slot]:
        if count <= 0:
            return []
        per_token = dict.fromkeys(self.live_tokens, 0)
        for slot in self._slots.values():
            if slot.endpoint is endpoint and slot.token in per_token:
                per_token[slot.token] += 1
        index = self._next_index.get(endpoint.value, 0)
        new: list[Slot] = []
        for _ in range(count):
            room = [t for t, n in per_token.items() if n < self.quota.connections_per_token]
            if not room:
                break
            token = min(room, key=lambda t: per_token[t])  # min keeps the first of equals: configured order
            per_token[token] += 1
            new.append(Slot(f"{endpoint.value}-{index}", endpoint, token, next_decoder))
            index += 1
            next_decoder += 1
        return new

    def commit(self, fit: Fit, now: float) -> None:
        """Make ``fit`` the pool's state: count its opened slots, note which connections hold nothing."""
        for slot in fit.opened:
            self.add(slot)
        for conn_id, slot in self._slots.items():
            held = any(conns.get(conn_id) for conns in fit.by_kind.values())
            if held or slot.pinned:
                self._empty_since.pop(conn_id, None)
            else:
                self._empty_since.setdefault(conn_id, now)

    def to_close(self, now: float) -> list[Slot]:
        """The connections that held nothing for ``close_after_s``; they are no longer counted."""
        due = [c for c, since in self._empty_since.items() if now - since >= self.close_after_s]
        out = []
        for conn_id in due:
            del self._empty_since[conn_id]
            out.append(self._slots.pop(conn_id))
        return out

    def next_wakeup(self) -> float | None:
        """When ``to_close`` may next return something; None when no connection is empty."""
        if not self._empty_since:
            return None
        return min(self._empty_since.values()) + self.close_after_s

    def take_out(self, token: str) -> list[Slot]:
        """``token`` was refused (401): it counts no more, and neither do its connections (returned,
        for the shell to close). The next ``fit`` moves their codes to the room left.
        """
        if token not in self.quota.tokens:
            return []
        self._dead.add(token)
        gone = [s for s in self._slots.values() if s.token == token]
        for slot in gone:
            del self._slots[slot.conn_id]
            self._empty_since.pop(slot.conn_id, None)
        return gone


def startup_lower_bound_s(
    connections_per_token: Sequence[int], *, token_gap_s: float, first_at_s: float = 0.0
) -> float:
    """The least time from the first to the last initial full-set request, given how many connections
    each token holds on one endpoint: one request per connection, ``token_gap_s`` apart within a token
    (PROTOCOL.md "Limits": 3 s between requests across one token's connections), tokens in parallel.

    Args:
        connections_per_token: connections of each token on the endpoint.
        token_gap_s: the spacing the client keeps between two requests of one token.
        first_at_s: when the first request can go (the sockets' opening).

    """
    busiest = max(connections_per_token, default=0)
    return first_at_s + max(0, busiest - 1) * token_gap_s
