"""The distribution built once per session: ``python -m build`` of this tree, into the
session's temporary directory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.distribution.support import ROOT, Distribution


@pytest.fixture(scope="session")
def built_distribution(tmp_path_factory: pytest.TempPathFactory) -> Distribution:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Distribution(wheel=wheel, sdist=sdist)
