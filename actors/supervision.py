"""Old import path of the supervision names, kept for importers not yet updated (tests/cluster_node_loss.py).

The Supervisor actor is ``actors.supervisor``, the children and their factories ``actors.children``,
the placement groups ``actors.groups``, ``launch`` is ``actors.launch``. New code imports from those.
"""

from __future__ import annotations

from actors.children import connection_ids, load_strategy_class
from actors.launch import launch
from actors.supervisor import Supervisor

__all__ = ["Supervisor", "connection_ids", "launch", "load_strategy_class"]
