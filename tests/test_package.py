"""The package as users install it: a wheel built from the repository and installed outside it.

The ``tickvisor`` command then runs from another directory with nothing of the checkout on ``sys.path``.

The wheel is built offline from a copy of what it is made of (pyproject.toml, README.md, actors/), so
the build leaves nothing in the checkout and proves those files are enough (tests/conftest.py
``installed_wheel``, shared with the cluster test of tests/test_job.py). The job test starts a
local Ray of its own (marker ``ray``); every wait is bounded, and nothing is timed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.conftest import ROOT, S
from tests.test_job import STATUS_UP


class Installed(NamedTuple):
    wheel: Path
    site: Path  # pip install --target: the package and bin/tickvisor
    cwd: Path  # a directory outside the checkout
    env: dict[str, str]

    def run(self, args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``ARGS`` in ``cwd`` with ``env``, to the end; its session is killed if it overstays."""
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and the installed command
            args,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout * S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"{args} did not end within {timeout * S:.0f} s\n{out[-2000:]}\n{err[-3000:]}")
        return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def installed(installed_wheel: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Installed:
    wheel, site = installed_wheel
    cwd = tmp_path_factory.mktemp("elsewhere")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "RAY_ADDRESS", "VIRTUAL_ENV"}}
    env["PYTHONPATH"] = str(site)  # what --target needs; the checkout is on no path
    return Installed(wheel, site, cwd, env)


def test_the_wheel_holds_every_module_and_the_package_data(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = wheel.read(entry_points).decode()
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "actors").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert {"actors/core/wire.py", "actors/sim/server.py", "actors/cli.py"} <= modules
    assert modules - names == set(), "modules missing from the wheel"
    assert {"actors/data/default.toml", "actors/data/grafana-tickvisor.json"} <= names
    assert re.search(r"^tickvisor = actors\.cli:main$", scripts, re.MULTILINE), scripts
    assert not [n for n in names if n.startswith(("tests/", "scripts/", "configs/"))]


@pytest.mark.ray
@pytest.mark.timeout(int(240 * S))
def test_the_installed_command_runs_the_embedded_default_outside_the_checkout(installed: Installed) -> None:
    probe = "import json, sys, actors, actors.sim; print(actors.__file__); print(json.dumps(sys.path))"
    done = installed.run([sys.executable, "-c", probe])
    assert done.returncode == 0, done.stderr
    where, path = done.stdout.splitlines()
    assert Path(where) == installed.site / "actors" / "__init__.py"
    # Only the checkout's .venv (this interpreter) may be on the path, nothing else of the checkout.
    venv = Path(sys.prefix)
    checkout = [
        p for p in json.loads(path) if p and Path(p).is_relative_to(ROOT) and not Path(p).is_relative_to(venv)
    ]
    assert checkout == [], checkout
    assert not installed.cwd.is_relative_to(ROOT)

    command = str(installed.site / "bin" / "tickvisor")
    done = installed.run([command, "--version"])
    assert (done.returncode, done.stdout.strip()) == (0, "tickvisor 0.1.0"), done.stderr
    done = installed.run([command, "check"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tickvisor: <default settings> is valid\n"), done.stdout

    namespace = f"tv-pkg-{uuid.uuid4().hex[:8]}"
    args = [command, "--duration", "4", "--status-every", "1", "--namespace", namespace]
    done = installed.run(args, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert re.search(r"tickvisor: bundled simulator on 127\.0\.0\.1:\d+", done.stdout), done.stdout
    assert re.search(STATUS_UP.format(codes=6), done.stdout), done.stdout[-3000:]
    assert done.stdout.rstrip().endswith("tickvisor: stopped"), done.stdout[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
