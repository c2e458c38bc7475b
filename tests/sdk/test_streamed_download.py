"""A model file comes down written as it arrives and hashed on the way: the digest is the
one of the bytes written, a connection broken halfway is retried from the start (the
file is not left half written, nor written twice over), and a body is never held whole.

The server is a small loopback HTTP server standing in for the gateway's artifact route:
what it does (break a body after half of it) is what a real one cannot be made to do."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from hokusai.integrity import BackgroundDigest, FileDigest, file_digest
from hokusai.sdk.artifacts import download_directory
from hokusai.sdk.config import ClientConfig
from hokusai.sdk.transport import Transport

CONTENT = os.urandom(3 * 1024 * 1024 + 17)  # more than one piece, not a whole number


class Store(http.server.BaseHTTPRequestHandler):
    """Lists one file, ``model/weights.bin``; the first download of it breaks halfway."""

    served: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        if "artifacts?" in self.path or self.path.endswith("/artifacts"):
            body = json.dumps(
                {"files": [{"path": "weights.bin", "is_dir": False, "file_size": len(CONTENT)}]}
            ).encode()
            self._answer(body, len(body))
            return
        Store.served.append(len(Store.served))
        if len(Store.served) == 1:
            # The whole length announced, half of it sent, then the connection closes.
            self._answer(CONTENT[: len(CONTENT) // 2], len(CONTENT))
            self.close_connection = True
            return
        self._answer(CONTENT, len(CONTENT))

    def _answer(self, body: bytes, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def store() -> Iterator[str]:
    Store.served = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_download_broken_halfway_is_written_again_from_the_start(
    store: str, tmp_path: Path
) -> None:
    config = ClientConfig(api_url=store, api_key="hk_live_unused")
    transport = Transport(config, timeout=10, max_retry_time=10)
    try:
        digests = download_directory(transport, "model", tmp_path / "model")
    finally:
        transport.close()
    written = tmp_path / "model" / "weights.bin"
    assert len(Store.served) == 2, "the broken download was tried again"
    assert written.read_bytes() == CONTENT
    expected = FileDigest(hashlib.sha256(CONTENT).hexdigest(), len(CONTENT))
    assert digests == {"weights.bin": expected}
    assert file_digest(written) == expected


def test_without_digests_nothing_is_hashed(store: str, tmp_path: Path) -> None:
    Store.served.append(0)  # no broken first answer this time
    config = ClientConfig(api_url=store, api_key="hk_live_unused")
    transport = Transport(config, timeout=10, max_retry_time=10)
    try:
        digests = download_directory(transport, "model", tmp_path / "model", digest=False)
    finally:
        transport.close()
    assert digests == {}
    assert (tmp_path / "model" / "weights.bin").read_bytes() == CONTENT


def test_a_background_digest_is_the_digest_of_every_piece() -> None:
    pieces = [os.urandom(n) for n in (0, 1, 4096, 1024 * 1024, 7)]
    digest = BackgroundDigest()
    for piece in pieces:
        digest.update(piece)
    whole = b"".join(pieces)
    assert digest.finish() == FileDigest(hashlib.sha256(whole).hexdigest(), len(whole))
    assert BackgroundDigest().finish() == FileDigest(hashlib.sha256(b"").hexdigest(), 0)
