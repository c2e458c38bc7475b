"""Model integrity: the digest manifest of a model's files, and checking files against it.

A registration records, beside the model's directory, a manifest naming every file with
its SHA-256 and size, and the manifest's own digest as a version tag. Loading checks the
downloaded files against it before anything is deserialized: a changed byte, a missing
file or a file the manifest does not name is refused with the file named. Standard library
only: the SDK and the server both import it.

The manifest is canonical JSON (sorted keys, no spaces), so its digest is the same
wherever it is computed.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hokusai.sdk.errors import HokusaiError

FORMAT = "hokusai-manifest/1"
# The manifest of the model at ``<run artifacts>/model`` is ``<run artifacts>/model.manifest.json``:
# beside the model, never in it, so it is not one of the files it names.
MANIFEST_SUFFIX = ".manifest.json"
# The version tag holding the manifest's digest, ``sha256:<hex>``.
TAG_MANIFEST_DIGEST = "hokusai.manifest_digest"
# A signed manifest's signature bundle, beside it (``hokusai.signing``): ``<files>.manifest.sig``.
SIGNATURE_SUFFIX = ".manifest.sig"
# The version tag naming the key that signed the manifest, ``sha256:<hex>`` of its public key.
TAG_SIGNER = "hokusai.signer"
_READ_BYTES = 1024 * 1024


class IntegrityError(HokusaiError):
    """A model's files do not match its manifest (or the manifest its recorded digest).

    ``problems`` names each file and what is wrong with it, in path order."""

    def __init__(self, subject: str, problems: list[str]) -> None:
        self.subject = subject
        self.problems = problems
        listed = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        super().__init__(
            f"{subject} failed its integrity check, nothing was loaded: {listed}{more}"
        )


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """Every file of a model directory, by its relative POSIX path."""

    files: Mapping[str, FileDigest]

    def to_json(self) -> bytes:
        document = {
            "format": FORMAT,
            "files": {
                path: {"sha256": entry.sha256, "size": entry.size}
                for path, entry in sorted(self.files.items())
            },
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of :meth:`to_json`: what the version tag records."""
        return "sha256:" + hashlib.sha256(self.to_json()).hexdigest()

    @classmethod
    def from_json(cls, data: bytes, *, subject: str = "the manifest") -> Manifest:
        """The manifest in ``data``; :class:`IntegrityError` if it is not one."""
        try:
            document = json.loads(data)
            if document.get("format") != FORMAT:
                raise ValueError(f"format {document.get('format')!r}, expected {FORMAT!r}")
            files = {
                _checked_path(path): FileDigest(_checked_hex(entry["sha256"]), int(entry["size"]))
                for path, entry in document["files"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(subject, [f"it is not a manifest ({exc})"]) from None
        return cls(files)


class BackgroundDigest:
    """The SHA-256 and size of pieces of a stream, hashed on a thread of its own while the
    caller goes on receiving and writing them: hashlib releases the GIL on large
    buffers, so hashing overlaps the transfer instead of following it. Memory is bounded
    by the pieces waiting (``_WAITING``)."""

    _WAITING = 16

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self._size = 0
        self._pieces: queue.Queue[bytes | None] = queue.Queue(maxsize=self._WAITING)
        self._thread = threading.Thread(target=self._hash, name="hokusai-digest", daemon=True)
        self._thread.start()

    def update(self, piece: bytes) -> None:
        self._size += len(piece)
        self._pieces.put(piece)

    def finish(self) -> FileDigest:
        """The digest of every piece given (waits for the thread to hash them)."""
        self._pieces.put(None)
        self._thread.join()
        return FileDigest(self._sha256.hexdigest(), self._size)

    def _hash(self) -> None:
        while (piece := self._pieces.get()) is not None:
            self._sha256.update(piece)


def file_digest(path: Path) -> FileDigest:
    """SHA-256 and size of one file, read in pieces (a model file may be large)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(_READ_BYTES):
            digest.update(block)
            size += len(block)
    return FileDigest(digest.hexdigest(), size)


def manifest_of(directory: Path) -> Manifest:
    """The manifest of every regular file under ``directory``."""
    return Manifest(
        {
            path.relative_to(directory).as_posix(): file_digest(path)
            for path in sorted(directory.rglob("*"))
            if path.is_file()
        }
    )


def manifest_path(model_path: str) -> str:
    """Where the manifest of the model stored at ``model_path`` is stored."""
    return model_path.rstrip("/") + MANIFEST_SUFFIX


def signature_path(model_path: str) -> str:
    """Where the signature of the manifest of the model at ``model_path`` is stored."""
    return model_path.rstrip("/") + SIGNATURE_SUFFIX


def check_manifest_digest(manifest: Manifest, recorded: str, subject: str) -> None:
    """Refuse a manifest whose digest is not the one the version records."""
    if manifest.digest != recorded:
        raise IntegrityError(
            subject,
            [f"its manifest's digest is {manifest.digest}, the version records {recorded}"],
        )


def verify_directory(
    directory: Path,
    manifest: Manifest,
    subject: str,
    digests: Mapping[str, FileDigest] | None = None,
) -> None:
    """Check every file under ``directory`` against ``manifest``: a changed, missing or
    extra file raises :class:`IntegrityError` naming each. ``digests``: what the files
    were as they were written (``sdk.artifacts.download_directory`` takes them on the
    way), so they are not read again; a file without one is read."""
    present = {
        path.relative_to(directory).as_posix(): path
        for path in directory.rglob("*")
        if path.is_file() or path.is_symlink()
    }
    problems: list[str] = []
    for relative in sorted(set(present) | set(manifest.files)):
        expected = manifest.files.get(relative)
        found = present.get(relative)
        if found is None:
            problems.append(f"{relative} is missing")
        elif expected is None:
            problems.append(f"{relative} is not in the manifest")
        elif found.is_symlink():
            problems.append(f"{relative} is a symbolic link")
        else:
            actual = (digests or {}).get(relative) or file_digest(found)
            if actual != expected:
                problems.append(
                    f"{relative} has SHA-256 {actual.sha256} ({actual.size} bytes), "
                    f"the manifest records {expected.sha256} ({expected.size} bytes)"
                )
    if problems:
        raise IntegrityError(subject, problems)


def _checked_path(path: Any) -> str:
    """A manifest path is relative and stays inside the model directory."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"file path {path!r}")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or pure.as_posix() != path:
        raise ValueError(f"file path {path!r} is not a plain relative path")
    return path


def _checked_hex(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 64:
        raise ValueError(f"digest {value!r}")
    int(value, 16)  # ValueError if not hexadecimal
    return value.lower()
