"""``python scripts/simulator.py ...``: the bundled AllTick simulator, run from a checkout.

A thin shim over the package ``actors.sim`` (its docstring describes the command line, the endpoints,
the faults and the admin API); ``tickvisor simulator`` and ``python -m actors.sim`` are the same command.
It re-exports the package's public names, so ``from scripts.simulator import SimulatorThread`` works.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the checkout's ``actors`` importable
    sys.path.insert(0, str(ROOT))

from actors.sim import *  # noqa: E402, F403 -- re-export: ``scripts.simulator.X`` is ``actors.sim.X``
from actors.sim import __all__, main  # noqa: E402, F401 -- __all__ says what the star import re-exports

if __name__ == "__main__":
    sys.exit(main())
