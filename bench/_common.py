"""What the benchmarks share to measure: the record of the machine and of the commit
measured, CPU and memory read from /proc, percentiles, files of random bytes. The servers
they start are in ``_servers.py``.

``hokusai`` is imported inside the one function that needs it: the load generators, which
are the benchmark scripts started again as clients, import this module too and should
pay for nothing they do not use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
MIB = 1024 * 1024

# The versions that make a figure what it is, recorded with it (absent ones are skipped).
PACKAGES = ("hokusai-ml-platform", "mlflow", "httpx", "uvicorn", "sqlalchemy")


# ---- the machine and the commit measured ----------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU, cores, memory, kernel, Python and the packages measured; any /proc file that
    is missing or lacks its line leaves its figure unknown instead of failing the run."""
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, IndexError, ValueError):
        total = next(
            (
                line
                for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal:")
            ),
            None,
        )
        if total is not None:
            mem_kib = int(total.split()[1])
    versions = {}
    for package in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package.removesuffix("-ml-platform")] = metadata.version(package)
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions,
    }


def git_revision() -> str:
    """The commit measured, and whether src/ had uncommitted changes."""
    import hokusai

    if not Path(hokusai.__file__).resolve().is_relative_to(REPO_ROOT / "src"):
        return "hokusai imported from outside this repository"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", str(REPO_ROOT / "src")],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+uncommitted changes in src" if dirty else "")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def python_speed() -> float:
    """Seconds this machine takes for a fixed piece of pure Python (ten million additions,
    the best of three): how fast a core is at the time of the run.

    A virtual machine's cores are not always equally fast: with nothing else running and
    no steal time recorded, MLflow has needed twice the CPU per request in one run that it
    needed in another an hour earlier, and every per-request figure moves with that. Runs
    are comparable only at similar speeds."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def record_start() -> dict[str, Any]:
    """The first fields of every benchmark's record: when, which commit, on what machine,
    how fast its cores were and how loaded it was before the run."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "revision": git_revision(),
        "machine": machine(),
        "python_speed_seconds": python_speed(),
        "load_average_before": load_average(),
    }


# ---- CPU and memory, from /proc -------------------------------------------------------------


def _process_tree(pid: int) -> list[int]:
    """The process and all its descendants (MLflow and uvicorn start worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def pin_tree(pid: int, cores: set[int]) -> None:
    """Run the process ``pid`` and all its descendants on ``cores`` only."""
    for member in _process_tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(member, cores)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants, in seconds."""
    ticks = 0
    for member in _process_tree(pid):
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, name: str) -> int:
    """A figure of /proc/<pid>/status in KiB (``VmRSS``, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def tree_rss_mib(pid: int) -> float:
    """VmRSS of a process and all its descendants, in MiB."""
    total = 0
    for member in _process_tree(pid):
        with contextlib.suppress(OSError, KeyError):
            total += status_kib(member, "VmRSS")
    return round(total / 1024, 1)


@dataclass(frozen=True)
class CpuSpent:
    """CPU seconds over a stretch of time. ``busy``, ``steal`` and ``total`` are the
    machine's, all cores together; the others are this benchmark's own processes."""

    busy: float  # user, nice, system, irq, softirq
    steal: float  # taken by the hypervisor
    total: float
    own: float  # this process
    children: float  # its children that have been waited for
    watched: float  # the processes watched, and their descendants

    @property
    def benchmark(self) -> float:
        return self.own + self.children + self.watched


class CpuAccount:
    """The machine's CPU over a stretch of time, and how much of it was not this benchmark:
    other processes on a shared machine, or time the hypervisor took (steal). Use it as a
    context manager, or call ``start`` and ``stop``; ``spent`` then holds the figures."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def _read(self) -> CpuSpent:
        # /proc/stat "cpu" line: user nice system idle iowait irq softirq steal ...
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
        tick = os.sysconf("SC_CLK_TCK")
        times = os.times()
        return CpuSpent(
            busy=(sum(values[0:3]) + values[5] + values[6]) / tick,
            steal=values[7] / tick,
            total=sum(values) / tick,
            own=times.user + times.system,
            children=times.children_user + times.children_system,
            watched=sum(cpu_seconds(pid) for pid in self.pids),
        )

    def start(self) -> CpuAccount:
        self._start = self._read()
        return self

    def stop(self) -> CpuSpent:
        end, start = self._read(), self._start
        self.spent = CpuSpent(
            **{name: getattr(end, name) - getattr(start, name) for name in CpuSpent.__annotations__}
        )
        return self.spent

    def __enter__(self) -> CpuAccount:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def result(self) -> dict[str, float]:
        """The shares of the machine, in percent of all its cores' time."""
        spent = self.spent
        span = spent.total or 1.0
        return {
            "busy_percent": round(100 * spent.busy / span, 1),
            "benchmark_percent": round(100 * spent.benchmark / span, 1),
            "other_processes_percent": round(
                100 * max(0.0, spent.busy - spent.benchmark) / span, 1
            ),
            "steal_percent": round(100 * spent.steal / span, 1),
        }


class RssSampler:
    """Samples a process's VmRSS every few milliseconds; also resets and reads VmHWM."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        with contextlib.suppress(OSError):  # "5" resets the peak (VmHWM) to the current RSS
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.baseline_kib = status_kib(self.pid, "VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.hwm_kib = status_kib(self.pid, "VmHWM")

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.samples.append(status_kib(self.pid, "VmRSS"))
            self._stop.wait(self.interval)

    @property
    def peak_kib(self) -> int:
        return max([self.hwm_kib, *self.samples])


# ---- figures and files -----------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def random_file(path: Path, mib: int) -> str:
    """Write ``mib`` MiB of random bytes to ``path`` (nothing compresses or deduplicates
    them on the way); their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(mib):
            block = os.urandom(MIB)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(MIB):
            digest.update(block)
    return digest.hexdigest()


# ---- the benchmark scripts' own child processes ------------------------------------------------


def run_child(script: str, flag: str, job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run a benchmark script again with ``flag``, as a process of its own (a load generator
    apart from the servers it loads): the job goes on stdin as JSON, so credentials stay off
    the command line, and the result comes back as JSON on stdout."""
    done = subprocess.run(
        [sys.executable, str(Path(script).resolve()), flag],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{Path(script).name} {flag} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result
