"""What each file of a READY version must be, from the version's manifest, for the
artifact cache (``gateway/artifact_cache.py``) to keep only content it has checked.

A registration stores beside the version's files a manifest naming each with its SHA-256
and size, and records the manifest's digest as the version tag
``hokusai.manifest_digest`` (``hokusai.integrity``). The manifest is read from MLflow
once per version, checked against that tag, and remembered (a bounded number of
versions), so a fill costs no further request to MLflow and a hit none at all.

- A manifest that is missing, is not one, or does not match the tag is refused: no file
  of that version is served by the cache. A refusal is not remembered: the next request
  reads the manifest again, so a restored manifest is served at once.
- The manifest file itself is expected to be exactly the bytes that were checked.
- A file the manifest does not name has nothing to be checked against: :meth:`expected`
  answers None and the cache proxies it without keeping it.

The refusals are ``INVALID_STATE`` (:func:`integrity_refusal`), answered as 400: the
stored files are not in the state their version records. Not a 5xx (clients retry those,
and a retry cannot make a changed file right), not 404 (the file is there), not
``PERMISSION_DENIED`` (no key could have it); the gateway's other refusal about a READY
version's files (they cannot change) is ``INVALID_STATE`` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import aiohttp

from hokusai.errors import ErrorCode
from hokusai.gateway.errors import GatewayError
from hokusai.gateway.frozen_artifacts import FrozenVersion
from hokusai.integrity import (
    FileDigest,
    IntegrityError,
    Manifest,
    check_manifest_digest,
    manifest_path,
)

log = logging.getLogger("hokusai.gateway.version_manifests")

# Versions whose checked manifest is remembered. A manifest is about 100 bytes a file:
# a few hundred versions hold a fleet's working set in a few MiB at most.
MANIFESTS_REMEMBERED = 256
# A larger answer is not a manifest this registry wrote (a million files' worth).
MAX_MANIFEST_BYTES = 64 * 1024 * 1024

# MLflow's answer to a ``GET`` of one artifact path (relative to the workspace's root).
Download = Callable[[str], AbstractAsyncContextManager[aiohttp.ClientResponse]]


class _Checked:
    """A manifest that matched its version's tag, and the bytes it was read from."""

    def __init__(self, manifest: Manifest, data: bytes) -> None:
        self.manifest = manifest
        self.own = FileDigest(hashlib.sha256(data).hexdigest(), len(data))


def integrity_refusal(path: str, version: FrozenVersion, problem: str) -> GatewayError:
    """The answer for a file of ``version`` the cache will not serve, ``problem`` saying
    why (see the module's docstring for the code)."""
    return GatewayError(
        ErrorCode.INVALID_STATE,
        f"'{path}' of {version.described()} failed its integrity check: {problem}. "
        "Nothing was served. The artifact store holds something other than what was "
        "registered: do not deploy this version; an operator can restore the files or "
        "register a new version.",
        reason="integrity",
    )


class _Untrusted(Exception):
    """The manifest of a version cannot be trusted; the message says why."""


class VersionManifests:
    """The checked manifests of one gateway process's READY versions."""

    def __init__(self) -> None:
        self._checked: OrderedDict[tuple[str, FrozenVersion], _Checked] = OrderedDict()
        # One read per version at a time: a fleet's first requests share it.
        self._reading: dict[tuple[str, FrozenVersion], asyncio.Task[_Checked]] = {}

    async def expected(
        self, workspace: str, version: FrozenVersion, path: str, download: Download
    ) -> FileDigest | None:
        """What the file ``path`` of ``version`` must be; None when the manifest does not
        name it. Raises :func:`integrity_refusal` when the manifest cannot be trusted."""
        try:
            checked = await self._manifest(workspace, version, download)
        except _Untrusted as untrusted:
            raise integrity_refusal(path, version, str(untrusted)) from None
        if path == manifest_path(version.files):
            return checked.own
        relative = path.removeprefix(version.files + "/")
        if relative == path:
            return None
        return checked.manifest.files.get(relative)

    async def aclose(self) -> None:
        for task in list(self._reading.values()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._checked.clear()

    async def _manifest(
        self, workspace: str, version: FrozenVersion, download: Download
    ) -> _Checked:
        key = (workspace, version)
        checked = self._checked.get(key)
        if checked is not None:
            self._checked.move_to_end(key)
            return checked
        reading = self._reading.get(key)
        if reading is None:
            reading = asyncio.create_task(self._read(key, download))
            self._reading[key] = reading
            reading.add_done_callback(self._forget_reading(key))
        # Shielded: a requester that leaves does not stop the read the others wait for.
        return await asyncio.shield(reading)

    def _forget_reading(
        self, key: tuple[str, FrozenVersion]
    ) -> Callable[[asyncio.Task[_Checked]], None]:
        def done(task: asyncio.Task[_Checked]) -> None:
            self._reading.pop(key, None)
            if not task.cancelled():
                task.exception()  # retrieved: every requester may have left

        return done

    async def _read(self, key: tuple[str, FrozenVersion], download: Download) -> _Checked:
        """The version's manifest from MLflow, checked against its tag and remembered."""
        _, version = key
        assert version.manifest_digest is not None  # versions without one are not cached
        location = manifest_path(version.files)
        try:
            data = await self._download(location, version, download)
            try:
                manifest = Manifest.from_json(data, subject=location)
            except IntegrityError as exc:
                # "it is not a manifest (…)", said of the file by name.
                problem = exc.problems[0].removeprefix("it ")
                raise _Untrusted(f"its manifest {location} {problem}") from None
            try:
                check_manifest_digest(manifest, version.manifest_digest, location)
            except IntegrityError as exc:
                raise _Untrusted(exc.problems[0]) from None
        except _Untrusted as untrusted:
            log.warning(
                "artifact cache refused the files of a version whose manifest does not check",
                extra={
                    "fields": {
                        "model": version.name,
                        "version": version.version,
                        "manifest": location,
                        "problem": str(untrusted),
                    }
                },
            )
            raise
        checked = _Checked(manifest, data)
        self._checked[key] = checked
        while len(self._checked) > MANIFESTS_REMEMBERED:
            self._checked.popitem(last=False)
        return checked

    @staticmethod
    async def _download(location: str, version: FrozenVersion, download: Download) -> bytes:
        """The manifest's bytes; ``TEMPORARILY_UNAVAILABLE`` when MLflow does not give
        them (a retry may succeed), unlike a manifest that is missing."""
        answered = "its answer broke off"
        try:
            async with download(location) as response:
                if response.status == 404:
                    raise _Untrusted(f"its manifest {location} is missing")
                if response.status == 200:
                    data = bytearray()
                    async for chunk in response.content.iter_chunked(1024 * 1024):
                        data += chunk
                        if len(data) > MAX_MANIFEST_BYTES:
                            raise _Untrusted(f"its manifest {location} is too large to be one")
                    return bytes(data)
                answered = f"it answered HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError):
            pass
        raise GatewayError(
            ErrorCode.TEMPORARILY_UNAVAILABLE,
            f"MLflow did not give the manifest of {version.described()}, which its files "
            f"are checked against ({answered}); nothing was served. Retry in a moment.",
            reason="manifest_unavailable",
        )
