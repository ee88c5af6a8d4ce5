"""``python -m actors.sim``: the bundled AllTick simulator (actors.sim's docstring lists its options)."""

from __future__ import annotations

import sys

from actors.sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
