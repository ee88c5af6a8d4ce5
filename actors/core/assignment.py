"""Which connection carries which code: a pure function of what is wanted, the connections and the plan.

Rules of this module:

1. ``assign`` is pure and deterministic: the same inputs give the same output, so the registry, a
   status CLI and tests can all compute it, and a future sharder can replace it without a rewrite.
2. Sticky: a code stays on the connection that carries it now while that connection exists and has
   room, so adding a code never moves the others (each move costs a full-set request on two sockets).
3. New codes go to the least-loaded connection of their endpoint (ties: the first in order).
4. A connection never gets more than ``max_codes`` codes (PROTOCOL.md "Limits": codes beyond the
   per-connection limit are silently ignored by the server). What does not fit is returned unplaced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import msgspec

from actors.core.codes import Endpoint, endpoint_of


class Assignment(msgspec.Struct, frozen=True):
    """Which codes each connection serves, and the codes no connection had room for."""

    by_connection: dict[str, frozenset[str]]
    unplaced: frozenset[str]


def assign(
    wanted: Iterable[str],
    connections: Mapping[Endpoint, Sequence[str]],
    max_codes: int,
    previous: Mapping[str, Iterable[str]] | None = None,
) -> Assignment:
    """Spread ``wanted`` codes over ``connections`` (endpoint -> connection ids, in order).

    Args:
        wanted: valid codes (see ``actors.core.codes.endpoint_of``).
        connections: the connection ids of each endpoint.
        max_codes: the plan's codes per connection.
        previous: the current assignment, to keep codes where they are.

    Returns:
        Each connection's whole set, and the codes that found no room or no connection.

    """
    by_endpoint: dict[Endpoint, list[str]] = {}
    for code in sorted(set(wanted)):
        by_endpoint.setdefault(endpoint_of(code), []).append(code)
    previous = previous or {}
    out: dict[str, set[str]] = {conn: set() for conns in connections.values() for conn in conns}
    unplaced: set[str] = set()
    for endpoint, codes in by_endpoint.items():
        conns = list(connections.get(endpoint, ()))
        if not conns:
            unplaced.update(codes)
            continue
        placed: set[str] = set()
        codeset = set(codes)
        for conn in conns:
            keep = sorted(codeset & set(previous.get(conn, ())))[:max_codes]
            out[conn].update(keep)
            placed.update(keep)
            codeset.difference_update(keep)
        for code in codes:
            if code in placed:
                continue
            conn = min(conns, key=lambda c: len(out[c]))
            if len(out[conn]) >= max_codes:
                unplaced.add(code)
                continue
            out[conn].add(code)
    return Assignment({conn: frozenset(codes) for conn, codes in out.items()}, frozenset(unplaced))
