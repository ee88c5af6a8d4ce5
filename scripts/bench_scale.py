"""The command ``python scripts/bench_scale.py``: how start-up, throughput and memory grow with scale.

A thin entry point over ``scripts.bench.scale`` (its docstring has the options and the figures); it only
puts this tree on ``sys.path`` so that the command runs from a checkout without installing anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.bench.scale import main

if __name__ == "__main__":
    sys.exit(main())
