"""A 256 MiB artifact up and down through nginx (TLS), a replica and MLflow into S3: it
streams, so the replicas' memory stays bounded while it passes."""

from __future__ import annotations

import hashlib
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from stack.processes import rss_bytes
from stack.topology import BUCKET, Topology

from hokusai.keys.scopes import Scope
from tests.topology.support import ARTIFACTS_API, client
from tests.topology.support import pytestmark as marks

pytestmark = marks

MIB = 1024 * 1024
SIZE = 256 * MIB
# What a replica may grow by while the file passes: a small multiple of its buffers, far
# below the file's size (a replica that held the body would grow by 256 MiB or more).
MEMORY_BOUND = 128 * MIB


class MemorySampler:
    """The largest RSS of each process, sampled every 100 ms while the transfer runs."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.before = {pid: rss_bytes(pid) for pid in pids}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_bytes(pid))

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for pid in self.pids:  # the kernel's own peak catches what sampling missed
            self.peak[pid] = max(self.peak[pid], rss_bytes(pid, "VmHWM"))

    def growth(self) -> dict[int, int]:
        return {pid: self.peak[pid] - self.before[pid] for pid in self.pids}


def write_file(path: Path) -> str:
    block = hashlib.sha256(b"seed").digest() * (MIB // 32)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for i in range(SIZE // MIB):
            chunk = i.to_bytes(4, "big") + block[4:]
            out.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.reliability
def test_256_mib_up_and_down_with_bounded_replica_memory(
    topology: Topology, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    expected = write_file(source)
    key = topology.create_key(Scope.WRITE, "artifacts")
    path = f"topology/{uuid.uuid4().hex}/big.bin"
    pids = [gateway.pid for gateway in topology.gateways]

    with client(topology.url, str(topology.ca_bundle), key, timeout=300) as http:
        with MemorySampler(pids) as upload_memory, source.open("rb") as body:
            uploaded = http.put(ARTIFACTS_API + path, content=body)
        assert uploaded.status_code == 200, uploaded.text

        digest, received = hashlib.sha256(), 0
        with (
            MemorySampler(pids) as download_memory,
            http.stream("GET", ARTIFACTS_API + path) as response,
        ):
            assert response.status_code == 200
            for chunk in response.iter_raw(MIB):
                digest.update(chunk)
                received += len(chunk)
    assert received == SIZE
    assert digest.hexdigest() == expected

    s3: Any = topology.s3_client()
    stored = s3.head_object(Bucket=BUCKET, Key=f"artifacts/{path}")
    assert stored["ContentLength"] == SIZE

    for what, sampler in (("upload", upload_memory), ("download", download_memory)):
        grown = {pid: f"{growth / MIB:.1f} MiB" for pid, growth in sampler.growth().items()}
        print(f"{what}: replica RSS growth {grown}")  # the figure, with -s
        for pid, growth in sampler.growth().items():
            assert growth < MEMORY_BOUND, (
                f"{what}: replica {pid} grew by {growth / MIB:.0f} MiB "
                f"({sampler.before[pid] / MIB:.0f} → {sampler.peak[pid] / MIB:.0f} MiB)"
            )
