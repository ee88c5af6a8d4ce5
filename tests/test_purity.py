"""The pure core is a package boundary (STYLE.md section 1).

It is checked two ways over ``actors/core/``:

* importing anything there, in a fresh interpreter (this test process may already have loaded
  anything), loads neither Ray, a socket library, asyncio, ssl, threading, picows, zmq nor the logger,
  and leaves ``os.environ`` alone;
* reading each module's source (the ``ast``), it reads no clock (``time.``, ``datetime.now``), no file
  (``open``, ``read_text``...), no environment (``os.environ``, ``getenv``), and imports none of the
  modules that would (``time``, ``os``, ``pathlib``, ``threading``...). The standard library loads
  ``time`` itself, so only the source can show that the core does not call it.

Both walk the package's folder itself, so a new core module is checked without being listed, and
each has a test that proves it can fail.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "actors" / "core"
FORBIDDEN = ("ray", "websockets", "loguru", "asyncio", "ssl", "socket", "threading", "picows", "zmq")
#: Modules the core may not import at all: clocks, files, the environment, threads, I/O libraries.
FORBIDDEN_IMPORTS = frozenset(
    {
        *FORBIDDEN,
        "time",
        "os",
        "io",
        "pathlib",
        "shutil",
        "tempfile",
        "subprocess",
        "_thread",
        "concurrent",
        "selectors",
    }
)
#: Calls that read or write a file, whatever object they are called on.
FILE_CALLS = frozenset({"open", "read_text", "read_bytes", "write_text", "write_bytes"})
#: Clock reads of the datetime and date classes. (datetime itself may be imported: the session core turns
#: a given time into a wall-clock time of a given zone, and that reads no clock.)
CLOCK_CALLS = frozenset({"now", "utcnow", "today", "utcfromtimestamp"})
#: Conversions that read the machine's local zone unless they are given one (their second argument).
LOCAL_ZONE_CALLS = frozenset({"fromtimestamp", "astimezone"})

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
    (fake / "bad.py").write_text("import asyncio, os, threading\nos.environ['TICKVISOR_PROBE'] = '1'\n")
    code = _PROBE.format(root=str(tmp_path), forbidden=FORBIDDEN)
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"asyncio", "threading"} <= set(report["loaded"]["actors.core.bad"])
    assert report["environ"]["actors.core.bad"] == ["TICKVISOR_PROBE"]


# --- the source: clocks, files, the environment ------------------------------------------------------


def offences(source: str) -> list[str]:
    """What in ``source`` breaks the core's rules, one line each (``line N: ...``); [] when pure."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        else:
            names = []
        found += [f"line {line}: imports {name}" for name in names if name.split(".")[0] in FORBIDDEN_IMPORTS]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "time":
            found.append(f"line {line}: reads the clock (time.{node.attr})")
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv", "putenv"):
            found.append(f"line {line}: touches the environment (.{node.attr})")
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name in FILE_CALLS and (isinstance(func, ast.Attribute) or name == "open"):
                found.append(f"line {line}: reads or writes a file ({name}())")
            if name in CLOCK_CALLS and isinstance(func, ast.Attribute):
                found.append(f"line {line}: reads the clock ({name}())")
            zone_given = len(node.args) >= (2 if name == "fromtimestamp" else 1) or node.keywords
            if name in LOCAL_ZONE_CALLS and isinstance(func, ast.Attribute) and not zone_given:
                found.append(f"line {line}: reads the machine's time zone ({name}() without a zone)")
    return sorted(set(found), key=lambda text: int(text.split(":")[0].split()[1]))


def test_core_sources_read_no_clock_no_file_and_no_environment() -> None:
    dirty = {
        path.name: bad
        for path in sorted(CORE.glob("*.py"))
        if (bad := offences(path.read_text(encoding="utf-8")))
    }
    assert dirty == {}, "actors/core/ must stay pure:\n" + "\n".join(
        f"{name}: {line}" for name, lines in dirty.items() for line in lines
    )


def test_the_source_check_would_see_each_kind_of_offence() -> None:
    # The check itself can fail: each line below breaks one rule, and each is caught.
    bad = {
        "import time\n": "imports time",
        "from time import monotonic\n": "imports time",
        "import os.path\n": "imports os.path",
        "from threading import Lock\n": "imports threading",
        "import picows\n": "imports picows",
        "import zmq.asyncio\n": "imports zmq.asyncio",
        "from pathlib import Path\n": "imports pathlib",
        "now = time.monotonic()\n": "reads the clock (time.monotonic)",
        "stamp = datetime.datetime.now()\n": "reads the clock (now())",
        "day = dt.date.today()\n": "reads the clock (today())",
        "local = dt.datetime.fromtimestamp(t)\n": (
            "reads the machine's time zone (fromtimestamp() without a zone)"
        ),
        "token = os.environ['X']\n": "touches the environment (.environ)",
        "token = os.getenv('X')\n": "touches the environment (.getenv)",
        "text = open('x.toml').read()\n": "reads or writes a file (open())",
        "text = path.read_text()\n": "reads or writes a file (read_text())",
        "path.write_bytes(b'')\n": "reads or writes a file (write_bytes())",
    }
    for source, what in bad.items():
        assert offences(source) == [f"line 1: {what}"], source
    assert offences("import datetime as dt\nutc = dt.datetime.fromtimestamp(t, dt.UTC)\n") == []
    # ... and the pure things the core does are not offences.
    fine = "from actors.core import wire\nlast = self.time_ms\nx = frame.received_ns\nbook.open_conn()\n"
    assert offences(fine) == []
