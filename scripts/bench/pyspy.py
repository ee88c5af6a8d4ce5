"""``scripts/bench.py --profile``: where the CPU goes, per process, sampled with py-spy.

``Profiler`` runs one ``py-spy record --format raw --nonblocking`` per process of the job while a burst
runs, and stops them all with SIGINT (py-spy then writes what it sampled). ``aggregate_raw`` (pure) turns
py-spy's raw output (one line per distinct stack: ``frame;frame;...;leaf COUNT``, each frame
``function (file:line)``) into the total samples and the self samples per ``file:function`` (the leaf
frame of each stack: where the interpreter was, not who called it). ``table`` prints them.

py-spy samples Python frames only (no ``--native``): time in C code (msgspec, picows, the socket calls)
counts for the Python function that called it. Idle threads are not sampled (py-spy's default), but a
thread waiting inside C code often is (Ray's task loop, the asyncio loop's epoll): those leaves
(``WAITING``) are counted apart, and the rest is "busy": at ``RATE`` samples/s, 100 busy samples are
about one CPU second (or a thread runnable but waiting for a core, on a loaded machine).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

RATE = 100  # samples per second per process
TOP = 8  # functions shown per process
MAX_S = 600  # py-spy's own --duration: it stops by itself even if never signalled

#: Leaf frames (file name, function without its class) where a thread waits in C code that py-spy does
#: not see as idle (Ray's task loop, the asyncio loop's epoll, a condition variable): counted apart as
#: "waiting", not as busy.
WAITING = frozenset({("worker.py", "main_loop"), ("selectors.py", "select"), ("threading.py", "wait")})


def is_waiting(label: str) -> bool:
    """Whether a ``file:function`` label is one of the ``WAITING`` (file name, bare function name)."""
    file, _, func = label.rpartition(":")
    return (file.rsplit("/", 1)[-1], func.rsplit(".", 1)[-1]) in WAITING


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


@dataclass
class Profile:
    """One process's samples: ``total`` and self samples per ``file:function``."""

    label: str
    pid: int
    total: int = 0
    self_samples: Counter[str] = field(default_factory=Counter)
    error: str = ""

    @property
    def waiting(self) -> int:
        """Samples whose leaf is a wait (``WAITING``)."""
        return sum(n for func, n in self.self_samples.items() if is_waiting(func))

    @property
    def busy(self) -> int:
        return self.total - self.waiting

    def top(self, n: int = TOP) -> list[tuple[str, int]]:
        """The ``n`` functions with the most self samples, waits left out."""
        return [(f, k) for f, k in self.self_samples.most_common() if not is_waiting(f)][:n]


def frame_label(frame: str) -> str:
    """``function (path/to/file.py:12)`` -> ``file.py:function`` (the file's last two path parts)."""
    frame = frame.strip()
    m = _FRAME.match(frame)
    if not m:
        return frame
    parts = Path(m["file"]).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else m["file"]
    return f"{short}:{m['func']}"


def aggregate_raw(text: str) -> tuple[int, Counter[str]]:
    """py-spy's raw (collapsed-stack) output -> (total samples, self samples per ``file:function``).

    A line that does not end in a count is skipped; a thread frame (``--threads``) is never a leaf.
    """
    total = 0
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack or not n.isdigit():
            continue
        k = int(n)
        total += k
        counts[frame_label(stack.rsplit(";", 1)[-1])] += k
    return total, counts


def py_spy() -> str | None:
    """The py-spy executable: beside this interpreter (the venv's) or on PATH."""
    here = Path(sys.executable).with_name("py-spy")
    return str(here) if here.exists() else shutil.which("py-spy")


class Profiler:
    """py-spy on each of ``pids`` (label -> pid) from ``start`` until ``stop``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.exe = py_spy()
        self.dir = Path(tempfile.mkdtemp(prefix="tickvisor-prof-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def unavailable(self) -> str:
        """Why profiling cannot run here ("" if it can): py-spy missing, or ptrace refused."""
        if self.exe is None:
            return "py-spy is not installed (pip install py-spy==0.4.3, pinned in scripts/requirements.lock)"
        pid = next(iter(self.pids.values()), os.getpid())
        try:
            probe = subprocess.run(
                [self.exe, "dump", "--nonblocking", "--pid", str(pid)],
                capture_output=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"py-spy could not run: {type(exc).__name__}: {exc}"
        if probe.returncode != 0:
            err = (probe.stderr or probe.stdout).decode(errors="replace").strip().splitlines()
            first = err[0] if err else f"exit code {probe.returncode}"
            return f"py-spy cannot read process {pid} ({first}); ptrace may be refused (needs CAP_SYS_PTRACE)"
        return ""

    def start(self) -> None:
        assert self.exe is not None
        for label, pid in self.pids.items():
            out = self.dir / f"{pid}.txt"
            self.procs[label] = subprocess.Popen(
                [
                    self.exe,
                    "record",
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--rate",
                    str(RATE),
                    "--duration",
                    str(MAX_S),
                    "--pid",
                    str(pid),
                    "-o",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )

    def stop(self) -> list[Profile]:
        """SIGINT every py-spy, wait for its output, and aggregate it; one Profile per process."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        profiles = []
        for label, proc in self.procs.items():
            pid = self.pids[label]
            prof = Profile(label, pid)
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate(timeout=5)
            out = self.dir / f"{pid}.txt"
            if out.exists():
                prof.total, prof.self_samples = aggregate_raw(out.read_text(errors="replace"))
                out.unlink()
            else:
                lines = err.decode(errors="replace").strip().splitlines()
                prof.error = lines[-1] if lines else f"py-spy exit code {proc.returncode}"
            profiles.append(prof)
        shutil.rmtree(self.dir, ignore_errors=True)
        return profiles


def table(profiles: list[Profile], seconds: float, top: int = TOP) -> str:
    """Markdown: per process (busiest first) its samples, and its top functions by self samples."""
    lines = [
        (
            f"## Where the CPU goes (py-spy, {RATE} samples/s per process over {seconds:.1f} s; "
            "self samples of the leaf Python frame)"
        ),
        "",
        (
            "| process | pid | samples (waiting) | busy % of a core | function (file:function) | self "
            "| % of busy |"
        ),
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for p in sorted(profiles, key=lambda p: -p.busy):
        busy = 100 * p.busy / (RATE * seconds) if seconds > 0 else 0.0
        if p.error:
            lines.append(f"| {p.label} | {p.pid} | - | - | py-spy: {p.error} | | |")
            continue
        rows = p.top(top) or [("(no samples: idle)", 0)]
        for i, (func, n) in enumerate(rows):
            head = (
                (p.label, str(p.pid), f"{p.total} ({p.waiting})", f"{busy:.0f}")
                if i == 0
                else ("", "", "", "")
            )
            share = f"{100 * n / p.busy:.0f}" if p.busy else "-"
            lines.append(f"| {' | '.join(head)} | `{func}` | {n} | {share} |")
    return "\n".join(lines)
