"""The artifact cache and frozen version files, in front of the real MLflow: a READY
version's files are fetched from MLflow once and served from the gateway's disk with a
content ETag and ranges, and they can no longer be overwritten or deleted. (What the
cache does with files that do not match their manifest: test_artifact_cache_integrity.py.)"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import RunningGateway, ServeGateway, gateway_settings, sqlite_gateway
from tests.integration.artifact_cache_support import (
    API,
    FILES,
    MIB,
    counter,
    keyed_client,
    logged_files,
    ok,
    registered,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def running(
    mlflow_server: MlflowProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    home = tmp_path_factory.mktemp("artifact-cache")
    with sqlite_gateway(home, mlflow_server.url, artifact_cache_max_bytes=5 * MIB) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def client(running: RunningGateway) -> Iterator[httpx.Client]:
    with keyed_client(running) as http:
        yield http


def test_a_version_file_is_served_from_disk_with_its_digest_as_etag(
    running: RunningGateway, client: httpx.Client, mlflow_server: MlflowProcess
) -> None:
    content = secrets.token_bytes(MIB + 17)
    _, _, path = registered(client, {"model.pkl": content, "MLmodel": b"flavors: {}\n"})
    direct = httpx.get(
        f"{mlflow_server.url}/api/2.0/mlflow-artifacts/artifacts/{path}/model.pkl", timeout=30
    )
    fills = counter(running, "hokusai_artifact_cache_fills", "kept")
    hits = counter(running, "hokusai_artifact_cache_requests", "hit")

    first = client.get(f"{FILES}{path}/model.pkl")
    second = client.get(f"{FILES}{path}/model.pkl")

    assert first.content == second.content == direct.content == content
    # The first download followed the fill, before the digest was known; later ones
    # carry it.
    assert "etag" not in first.headers
    assert second.headers["etag"] == f'"sha256-{hashlib.sha256(content).hexdigest()}"'
    assert first.headers["content-length"] == second.headers["content-length"]
    assert first.headers["content-type"] == direct.headers["content-type"]
    assert first.headers["content-disposition"] == direct.headers["content-disposition"]
    assert first.headers["accept-ranges"] == "bytes"
    assert counter(running, "hokusai_artifact_cache_fills", "kept") == fills + 1
    assert counter(running, "hokusai_artifact_cache_requests", "hit") == hits + 1
    cached = list(running.gateway.settings.resolved_artifact_cache_dir.glob("*/*"))
    assert cached and all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in cached)


def test_concurrent_misses_fill_once(running: RunningGateway, client: httpx.Client) -> None:
    content = secrets.token_bytes(2 * MIB)
    _, _, path = registered(client, {"model.pkl": content})
    fills = counter(running, "hokusai_artifact_cache_fills", "kept")

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        bodies = list(pool.map(lambda _: client.get(f"{FILES}{path}/model.pkl"), range(12)))

    assert all(b.status_code == 200 and b.content == content for b in bodies)
    assert counter(running, "hokusai_artifact_cache_fills", "kept") == fills + 1


def test_conditional_and_range_requests(client: httpx.Client) -> None:
    content = bytes(range(256)) * 400
    _, _, path = registered(client, {"weights.bin": content})
    url = f"{FILES}{path}/weights.bin"
    assert client.get(url).content == content  # the fill
    etag = client.get(url).headers["etag"]

    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other", ' + etag}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).content == content

    part = client.get(url, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == content[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(content)}"
    tail = client.get(url, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == content[-100:]
    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"sha256-old"'})
    assert stale.status_code == 200 and stale.content == content
    fresh = client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == content[:10]
    beyond = client.get(url, headers={"Range": f"bytes={len(content) + 5}-"})
    assert beyond.status_code == 416


def test_files_of_a_ready_version_cannot_change(
    client: httpx.Client, mlflow_server: MlflowProcess
) -> None:
    content = secrets.token_bytes(4096)
    name, version, path = registered(client, {"model.pkl": content})
    run_root = path.rsplit("/", 1)[0]
    experiment_dir = run_root.rsplit("/", 2)[0]

    for request in (
        client.build_request("PUT", f"{FILES}{path}/model.pkl", content=b"tampered"),
        client.build_request("PUT", f"{FILES}{path}/extra.py", content=b"import os"),
        client.build_request("DELETE", f"{FILES}{path}/model.pkl"),
        client.build_request("DELETE", f"{FILES}{run_root}"),
        client.build_request("DELETE", f"{FILES}{experiment_dir}"),
    ):
        refused = client.send(request)
        assert refused.status_code == 400, (request.method, request.url, refused.text)
        body = refused.json()
        assert body["error_code"] == "INVALID_STATE"
        assert "Nothing was changed" in body["message"]
    assert (
        f"version {version} of model '{name}'"
        in client.send(client.build_request("DELETE", f"{FILES}{path}/model.pkl")).json()["message"]
    )

    direct = httpx.get(
        f"{mlflow_server.url}/api/2.0/mlflow-artifacts/artifacts/{path}/model.pkl", timeout=30
    )
    assert direct.content == content
    listing = httpx.get(
        f"{mlflow_server.url}/api/2.0/mlflow-artifacts/artifacts", params={"path": path}
    ).json()
    assert [f["path"] for f in listing["files"]] == ["model.pkl"]


def test_files_not_of_a_version_are_proxied_and_writable(
    running: RunningGateway, client: httpx.Client
) -> None:
    _, path = logged_files(client, {"notes.txt": b"first"})
    passed = counter(running, "hokusai_artifact_cache_fills", "kept")

    assert client.get(f"{FILES}{path}/notes.txt").content == b"first"
    ok(client.put(f"{FILES}{path}/notes.txt", content=b"second"))
    assert client.get(f"{FILES}{path}/notes.txt").content == b"second"
    assert counter(running, "hokusai_artifact_cache_fills", "kept") == passed


def test_a_deleted_version_frees_its_files(client: httpx.Client) -> None:
    name, version, path = registered(client, {"model.pkl": b"v1 bytes"})
    assert client.get(f"{FILES}{path}/model.pkl").content == b"v1 bytes"  # now cached

    ok(
        client.request(
            "DELETE", f"{API}/model-versions/delete", json={"name": name, "version": version}
        )
    )
    ok(client.put(f"{FILES}{path}/model.pkl", content=b"rewritten"))

    assert client.get(f"{FILES}{path}/model.pkl").content == b"rewritten"


def test_least_recently_used_files_leave_first(
    running: RunningGateway, client: httpx.Client
) -> None:
    """The limit is 5 MiB: three 2 MiB files cannot all stay."""
    contents = [secrets.token_bytes(2 * MIB) for _ in range(3)]
    paths = [registered(client, {"model.pkl": content})[2] for content in contents]
    evictions = counter(running, "hokusai_artifact_cache_evictions", "")

    for path, content in zip(paths, contents, strict=True):
        assert client.get(f"{FILES}{path}/model.pkl").content == content
    # All three were served; the cache holds at most the limit.
    assert counter(running, "hokusai_artifact_cache_evictions", "") >= evictions + 1
    held = sum(
        f.stat().st_size for f in running.gateway.settings.resolved_artifact_cache_dir.glob("*/*")
    )
    assert held <= 5 * MIB
    assert client.get(f"{FILES}{paths[0]}/model.pkl").content == contents[0]


def test_a_file_larger_than_the_cache_is_proxied(
    running: RunningGateway, client: httpx.Client
) -> None:
    content = secrets.token_bytes(6 * MIB)
    _, _, path = registered(client, {"model.pkl": content})
    passed = counter(running, "hokusai_artifact_cache_requests", "passed")

    assert client.get(f"{FILES}{path}/model.pkl").content == content
    assert counter(running, "hokusai_artifact_cache_requests", "passed") == passed + 1


def test_the_cache_directory_goes_with_the_gateway(
    mlflow_server: MlflowProcess, serve_gateway: ServeGateway, tmp_path: Path
) -> None:
    settings = gateway_settings(f"sqlite:///{tmp_path / 'h.db'}", mlflow_server.url, tmp_path)
    stale = settings.resolved_artifact_cache_dir / "999999999-deadbeef"
    stale.mkdir(parents=True)
    (stale / "left-behind").write_bytes(b"x")
    gateway = serve_gateway(settings)
    key = gateway.create_key(Scope.WRITE)
    with httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        _, _, path = registered(http, {"model.pkl": b"kept a while"})
        assert http.get(f"{FILES}{path}/model.pkl").content == b"kept a while"
    assert not stale.exists()
    assert len(list(settings.resolved_artifact_cache_dir.iterdir())) == 1
    gateway.stop()  # stopped here: what a stop leaves behind is what this test checks
    assert list(settings.resolved_artifact_cache_dir.iterdir()) == []


def test_no_request_reaches_other_workspaces_files(client: httpx.Client) -> None:
    """The default workspace's key may not list or delete MLflow's ``workspaces``
    directory, which holds every other workspace's files."""
    listing = client.get(FILES.rstrip("/"), params={"path": "workspaces"})
    deleting = client.delete(f"{FILES}workspaces")
    other = client.put(f"{FILES}workspaces/team-b/1/x/artifacts/f", content=b"x")

    for refused in (listing, deleting, other):
        assert refused.status_code == 403, refused.text
        assert refused.json()["error_code"] == "PERMISSION_DENIED"
