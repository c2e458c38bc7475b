"""Model files to and from the registry's artifact store, streamed through the gateway.

Files go up in 1 MiB chunks (never read whole into memory), with a progress bar when
standard error is a terminal, and come down written as they arrive, hashed on the way.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from hokusai.integrity import BackgroundDigest, FileDigest, Manifest, manifest_of
from hokusai.sdk.errors import ValidationError
from hokusai.sdk.transport import ARTIFACTS_API, Transport

CHUNK = 1024 * 1024


def artifact_root_path(artifact_uri: str) -> str:
    """``mlflow-artifacts:/1/abc/artifacts`` -> ``1/abc/artifacts`` (the proxied path)."""
    prefix = "mlflow-artifacts:"
    if not artifact_uri.startswith(prefix):
        raise ValidationError(
            f"the run's artifact location {artifact_uri!r} is not served through the gateway "
            "(expected mlflow-artifacts:/…); the MLflow server must run with --serve-artifacts"
        )
    rest = artifact_uri[len(prefix) :].lstrip("/")
    # mlflow-artifacts://host:port/path carries a host part: drop it.
    if artifact_uri.startswith(prefix + "//"):
        rest = rest.split("/", 1)[1] if "/" in rest else ""
    return rest.strip("/")


def _progress(total: int, enabled: bool | None) -> Progress | None:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        transient=True,
    )


def upload_directory(
    transport: Transport, local_dir: Path, remote_dir: str, *, progress: bool | None = None
) -> list[str]:
    """Upload every file under ``local_dir`` to ``remote_dir``; the remote paths."""
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    bar = _progress(total, progress)
    uploaded = []
    task: Any = None
    if bar is not None:
        bar.start()
        task = bar.add_task("uploading model", total=total)
    try:
        for path in files:
            relative = path.relative_to(local_dir).as_posix()
            remote = f"{remote_dir}/{relative}"

            def chunks(path: Path = path) -> Iterator[bytes]:
                with path.open("rb") as handle:
                    while block := handle.read(CHUNK):
                        if bar is not None:
                            bar.advance(task, len(block))
                        yield block

            transport.request(
                "PUT",
                ARTIFACTS_API + quote(remote),
                content=chunks,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(path.stat().st_size),
                },
                idempotent=True,
            )
            uploaded.append(remote)
    finally:
        if bar is not None:
            bar.stop()
    return uploaded


def upload_with_manifest(transport: Transport, local_dir: Path, remote_dir: str) -> Manifest:
    """Upload every file under ``local_dir`` (:func:`upload_directory`); the manifest of
    those files, computed on a thread of its own meanwhile, so hashing overlaps the
    transfer instead of preceding it."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hokusai-manifest") as pool:
        digesting = pool.submit(manifest_of, local_dir)
        upload_directory(transport, local_dir, remote_dir)
        return digesting.result()


def upload_bytes(transport: Transport, data: bytes, remote: str) -> None:
    """Store one small file (a manifest) at ``remote``."""
    transport.request(
        "PUT",
        ARTIFACTS_API + quote(remote),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
        idempotent=True,
    )


def download_bytes(transport: Transport, remote: str) -> bytes:
    """One small file's content."""
    return transport.request("GET", ARTIFACTS_API + quote(remote)).content


def list_files(transport: Transport, remote_dir: str) -> list[dict[str, Any]]:
    """Every file under ``remote_dir``, recursively: ``[{"path", "file_size"}]``."""
    found: list[dict[str, Any]] = []
    pending = [remote_dir]
    while pending:
        current = pending.pop()
        answer = transport.json("GET", ARTIFACTS_API.rstrip("/"), params={"path": current})
        for entry in answer.get("files", []):
            path = f"{current}/{entry['path']}" if current else entry["path"]
            if entry.get("is_dir"):
                pending.append(path)
            else:
                found.append({"path": path, "file_size": int(entry.get("file_size") or 0)})
    return found


def download_directory(
    transport: Transport, remote_dir: str, local_dir: Path, *, digest: bool = True
) -> dict[str, FileDigest]:
    """Download every file under ``remote_dir`` into ``local_dir``, each written as it
    arrives. With ``digest``, the SHA-256 and size of each, by relative path, taken on
    the way on a thread of their own (checking them costs no second read, and overlaps
    the transfer where the client has a core to spare); without, none."""
    digests: dict[str, FileDigest] = {}
    for entry in list_files(transport, remote_dir):
        relative = entry["path"][len(remote_dir) :].lstrip("/")
        target = local_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)

        def write(pieces: Iterator[bytes], target: Path = target, relative: str = relative) -> None:
            hashing = BackgroundDigest() if digest else None
            try:
                with target.open("wb") as out:  # from the start again on a retry
                    for piece in pieces:
                        out.write(piece)
                        if hashing is not None:
                            hashing.update(piece)
            finally:
                if hashing is not None:
                    digests[relative] = hashing.finish()

        transport.request("GET", ARTIFACTS_API + quote(entry["path"]), receive=write)
    return digests
