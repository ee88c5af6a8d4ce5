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

from actors.sim import (  # noqa: E402
    ENDPOINT_PATHS,
    FAULTS,
    FOREX_CRYPTO_PATH,
    PLAN_LIMITS,
    STOCK_PATH,
    PlanLimits,
    SimState,
    Simulator,
    SimulatorThread,
    format_units,
    main,
    max_requests_in_window,
)

__all__ = [
    "ENDPOINT_PATHS",
    "FAULTS",
    "FOREX_CRYPTO_PATH",
    "PLAN_LIMITS",
    "STOCK_PATH",
    "PlanLimits",
    "SimState",
    "Simulator",
    "SimulatorThread",
    "format_units",
    "main",
    "max_requests_in_window",
]

if __name__ == "__main__":
    sys.exit(main())
