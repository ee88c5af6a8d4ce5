"""``python -m actors``: the ``tickvisor`` command (actors.cli), for when the script is not on PATH."""

from __future__ import annotations

import sys

from actors.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m actors"))
