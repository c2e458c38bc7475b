"""The SHA-256 of each artifact file uploaded through the gateway, taken as it streams by.

A stock MLflow client computes no digests. The gateway sees every byte of an upload
(``PUT mlflow-artifacts/artifacts/<path>``) on its way to MLflow, so it hashes the pieces
as they pass (no buffering: a 1 GiB file costs its hash, not its size in memory) and,
once MLflow has stored the file, records the digest under the workspace and the path.
When a version is registered from those files, ``gateway/manifest_maker.py`` makes
its manifest from these rows: what passed through the gateway, not what the artifact
store holds by then.

A path's row is replaced by a later upload to it and removed when the path is deleted
through the gateway or replaced by a multipart upload (whose parts the gateway does not
see); a file with no row cannot be vouched for, and a version holding one gets no
manifest from the gateway.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy import ColumnElement, Engine, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from hokusai.db.schema import artifact_digests
from hokusai.integrity import FileDigest


class StreamDigest:
    """The SHA-256 and size of a request body, computed while it streams to MLflow."""

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self._size = 0
        self._complete = False

    async def passing(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``body``, unchanged, hashed on the way."""
        async for piece in body:
            self._sha256.update(piece)
            self._size += len(piece)
            yield piece
        self._complete = True

    def whole(self, body: bytes) -> None:
        """A body that did not stream: an empty file is sent with none at all."""
        self._sha256.update(body)
        self._size += len(body)
        self._complete = True

    def result(self) -> FileDigest | None:
        """The digest of the whole body; None if it did not stream to its end."""
        if not self._complete:
            return None
        return FileDigest(self._sha256.hexdigest(), self._size)


def record(engine: Engine, workspace: str, path: str, digest: FileDigest, at: datetime) -> None:
    """The file at ``path`` is now ``digest``: replaces what an earlier upload recorded."""
    values = {
        "workspace": workspace,
        "path": path,
        "sha256": digest.sha256,
        "size": digest.size,
        "recorded_at": at,
    }
    changed = {"sha256": digest.sha256, "size": digest.size, "recorded_at": at}
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(artifact_digests)
        .values(**values)
        .on_conflict_do_update(index_elements=["workspace", "path"], set_=changed)
    )
    with engine.begin() as conn:
        conn.execute(statement)


def forget(engine: Engine, workspace: str, path: str) -> None:
    """``path`` and everything under it changed without the gateway seeing the bytes
    (deleted, or written by a multipart upload): their digests no longer hold."""
    with engine.begin() as conn:
        conn.execute(
            delete(artifact_digests).where(
                artifact_digests.c.workspace == workspace, _at_or_under(path)
            )
        )


def recorded_under(engine: Engine, workspace: str, directory: str) -> dict[str, FileDigest]:
    """Every digest recorded under ``directory``, by path relative to it."""
    prefix = directory.rstrip("/") + "/"
    with engine.connect() as conn:
        rows = conn.execute(
            select(artifact_digests.c.path, artifact_digests.c.sha256, artifact_digests.c.size)
            .where(artifact_digests.c.workspace == workspace, _at_or_under(directory))
            .order_by(artifact_digests.c.path)
        ).all()
    return {
        row.path[len(prefix) :]: FileDigest(row.sha256, int(row.size))
        for row in rows
        if row.path.startswith(prefix)
    }


def _at_or_under(path: str) -> ColumnElement[bool]:
    """``path`` itself or anything under it. A comparison of the leading characters, not
    LIKE (artifact paths may hold ``%`` and ``_``, and SQLite's LIKE ignores case) nor a
    range (PostgreSQL orders text by the database's locale, not by code point)."""
    column = artifact_digests.c.path
    if not path:
        return column.is_not(None)
    prefix = path.rstrip("/") + "/"
    return or_(column == path, func.substr(column, 1, len(prefix)) == prefix)
