"""The pure core is a package boundary (STYLE.md section 1): importing anything under ``actors/core/``
loads neither Ray, a socket library, asyncio, ssl nor the logger, and leaves ``os.environ`` alone.

The test walks the package's folder itself, so a new core module is checked without being listed.
It runs in a fresh interpreter: this test process may already have loaded anything.
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
CORE = ROOT / "actors" / "core"
FORBIDDEN = ("ray", "websockets", "loguru", "asyncio", "ssl", "socket")

_PROBE = textwrap.dedent(
    """
    import importlib, json, os, pkgutil, sys, traceback
    sys.path.insert(0, {root!r})
    forbidden = set({forbidden!r})
    report = {{"modules": [], "loaded": {{}}, "failed": {{}}, "environ": {{}}}}

    def forbidden_loaded():
        return {{m.split(".")[0] for m in sys.modules}} & forbidden

    def check(name):
        before, environ = forbidden_loaded(), dict(os.environ)
        try:
            return importlib.import_module(name)
        except Exception:
            report["failed"][name] = traceback.format_exc(limit=-3)
        finally:
            report["modules"].append(name)
            report["loaded"][name] = sorted(forbidden_loaded() - before)
            if dict(os.environ) != environ:
                changed = {{k for k in set(os.environ) | set(environ) if os.environ.get(k) != environ.get(k)}}
                report["environ"][name] = sorted(changed)

    check("actors")  # the package itself: its public names are imported lazily
    core = check("actors.core")
    if core is not None:
        for info in pkgutil.walk_packages(core.__path__, "actors.core."):
            check(info.name)
    print(json.dumps(report))
    """
)


@functools.cache
def _probe() -> dict[str, Any]:
    """Import the package and every module under actors/core/ in a fresh interpreter, once."""
    code = _PROBE.format(root=str(ROOT), forbidden=FORBIDDEN)
    result = subprocess.run(  # noqa: S603 - our own interpreter and our own code
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"the import probe itself failed:\n{result.stderr}"
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def _core_files() -> set[str]:
    return {"actors.core" if p.name == "__init__.py" else f"actors.core.{p.stem}" for p in CORE.glob("*.py")}


def test_the_walk_reaches_every_file_of_the_core() -> None:
    # If the walk found nothing (a renamed folder, a broken package), the other tests would pass vacuously.
    modules = set(_probe()["modules"])
    assert {"actors.core.wire", "actors.core.errors", "actors.core.subscriptions"} <= modules
    assert _core_files() <= modules


def test_core_loads_no_io_library_and_no_logger() -> None:
    offenders = {name: loaded for name, loaded in _probe()["loaded"].items() if loaded}
    assert offenders == {}, f"pure core modules imported {offenders}"


def test_core_leaves_the_environment_alone() -> None:
    assert _probe()["environ"] == {}, f"importing these changed os.environ: {_probe()['environ']}"


def test_core_modules_import() -> None:
    # Apart from purity: a core module that does not import cannot be checked for it either.
    failed = _probe()["failed"]
    assert failed == {}, "core modules failed to import:\n" + "\n".join(
        f"{name}:\n{trace}" for name, trace in failed.items()
    )


def test_the_probe_would_see_a_forbidden_import(tmp_path: Path) -> None:
    # The probe itself can fail: a fake core that imports asyncio and writes os.environ is caught.
    fake = tmp_path / "actors" / "core"
    fake.mkdir(parents=True)
    (tmp_path / "actors" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "bad.py").write_text("import asyncio, os\nos.environ['TICKVISOR_PROBE'] = '1'\n")
    code = _PROBE.format(root=str(tmp_path), forbidden=FORBIDDEN)
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "asyncio" in report["loaded"]["actors.core.bad"]
    assert report["environ"]["actors.core.bad"] == ["TICKVISOR_PROBE"]
