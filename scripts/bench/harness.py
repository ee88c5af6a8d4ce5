"""Benchmark helpers that need no Ray: the simulator process and its admin API, the baseline client
processes, /proc accounting, progress and time limits.

The simulator runs as ``python scripts/simulator.py --port 0 ...`` so that it never shares a GIL with
the client under test; the benchmark drives it only through ``/admin/fault`` and ``/admin/state``.
``Client`` runs one baseline client (scripts/bench/clients.py) as its own process, and ``run_client``
measures one burst with it. CPU and memory are read from ``/proc`` (Linux), for a process and all its
descendants. scripts/bench.py (with Ray) and scripts/bench/channels.py (without) both build on these.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Self

from scripts.bench.config import PATHS
from scripts.bench.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
FOREX_PATH = PATHS["forex_crypto"]
STOCK_PATH = PATHS["stock"]
START_TIMEOUT_S = 20.0
ADMIN_TIMEOUT_S = 10.0
NICENESS = 0  # of the baseline client processes; scripts/bench.py sets it to its Ray workers' (--niceness)


# --- progress and time limits -------------------------------------------------------------------------


def log(message: str) -> None:
    """Progress on stderr (stdout carries the table and the BENCH line)."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


@contextlib.contextmanager
def hard_cap(seconds: float) -> Iterator[None]:
    """Stop the run (and clean up) if it takes longer than ``seconds``."""

    def expired(signum: int, frame: object) -> None:  # noqa: ARG001
        raise TimeoutError(f"the benchmark took longer than its hard cap of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(int(seconds))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class SimProcess:
    """One ``scripts/simulator.py`` process on 127.0.0.1 with a free port; a context manager.

    Args:
        token: the token the simulator accepts.
        args: further command-line options (``--tick-rate``, ``--token-gap-s``, ...).

    """

    def __init__(self, token: str, *args: str) -> None:
        self.token = token
        self.args = [str(a) for a in args]
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __repr__(self) -> str:
        return f"SimProcess(port={self.port}, args={self.args!r})"

    def start(self) -> int:
        """Start the process and wait for ``SIMULATOR LISTENING``; returns the port."""
        cmd = [
            sys.executable,
            str(ROOT / "scripts" / "simulator.py"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--token",
            self.token,
            "--log-level",
            "WARNING",
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("SIMULATOR LISTENING"):
                self.port = int(line.rsplit(":", 1)[1])
                return self.port
        self.stop()
        raise RuntimeError("the simulator did not start")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    @property
    def pid(self) -> int:
        """The simulator's process id."""
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Self:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str = FOREX_PATH) -> str:
        """The ws:// URL of an endpoint path, token included."""
        return f"ws://127.0.0.1:{self.port}{path}?token={urllib.parse.quote(self.token, safe='')}"

    def _admin(self, action: str, **params: object) -> Any:
        query = urllib.parse.urlencode(
            {**{k: v for k, v in params.items() if v is not None}, "token": self.token}
        )
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.port}/admin/{action}?{query}", timeout=ADMIN_TIMEOUT_S
        ) as response:
            return json.loads(response.read())

    def state(self) -> dict[str, Any]:
        """``GET /admin/state``."""
        return self._admin("state")

    def fault(self, name: str, **params: object) -> list[int]:
        """``GET /admin/fault``; returns the affected connection ids."""
        return self._admin("fault", name=name, **params)["affected"]

    def find_conn(self, codes: Iterable[str], path: str = FOREX_PATH, timeout: float = 20.0) -> int:
        """The id of the open connection on ``path`` whose trade set is exactly ``codes``."""
        want = sorted(set(codes))

        def holding() -> list[int]:
            return [
                int(conn["id"])
                for conn in self.state()["connections"]
                if conn["open"] and conn["path"] == path and conn["trades"] == want
            ][:1]

        return wait_for(holding, timeout, what=f"an open connection on {path} holding the {len(want)} codes")[
            0
        ]


# --- the baseline client processes ----------------------------------------------------------------


class Client:
    """A baseline client process (scripts/bench/clients.py), its output read line by line."""

    def __init__(self, kind: str, url: str, codes: list[str], count: int, *, latency: bool = False) -> None:
        cmd = [
            sys.executable,
            "-m",
            "scripts.bench.clients",
            kind,
            "--url",
            url,
            "--codes",
            ",".join(codes),
            "--count",
            str(count),
        ]
        if latency:
            cmd.append("--latency")
        nice = NICENESS
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            preexec_fn=(lambda: os.nice(nice)) if nice else None,  # noqa: PLW1509 - os.nice only
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")

    def expect(self, prefix: str, timeout: float) -> str:
        """The next line starting with ``prefix`` (its rest)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"client printed no {prefix} within {timeout:.0f} s") from None
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"client exited ({self.proc.returncode}) before {prefix}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def block(k: int, size: int = 100) -> list[str]:
    """The k-th block of ``size`` generated forex/crypto codes: a fresh set for every client run."""
    return [f"C{i:04d}USDT" for i in range(k * size + 1, (k + 1) * size + 1)]


# --- running one consumer -----------------------------------------------------------------------------


def run_client(
    kind: str, sim: SimProcess, codes: list[str], count: int, *, rate: float | None = None
) -> dict[str, Any]:
    """One baseline run: the client subscribes, the simulator bursts, the client reports."""
    client = Client(kind, sim.url(FOREX_PATH), codes, count, latency=rate is not None)
    try:
        client.expect("READY", 30)
        conn = sim.find_conn(codes)
        sim.fault("burst", conn=conn, count=count, **({"rate": rate} if rate else {}))
        expected_s = count / (rate or 5000)
        result = json.loads(client.expect("RESULT", 30 + expected_s))
    finally:
        client.close()
    if result["count"] != count or result.get("gaps") or result.get("out_of_order"):
        state = sim.state()
        pushes = [c["pushes"] for c in state["connections"] + state["closed"] if c["id"] == conn]
        log(
            f"{kind}: got {result['count']} of {count} ticks (gaps {result.get('gaps')}, out of order "
            f"{result.get('out_of_order')}); the simulator wrote {pushes} pushes on that connection"
        )
    log(
        f"{kind}: {result['count']} ticks, {result['tps']:.0f}/s"
        + (f", p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms" if rate else "")
    )
    return result


# --- /proc accounting -------------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children_map() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):  # noqa: PTH208 - /proc entries are names, read as strings
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:  # noqa: PTH123
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        out.setdefault(ppid, []).append(int(entry))
    return out


def tree(root: int, exclude: Iterable[int] = ()) -> list[int]:
    """``root`` and all its descendants, minus the subtrees of ``exclude``."""
    children = _children_map()
    skip = set(exclude)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in skip:
            continue
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _cpu_of(pid: int) -> float | None:
    """User plus system CPU seconds of ``pid``; None once it has exited."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:  # noqa: PTH123
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14 and 15 of stat)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU seconds of the given processes (those still alive)."""
    return sum(cpu for pid in pids if (cpu := _cpu_of(pid)) is not None)


class CpuMeter:
    """CPU seconds of a set of processes that never goes back: one that exits between two readings (Ray
    retires idle workers at any time) keeps the CPU it was last seen with, so a difference of two
    readings is never negative.
    """

    def __init__(self, pids: Iterable[int]) -> None:
        self._pids = list(pids)
        self._last: dict[int, float] = {}

    def __call__(self) -> float:
        for pid in self._pids:
            cpu = _cpu_of(pid)
            if cpu is not None:
                self._last[pid] = cpu
        return sum(self._last.values())


def rss_mb(pids: Iterable[int]) -> float:
    """Summed resident set size of the given processes, in MiB (shared pages count once per process)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:  # noqa: PTH123
                total += int(f.read().split()[1])
        except OSError:
            continue
    return total * _PAGE / (1 << 20)


def pss_mb(pids: Iterable[int]) -> float:
    """Summed proportional set size (shared pages split between their users), in MiB; 0 if unreadable."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:  # noqa: PTH123
                for line in f:
                    if line.startswith(b"Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total / 1024
