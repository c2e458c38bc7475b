"""The artifact cache: the files of READY model versions, kept on the gateway's disk.

When a version is promoted, a fleet of serving replicas downloads the same files at once.
MLflow serves each download from its own (single-threaded per worker) file handler; the
gateway instead fetches each file from MLflow once and serves every copy from its disk.

- **What is kept.** Only files of a READY version (``gateway/frozen_artifacts.py``): they
  cannot change through the gateway, so a copy stays right. The key names the version
  (model, number, creation time, manifest digest) as well as the path, so the files of a
  version deleted and made again under the same path are never mixed up. Only complete
  ``200`` answers whose length MLflow announced are kept; anything else is proxied.
- **Only verified content.** The artifact store itself can be changed behind MLflow's
  back, and a copy made from a changed file would be served to a whole fleet. So a file
  is kept only when its SHA-256 and size, computed during the fill, match the version's
  manifest (``gateway/version_manifests.py``: read once per version, checked against the
  ``hokusai.manifest_digest`` tag). A file that does not match is not kept: the requests
  following that fill are cut short before their last byte (a broken download, never a
  complete wrong file), and later requests wait for the next fill's verdict and get an
  ``INVALID_STATE`` refusal naming the file, the version and both digests. A version
  without the tag (made before manifests) has nothing to be checked against: none of its
  files is kept, they are proxied. So is a file its manifest does not name.
- **Filled once.** The first request for a file starts its fill, a task of its own that
  reads MLflow's answer at MLflow's pace into a temporary file (mode 0600); a client that
  leaves does not stop it. Requests for the whole file that arrive meanwhile follow the
  file as it is written (each at its own pace: a slow client holds only its own
  download); conditional and range requests wait for the fill to end and its verdict.
- **Bounded.** Files are removed least recently used first to stay within ``max_bytes``;
  a file being served is never removed. A file larger than the limit is not kept.
- **HTTP.** The ETag is the file's SHA-256 (strong), so ``If-None-Match`` answers 304
  and ``Range``/``If-Range`` are served from the file (Starlette's ``FileResponse``).
- **On disk.** Each process keeps its own directory under the cache directory and
  removes it when it stops; directories left by a process that died are removed at the
  next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import aiohttp
import anyio
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

from hokusai.gateway.errors import GatewayError
from hokusai.gateway.frozen_artifacts import FrozenVersion
from hokusai.gateway.observability import Metrics
from hokusai.gateway.version_manifests import Download, VersionManifests, integrity_refusal
from hokusai.integrity import FileDigest
from hokusai.server.runtime_file import pid_running

log = logging.getLogger("hokusai.gateway.artifact_cache")

# Bytes gathered from MLflow before one write to disk (one thread hop each).
FILL_BUFFER = 4 * 1024 * 1024
# Bytes read from disk per piece of an answer.
CHUNK = 256 * 1024
# The threads that read cached files for the answers. Few: each thread that allocates
# gets a malloc arena of its own, and a fleet's downloads through forty of them (anyio's
# default) left hundreds of MiB of freed chunks in those arenas.
READER_THREADS = 4
# Clients may keep a copy, but ask again (If-None-Match: a 304 costs nothing).
_CACHE_CONTROL = "private, no-cache"
# The headers of MLflow's answer that describe the file, kept and served again; length,
# ranges, validators and the hop-by-hop ones are the cache's own.
_KEPT_HEADERS = frozenset(
    {b"content-type", b"content-disposition", b"content-encoding", b"x-content-type-options"}
)
# Keys whose last fill did not match the manifest, remembered so that the next requests
# wait for the verdict instead of following a download that may break again.
MISMATCHES_REMEMBERED = 10_000


@dataclass(frozen=True)
class ContentKey:
    """One file of one version, as seen in one workspace."""

    workspace: str
    version: FrozenVersion
    path: str

    def file_name(self) -> str:
        identity = "\0".join(
            (
                self.workspace,
                self.version.name,
                self.version.version,
                self.version.created_ms,
                self.version.manifest_digest or "",
                self.path,
            )
        )
        return hashlib.sha256(identity.encode()).hexdigest()


@dataclass
class _Entry:
    path: Path
    size: int
    etag: str
    headers: list[tuple[bytes, bytes]]
    serving: int = 0  # requests reading the file now: it is not removed meanwhile


@dataclass
class _Fill:
    """A file being read from MLflow, to be kept only if it is ``expected``. ``started``
    says whether it is being written (then ``size``, ``headers`` and ``path`` are set);
    ``done`` gives its entry (None: not kept; ``refusal`` set: it did not match);
    ``written`` bytes of ``path`` may be read meanwhile, by followers if ``followable``."""

    started: asyncio.Future[bool]
    done: asyncio.Future[_Entry | None]
    expected: FileDigest
    followable: bool
    refusal: GatewayError | None = None
    path: Path = Path()  # the file being written; its final name once complete
    size: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    written: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def advance(self, count: int) -> None:
        """``count`` more bytes are on disk: wake the readers following the fill."""
        self.written += count
        progress, self.progress = self.progress, asyncio.Event()
        progress.set()


@dataclass
class ArtifactCache:
    """The cache of one gateway process."""

    directory: Path
    max_bytes: int
    metrics: Metrics
    _own: Path | None = None
    _entries: OrderedDict[ContentKey, _Entry] = field(default_factory=OrderedDict)
    _filling: dict[ContentKey, _Fill] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _manifests: VersionManifests = field(default_factory=VersionManifests)
    _mismatched: OrderedDict[ContentKey, None] = field(default_factory=OrderedDict)
    _bytes: int = 0  # held on disk plus reserved by fills under way
    _reader_limit: anyio.CapacityLimiter | None = None

    def _readers(self) -> anyio.CapacityLimiter:
        """Made on first use, in the event loop of the process that serves."""
        if self._reader_limit is None:
            self._reader_limit = anyio.CapacityLimiter(READER_THREADS)
        return self._reader_limit

    def _open(self) -> Path:
        """This process's directory, made on first use; the ones of processes that died
        are removed then."""
        if self._own is not None:
            return self._own
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in self.directory.iterdir():
            pid = stale.name.partition("-")[0]
            if stale.is_dir() and pid.isdigit() and not pid_running(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        own = self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        own.mkdir(mode=0o700)
        self._own = own
        return own

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self._manifests.aclose()
        if self._own is not None:
            shutil.rmtree(self._own, ignore_errors=True)
            self._own = None
        self._entries.clear()
        self._mismatched.clear()
        self._set_bytes(0)

    async def serve(
        self, key: ContentKey, download: Download, scope: Scope, receive: Receive, send: Send
    ) -> bool:
        """Answer a ``GET`` of ``key``'s file from the cache, filling it first if need
        be; False (nothing sent) when the file is not kept: the caller proxies it.
        Raises the integrity refusal when the file or its manifest does not check."""
        entry = self._entries.get(key)
        result = "hit"
        if entry is None:
            result = "filled"
            expected = await self._expected(key, download)
            if expected is None:
                return False
            entry = self._entries.get(key)  # kept while the manifest was read
            if entry is None:
                fill = self._filling.get(key) or self._start_fill(key, expected, download)
                if not await asyncio.shield(fill.started):
                    await asyncio.shield(fill.done)
                    return self._not_kept(fill)
                if fill.followable and not fill.done.done() and _plain(scope):
                    # The whole file, while it arrives: follow the fill instead of waiting.
                    # Its digest is not known yet, so this answer has no ETag.
                    try:
                        descriptor = os.open(fill.path, os.O_RDONLY)
                    except FileNotFoundError:  # the fill failed and removed its file just now
                        descriptor = None
                    if descriptor is not None:
                        self.metrics.artifact_cache_requests.labels(result).inc()
                        await self._send_whole(descriptor, fill.size, fill.headers, fill, send)
                        return True
                entry = await asyncio.shield(fill.done)
                if entry is None or key not in self._entries:  # not kept, or already removed
                    return self._not_kept(fill)
        self._entries.move_to_end(key)
        if _matches(scope, entry.etag):
            self.metrics.artifact_cache_requests.labels("not_modified").inc()
            await Response(status_code=304, headers={"etag": entry.etag})(scope, receive, send)
            return True
        self.metrics.artifact_cache_requests.labels(result).inc()
        headers = [(b"etag", entry.etag.encode()), *entry.headers]
        if _plain(scope):
            # Opened at once: removing the file later does not take it from this answer.
            descriptor = os.open(entry.path, os.O_RDONLY)
            await self._send_whole(descriptor, entry.size, headers, None, send)
            return True
        entry.serving += 1
        try:
            # The digest as the validator (Starlette's If-Range compares with it, and keeps
            # a given ETag); the type it guesses gives way to MLflow's.
            response = FileResponse(
                entry.path,
                headers={"etag": entry.etag, "cache-control": _CACHE_CONTROL},
                stat_result=await anyio.to_thread.run_sync(os.stat, entry.path),
            )
            response.raw_headers = [
                (k, v) for k, v in response.raw_headers if k not in _KEPT_HEADERS
            ] + entry.headers
            await response(scope, receive, send)
        finally:
            entry.serving -= 1
        return True

    async def _expected(self, key: ContentKey, download: Download) -> FileDigest | None:
        """What the file must be for the cache to keep it; None when it is not to be kept
        (counted): the caller proxies it."""
        if key.version.manifest_digest is None:
            # Made before manifests: nothing to check its files against, so none is kept.
            self.metrics.artifact_cache_requests.labels("no_manifest").inc()
            return None
        try:
            expected = await self._manifests.expected(
                key.workspace, key.version, key.path, download
            )
        except GatewayError as error:
            if error.reason == "integrity":
                self.metrics.artifact_cache_requests.labels("refused").inc()
            raise
        if expected is None:
            # A file the manifest does not name (it names every file of the version, so
            # this one was added to the store later) is proxied, never kept: the cache
            # has nothing to check it against. Not refused: the SDK's own check already
            # refuses a version with such a file, naming it, and a client that loads
            # with ``verify="none"`` (``--no-verify``) chose to take the store as it is.
            self.metrics.artifact_cache_requests.labels("passed").inc()
        return expected

    def _not_kept(self, fill: _Fill) -> bool:
        """After a fill that kept nothing for this request: its refusal when the file
        did not match the manifest, else False (the caller proxies it)."""
        if fill.refusal is not None:
            self.metrics.artifact_cache_requests.labels("refused").inc()
            raise fill.refusal
        self.metrics.artifact_cache_requests.labels("passed").inc()
        return False

    async def _send_whole(
        self,
        descriptor: int,
        size: int,
        headers: list[tuple[bytes, bytes]],
        fill: _Fill | None,
        send: Send,
    ) -> None:
        """Send the open file whole and close it; with ``fill``, as the fill writes it.
        Its last byte waits for the fill's verdict: if the fill fails or the file does
        not match its manifest, the answer stops short of its Content-Length, which every
        client reports as an incomplete download, never as a complete wrong file."""
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-length", str(size).encode()),
                        (b"accept-ranges", b"bytes"),
                        (b"cache-control", _CACHE_CONTROL.encode()),
                        *headers,
                    ],
                }
            )
            sent = 0
            while True:
                if fill is not None and fill.done.done():
                    if fill.refusal is not None:
                        raise fill.refusal  # the connection is dropped mid-answer
                    if fill.done.result() is None:
                        raise RuntimeError("the artifact cache fill failed mid-way")
                    fill = None  # kept: it matched its manifest, the rest may go
                available = size if fill is None else min(fill.written, size - 1)
                if sent < available:
                    length = min(CHUNK, available - sent)
                    chunk = await anyio.to_thread.run_sync(
                        os.pread, descriptor, length, sent, limiter=self._readers()
                    )
                    if not chunk:
                        raise RuntimeError("a cached file is shorter than its entry says")
                    sent += len(chunk)
                    await send(
                        {"type": "http.response.body", "body": chunk, "more_body": sent < size}
                    )
                elif fill is not None:
                    await fill.progress.wait()
                else:
                    break
            if size == 0:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            os.close(descriptor)

    # ---- filling --------------------------------------------------------------------

    def _start_fill(self, key: ContentKey, expected: FileDigest, download: Download) -> _Fill:
        loop = asyncio.get_running_loop()
        fill = _Fill(
            started=loop.create_future(),
            done=loop.create_future(),
            expected=expected,
            # After a mismatch, requests wait for the verdict: a clear refusal, not
            # another broken download (or the file, if it was restored meanwhile).
            followable=key not in self._mismatched,
        )
        self._filling[key] = fill

        async def run() -> None:
            entry: _Entry | None = None
            try:
                entry = await self._fill(key, download, fill)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # MLflow failed mid-way: the requests proxy instead
                log.warning(
                    "artifact cache fill failed",
                    extra={"fields": {"path": key.path, "error": type(exc).__name__}},
                )
            finally:
                del self._filling[key]
                outcome = "kept" if entry else "mismatched" if fill.refusal else "not_kept"
                self.metrics.artifact_cache_fills.labels(outcome).inc()
                if entry is not None:
                    self._entries[key] = entry
                    self._mismatched.pop(key, None)
                elif fill.refusal is not None:
                    self._mismatched[key] = None
                    self._mismatched.move_to_end(key)
                    while len(self._mismatched) > MISMATCHES_REMEMBERED:
                        self._mismatched.popitem(last=False)
                if not fill.started.done():
                    fill.started.set_result(False)
                if not fill.done.done():
                    fill.done.set_result(entry)
                fill.advance(0)  # wakes the readers following it: done, or failed

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fill

    async def _fill(self, key: ContentKey, download: Download, fill: _Fill) -> _Entry | None:
        directory = self._open()
        async with download(key.path) as response:
            size = response.content_length
            if response.status != 200 or size is None:
                return None
            if size != fill.expected.size:
                # Told by the length alone: every request gets the refusal at once, none
                # a broken download. Read through (not kept) to name what it holds.
                self._mismatch(key, fill, await _digest_of(response.content))
                return None
            if not self._reserve(size):
                return None
            final = directory / key.file_name()
            fill.path = final.with_suffix(".part")
            fill.size = size
            fill.headers = [
                (k.lower(), v) for k, v in response.raw_headers if k.lower() in _KEPT_HEADERS
            ]
            kept = False
            try:
                digest = await self._copy(response.content, fill)
                if fill.written != size:
                    return None  # MLflow's answer ended early: never keep a short file
                if FileDigest(digest, size) != fill.expected:
                    self._mismatch(key, fill, FileDigest(digest, size))
                    return None
                # Renamed without awaiting anything, and the fill's path with it: a
                # request that finds the fill under way opens whichever name is current.
                os.replace(fill.path, final)
                fill.path = final
                kept = True
            finally:
                if not kept:
                    self._set_bytes(self._bytes - size)
                    fill.path.unlink(missing_ok=True)
            return _Entry(final, size, f'"sha256-{digest}"', fill.headers)

    def _mismatch(self, key: ContentKey, fill: _Fill, found: FileDigest) -> None:
        """The file MLflow served is not the one the manifest names: refused, with both
        digests, to every request waiting for this fill."""
        expected = fill.expected
        fill.refusal = integrity_refusal(
            key.path,
            key.version,
            f"the artifact store's copy has SHA-256 {found.sha256} ({found.size} bytes), "
            f"the version's manifest records {expected.sha256} ({expected.size} bytes)",
        )
        log.warning(
            "artifact cache refused a file that does not match its version's manifest",
            extra={
                "fields": {
                    "workspace": key.workspace,
                    "model": key.version.name,
                    "version": key.version.version,
                    "path": key.path,
                    "expected_sha256": expected.sha256,
                    "found_sha256": found.sha256,
                }
            },
        )

    async def _copy(self, content: aiohttp.StreamReader, fill: _Fill) -> str:
        """Write the stream to the fill's file (0600), returning its SHA-256; the file
        is there (empty) when ``fill.started`` is set."""
        digest = hashlib.sha256()
        descriptor = os.open(fill.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fill.started.set_result(True)
        with os.fdopen(descriptor, "wb") as out:

            def write(block: bytes, out: BinaryIO = out) -> None:
                digest.update(block)
                out.write(block)
                out.flush()  # readers following the fill read the file, not this buffer

            buffer = bytearray()
            async for chunk in content.iter_chunked(FILL_BUFFER):
                buffer += chunk
                if len(buffer) >= FILL_BUFFER:
                    await anyio.to_thread.run_sync(write, bytes(buffer))
                    fill.advance(len(buffer))
                    buffer.clear()
            if buffer:
                await anyio.to_thread.run_sync(write, bytes(buffer))
                fill.advance(len(buffer))
        return digest.hexdigest()

    def _reserve(self, size: int) -> bool:
        """Make room for ``size`` more bytes, removing the least recently used files not
        being served; False when it cannot be made."""
        if size > self.max_bytes:
            return False
        for key in list(self._entries):
            if self._bytes + size <= self.max_bytes:
                break
            entry = self._entries[key]
            if entry.serving:
                continue
            del self._entries[key]
            entry.path.unlink(missing_ok=True)
            self._set_bytes(self._bytes - entry.size)
            self.metrics.artifact_cache_evictions.inc()
        if self._bytes + size > self.max_bytes:
            return False
        self._set_bytes(self._bytes + size)
        return True

    def _set_bytes(self, value: int) -> None:
        self._bytes = value
        self.metrics.artifact_cache_bytes.set(value)


async def _digest_of(content: aiohttp.StreamReader) -> FileDigest:
    """SHA-256 and size of a stream, read through without keeping it."""
    digest = hashlib.sha256()
    size = 0
    async for chunk in content.iter_chunked(FILL_BUFFER):
        digest.update(chunk)
        size += len(chunk)
    return FileDigest(digest.hexdigest(), size)


def _plain(scope: Scope) -> bool:
    """A request for the whole file, unconditionally (no Range, no validator)."""
    asked = {name for name, _ in scope["headers"]}
    return not asked & {b"range", b"if-range", b"if-none-match"}


def _matches(scope: Scope, etag: str) -> bool:
    """Whether the request's If-None-Match names ``etag`` (or ``*``)."""
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            tags = [tag.strip().removeprefix("W/") for tag in value.decode("latin-1").split(",")]
            if "*" in tags or etag in tags:
                return True
    return False
