"""Where a connection and its decoder run on a cluster of Ray nodes. Pure: no Ray, no clock.

Rules of this module:

1. A connection and its decoder are one pair and share one placement-group bundle, so raw frames go
   from the socket to the decoder inside one node, never over the network. Ray reschedules a bundle
   whose node died on a surviving node, and restarts both actors of the pair in it: the pair stays
   together after a node loss too.
2. A bundle cannot be empty (Ray refuses it), and a pair must not take CPU from anything else: the
   actors are ``num_cpus=0``, and each bundle reserves ``PAIR_BUNDLE``, 1 MiB of Ray's logical
   ``memory`` resource, a mark on the scheduler's books (nothing is allocated). Every Ray node has
   that resource unless it is configured to 0; such a node holds no connection.
3. The start-up pairs are the bundles of one placement group of strategy SPREAD (Ray spreads them
   over the nodes, as evenly as it can). A connection opened while running gets a group of one
   bundle of its own, on the node that holds the fewest of the job's pairs (``least_used``), so that
   the connections keep spreading.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

#: What each pair reserves: 1 MiB of Ray's logical ``memory`` resource (rule 2).
PAIR_BUNDLE: Final[Mapping[str, float]] = {"memory": float(1 << 20)}


def group_name(run_id: str, conn_id: str | None = None) -> str:
    """The name of the placement group of the start-up pairs (``conn_id`` None) or of a grown
    connection. The run id keeps a group left behind by an earlier run of the same job apart.
    """
    return f"tickvisor-{run_id}-{'startup' if conn_id is None else conn_id}"


def least_used(nodes: Sequence[str], used: Iterable[str]) -> str | None:
    """The node of ``nodes`` that holds the fewest pairs; ties go to the first in ``nodes``.

    Args:
        nodes: the live nodes that can hold a pair, in a stable order.
        used: the node of every pair of the job (one entry per pair; nodes not in ``nodes`` are
            ignored: they died or cannot hold a pair).

    Returns:
        A node id, or None when ``nodes`` is empty (then Ray chooses).

    """
    if not nodes:
        return None
    live = set(nodes)
    counts = Counter(n for n in used if n in live)
    return min(nodes, key=lambda n: counts[n])  # min keeps the first of equals
