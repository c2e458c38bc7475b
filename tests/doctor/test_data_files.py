"""The data directory and everything in it are the owner's alone: the directory 0700, its
files (stores, logs, secret, admin key) 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from hokusai.db.engine import make_engine
from hokusai.db.migrate import upgrade
from hokusai.server.mlflow_process import MlflowProcess
from tests.doctor.support import Served

pytestmark = pytest.mark.integration


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most common umask, under which SQLite would create 0644 files."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_hokusai_serve_keeps_its_data_directory_private(served: Served) -> None:
    home = served.data_dir
    assert mode(home) == 0o700
    files = [p for p in home.iterdir() if p.is_file()]
    names = {p.name for p in files}
    assert {"hokusai.db", "secret.key", "admin.key"} <= names, names
    assert {p.name: oct(mode(p)) for p in files} == {p.name: oct(0o600) for p in files}


def test_a_new_sqlite_store_and_its_journal_are_0600(tmp_path: Path, open_umask: None) -> None:
    database = tmp_path / "new" / "hokusai.db"
    engine = make_engine(f"sqlite:///{database}")
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("SELECT count(*) FROM api_keys"))
            wal_files = [database.with_name(database.name + s) for s in ("-wal", "-shm")]
            assert all(f.exists() for f in wal_files), list(database.parent.iterdir())
            assert [oct(mode(f)) for f in (database, *wal_files)] == [oct(0o600)] * 3
        assert mode(database.parent) == 0o700
    finally:
        engine.dispose()


def test_mlflow_log_and_store_are_0600(mlflow_server: MlflowProcess) -> None:
    # The session's real MLflow, started by MlflowProcess like `hokusai serve` does.
    log_file = mlflow_server.log_file
    database = Path(
        next(a for a in mlflow_server.command if a.startswith("sqlite:///"))[len("sqlite:///") :]
    )
    assert oct(mode(log_file)) == oct(0o600)
    assert oct(mode(database)) == oct(0o600)
