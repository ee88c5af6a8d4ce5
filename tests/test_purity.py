"""The pure core imports neither Ray, nor a socket library, nor the logger (STYLE.md section 1).

Checked in a fresh interpreter: this test process may already have loaded anything.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: Every pure core module, present now or later; those not written yet are skipped.
CORE_MODULES = (
    "actors",  # the package itself: its public names are imported lazily
    "actors.errors",
    "actors.wire",
    "actors.liveness",
    "actors.backoff",
    "actors.settings",
    "actors.subscriptions",
    "actors.routing",
    "actors.holdings",  # named pure core in actors/__init__.py's docstring
    "actors.assignment",
)
#: Must always be there: if these went missing, the test would check nothing.
REQUIRED_MODULES = ("actors.errors", "actors.wire")
FORBIDDEN = ("ray", "websockets", "loguru")

_PROBE = textwrap.dedent(
    """
    import importlib, importlib.util, json, sys, traceback
    sys.path.insert(0, {root!r})
    forbidden = {forbidden!r}
    report = {{"skipped": [], "loaded": {{}}, "failed": {{}}}}
    def forbidden_loaded():
        return {{m.split(".")[0] for m in sys.modules}} & set(forbidden)

    for name in {modules!r}:
        # Snapshot before find_spec: finding "actors.x" already imports the package "actors".
        before = forbidden_loaded()
        try:
            if importlib.util.find_spec(name) is None:
                report["skipped"].append(name)
                continue
            importlib.import_module(name)
        except Exception:
            report["failed"][name] = traceback.format_exc(limit=-3)
        finally:
            # Which forbidden top-level packages this import brought in (even if it failed later).
            report["loaded"][name] = sorted(forbidden_loaded() - before)
    print(json.dumps(report))
    """
)


@functools.cache
def _probe() -> dict[str, Any]:
    """Import every core module in a fresh interpreter, once per test session."""
    code = _PROBE.format(root=str(ROOT), forbidden=FORBIDDEN, modules=CORE_MODULES)
    result = subprocess.run(  # noqa: S603 - our own interpreter and our own code
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"the import probe itself failed:\n{result.stderr}"
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_core_modules_load_neither_ray_nor_websockets_nor_loguru() -> None:
    report = _probe()
    for name in REQUIRED_MODULES:
        assert name not in report["skipped"], f"{name} was not found; the purity test would check nothing"
    assert set(report["loaded"]) == set(CORE_MODULES)
    offenders = {name: loaded for name, loaded in report["loaded"].items() if loaded}
    assert offenders == {}, f"pure core modules imported {offenders}"


def test_core_modules_import() -> None:
    # Apart from purity: a core module that does not import cannot be checked for it either.
    failed = _probe()["failed"]
    assert failed == {}, "core modules failed to import:\n" + "\n".join(
        f"{name}:\n{trace}" for name, trace in failed.items()
    )
