"""tickvisor, the main job, from a checkout: ``python supervisor.py`` is the ``tickvisor`` command.

    python supervisor.py                          # the embedded default: bundled simulator + console
    python supervisor.py --config configs/example.toml
    ray job submit --working-dir . -- python supervisor.py --config configs/simulator.toml
    python supervisor.py status [--json]                      # exit 0 up and in sync, 1 not, 3 no job
    python supervisor.py subscribe STRATEGY CODE... [--book]  # exit 0 all accepted, 2 any refused
    python supervisor.py unsubscribe STRATEGY CODE... [--book]
    python supervisor.py check --config configs/example.toml  # exit 0 valid, 2 not

A thin shim: it makes the checkout's ``actors`` importable and runs ``actors.cli.main``, whose docstring
describes the commands, their options and exit codes.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from actors.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="supervisor.py"))
