"""The gateway's own reads of MLflow's artifact store, against a real MLflow: a check
reads a small file, tells whether one is there without reading it, and refuses one too
large to be what it reads (a manifest or a signature) before holding it in memory."""

from __future__ import annotations

import asyncio
import os
import uuid

import httpx
import pytest

from hokusai.errors import ErrorCode
from hokusai.gateway.errors import GatewayError
from hokusai.gateway.mlflow_probe import ARTIFACTS, MAX_ARTIFACT_BYTES, MlflowProbe
from hokusai.server.mlflow_process import MlflowProcess

pytestmark = pytest.mark.integration


def test_the_probe_reads_small_files_and_refuses_large_ones(mlflow_server: MlflowProcess) -> None:
    folder = f"probe-{uuid.uuid4().hex}"
    small, large = b'{"format": "hokusai-manifest/1"}', os.urandom(MAX_ARTIFACT_BYTES + 1)
    for name, content in (("small.json", small), ("large.bin", large)):
        stored = httpx.put(f"{mlflow_server.url}{ARTIFACTS}{folder}/{name}", content=content)
        assert stored.status_code == 200, stored.text

    async def ask() -> None:
        async with httpx.AsyncClient() as client:
            probe = MlflowProbe(client, mlflow_server.url)
            about = "a test's question"
            assert await probe.artifact("default", f"{folder}/small.json", about=about) == small
            assert await probe.artifact("default", f"{folder}/absent.json", about=about) is None
            assert await probe.has_artifact("default", f"{folder}/large.bin", about=about)
            assert not await probe.has_artifact("default", f"{folder}/absent.bin", about=about)
            with pytest.raises(GatewayError) as refused:
                await probe.artifact("default", f"{folder}/large.bin", about=about)
            assert refused.value.error_code is ErrorCode.TEMPORARILY_UNAVAILABLE
            assert "too large" in refused.value.message

    asyncio.run(ask())
