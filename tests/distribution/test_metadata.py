"""The built wheel and sdist: metadata a package index accepts, and a base install that
requires none of the server's packages."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from hokusai.version import __version__
from tests.distribution.support import MLFLOW_ENDS, Distribution

# Distributions only the server needs: none may be a base requirement.
SERVER_DISTRIBUTIONS = {
    "mlflow",
    "fastapi",
    "starlette",
    "uvicorn",
    "aiohttp",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "flask",
    "gunicorn",
    "prometheus-client",
    "pydantic-settings",
    "standardwebhooks",
    "redis",
    "fastapi-offline",
}


def wheel_metadata(distribution: Distribution) -> object:
    with zipfile.ZipFile(distribution.wheel) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(wheel.read(name).decode())


def test_the_base_install_requires_no_server_package(built_distribution: Distribution) -> None:
    metadata = wheel_metadata(built_distribution)
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist")]  # type: ignore[attr-defined]
    base = {r.name.lower() for r in requirements if r.marker is None}
    server = {
        r.name.lower()
        for r in requirements
        if r.marker is not None and r.marker.evaluate({"extra": "server"})
    }
    assert base >= {"httpx", "typer", "rich", "mlflow-skinny"}
    assert base & SERVER_DISTRIBUTIONS == set()
    assert server >= {"mlflow", "fastapi", "uvicorn", "sqlalchemy", "alembic", "psycopg"}
    (mlflow_pin,) = [r for r in requirements if r.name == "mlflow"]
    assert str(mlflow_pin.specifier) == "==3.17.2"
    (skinny,) = [r for r in requirements if r.name == "mlflow-skinny"]
    tested = [Requirement(pin).specifier for pin in MLFLOW_ENDS.values() if pin]
    tested_versions = [next(iter(pin)).version for pin in tested]
    assert tested_versions and all(skinny.specifier.contains(v) for v in tested_versions)
    # Nothing older than the oldest version tested; not MLflow 4.
    assert min(tested_versions, key=Version) == "2.22.5"
    assert not skinny.specifier.contains("2.22.4")
    assert not skinny.specifier.contains("4.0.0")


def test_the_metadata_names_version_license_and_classifiers(
    built_distribution: Distribution,
) -> None:
    metadata = wheel_metadata(built_distribution)
    assert metadata["Version"] == __version__  # type: ignore[index]
    assert metadata["License-Expression"] == "Apache-2.0"  # type: ignore[index]
    assert metadata.get_all("License-File") == ["LICENSE"]  # type: ignore[attr-defined]
    assert "Programming Language :: Python :: 3.11" in metadata.get_all("Classifier")  # type: ignore[attr-defined]
    assert built_distribution.wheel.name == f"hokusai_ml_platform-{__version__}-py3-none-any.whl"


def test_the_sdist_holds_license_changelog_and_docs(built_distribution: Distribution) -> None:
    with tarfile.open(built_distribution.sdist) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "docs/architecture.md"} <= names
    assert "src/hokusai/db/migrations/env.py" in names


def test_twine_accepts_both(built_distribution: Distribution) -> None:
    pytest.importorskip("twine")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "check",
            "--strict",
            str(built_distribution.wheel),
            str(built_distribution.sdist),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2
