"""The placement groups that keep each connection beside its decoder (the rules: actors.core.placement).

Rules of this module:

1. The start-up pairs are the bundles of one SPREAD group (``startup_group``), created and owned by
   the job's driver like the children it holds; connection ``k`` and decoder ``k`` share bundle ``k``.
2. A connection opened while running gets a detached group of one bundle (``grown_group``), found
   again by name after a restart of the Supervisor, placed on the node that holds the fewest of the
   job's pairs.
3. Every call here talks to Ray's GCS and blocks: an async caller runs it in a thread.
"""

from __future__ import annotations

import contextlib

import ray
from ray.util.placement_group import (
    PlacementGroup,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from actors.core.placement import PAIR_BUNDLE, group_name, least_used
from actors.log import logger


def startup_group(run_id: str, pairs: int) -> PlacementGroup:
    """The SPREAD group of the ``pairs`` start-up connections of run ``run_id`` (rule 1)."""
    return placement_group([dict(PAIR_BUNDLE)] * pairs, strategy="SPREAD", name=group_name(run_id))


def in_bundle(group: PlacementGroup, index: int) -> PlacementGroupSchedulingStrategy:
    """Where a connection and its decoder run: both in bundle ``index`` of ``group``, on one node
    (actors.core.placement). Ray restarts either in that bundle, wherever the bundle is now.
    """
    return PlacementGroupSchedulingStrategy(placement_group=group, placement_group_bundle_index=index)


def grown_group(run_id: str, conn_id: str) -> PlacementGroup:
    """The placement group of grown connection ``conn_id``'s pair: found by name (the Supervisor
    created it before a restart), or created, detached like the pair, on the node that holds the
    fewest of the job's pairs (actors.core.placement, rule 3).
    """
    name = group_name(run_id, conn_id)
    with contextlib.suppress(ValueError):  # ValueError: no group of that name
        return get_placement_group(name)
    return placement_group(
        [dict(PAIR_BUNDLE)],
        strategy="STRICT_PACK",
        name=name,
        lifetime="detached",
        # A hint (Ray 2.60 honours it for STRICT_PACK only): a node that died or has no room is
        # passed over, and Ray places the group elsewhere.
        _soft_target_node_id=emptiest_node(run_id),
    )


def emptiest_node(run_id: str) -> str | None:
    """The live node holding the fewest of run ``run_id``'s pairs (None: let Ray choose)."""
    need = PAIR_BUNDLE["memory"]
    try:
        nodes = sorted(
            n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("memory", 0) >= need
        )
        prefix = group_name(run_id, "")
        used = [
            node
            for info in placement_group_table().values()
            if str(info.get("name", "")).startswith(prefix) and info.get("state") != "REMOVED"
            for node in info.get("bundles_to_node_id", {}).values()
        ]
    except Exception as exc:  # noqa: BLE001 - only a hint: without it Ray still places the pair
        logger.warning("supervisor: no placement hint for a grown connection ({})", type(exc).__name__)
        return None
    return least_used(nodes, used)


def remove_group(group: PlacementGroup | None, run_id: str = "", conn_id: str | None = None) -> None:
    """Free ``group`` (the start-up pairs'), or with ``conn_id`` the group of that grown connection
    of run ``run_id``. Ray kills whatever still runs in it; a group removed already is no error.
    """
    if conn_id is not None:
        try:
            group = get_placement_group(group_name(run_id, conn_id))
        except ValueError:
            return  # removed already (a stop after a close, or retried across a restart)
    if group is not None:
        with contextlib.suppress(Exception):  # removed already
            remove_placement_group(group)
