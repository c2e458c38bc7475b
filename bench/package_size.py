"""How big the base install is next to the server install, and how long `import hokusai`
takes in each.

    python bench/package_size.py [--runs 7] [--keep DIR]

Builds the wheel of this tree, installs it into fresh virtualenvs (only the base; base
with ``[sklearn]``; ``[server]``), and prints the size of each site-packages (``du``) and
the median wall time of ``python -c "import hokusai"`` (a new process each run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO_ROOT

VARIANTS = {"base": "", "base+sklearn": "[sklearn]", "server": "[server]"}


# This tree's sources on PYTHONPATH would stand in for the wheel: leave them out.
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python*/site-packages")
    return found


def size_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024


def import_seconds(python: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(python), "-c", "import hokusai"], check=True, env=CLEAN_ENV)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="build the virtualenvs here and keep them")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="hokusai-size-"))
    work.mkdir(parents=True, exist_ok=True)
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO_ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("*.whl")
    print(f"{'install':<14} {'site-packages MB':>17} {'import hokusai s':>17}")
    for name, extra in VARIANTS.items():
        venv = work / name
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin/pip"), "install", "--quiet", f"{wheel}{extra}"],
            check=True,
            capture_output=True,
            env=CLEAN_ENV,
        )
        python = venv / "bin/python"
        seconds = import_seconds(python, args.runs)
        print(f"{name:<14} {size_mb(site_packages(venv)):>17.0f} {seconds:>17.2f}", flush=True)


if __name__ == "__main__":
    main()
