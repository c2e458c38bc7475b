"""Database engines for the auth store: SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from hokusai.errors import InvalidInput

T = TypeVar("T")


def normalise_url(url: str) -> str:
    """Use psycopg 3 for a plain ``postgresql://`` URL (SQLAlchemy would pick psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        _create_private_sqlite_file(url)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _tune_sqlite)
    else:
        engine = _postgres_engine(url, **kwargs)
    event.listen(engine, "before_cursor_execute", _refuse_nul_characters)
    return engine


def _postgres_engine(url: str, **kwargs: Any) -> Engine:
    # Surviving a server restart (every connection ended at once): a pooled connection is
    # pinged when checked out and replaced if dead, and a disconnect met mid-statement
    # invalidates every connection pooled before it, so only statements in flight at that
    # moment fail. A server that is down (or a lost SYN) costs a bounded connect attempt,
    # never a thread hung for the kernel's TCP timeout.
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    if "connect_timeout" not in make_url(url).query:
        kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", 5)
    return create_engine(url, **kwargs)


def _refuse_nul_characters(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    """Refuse a value holding a NUL character, whichever front-end it came through.

    PostgreSQL's text cannot hold one (the driver fails with DataError, which would read as
    a store failure) and SQLite would keep it; either way such a value is bad input, and
    on both stores it is refused the same way, before the statement runs.
    """
    rows = parameters if executemany else [parameters]
    for row in rows:
        values = row.values() if isinstance(row, dict) else row
        for value in values or ():
            if isinstance(value, str) and "\x00" in value:
                raise InvalidInput(
                    "A value contains a NUL character (\\x00), which the platform does not "
                    "store. Nothing was changed."
                )


def retry_on_disconnect(work: Callable[[], T]) -> T:
    """Run ``work`` (one transaction) again, once, if the server ended its connection.

    A restart ends every pooled connection at once; the first statement on each finds out.
    SQLAlchemy then invalidates the pool, so the second try connects afresh. Only for work
    whose transaction is all-or-nothing: a failed first try committed nothing.
    """
    try:
        return work()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return work()


def _create_private_sqlite_file(url: str) -> None:
    """Create a SQLite database file 0600 before SQLite does.

    SQLite creates the file with the process umask (usually 0644: readable by everyone)
    and gives its -wal and -shm files the database file's mode, so creating the file
    first, empty and private, keeps all three the owner's.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return
    os.fchmod(fd, 0o600)  # whatever the umask
    os.close(fd)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the gateway's readers and the CLI's writers work side by side; the busy
    # timeout turns a moment of lock contention into a short wait instead of an error.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
