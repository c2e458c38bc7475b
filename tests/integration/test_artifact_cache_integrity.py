"""The artifact cache serves only verified content: a READY version's file is kept and
served from the gateway's disk only when it matches the version's manifest, itself
checked against the version's ``hokusai.manifest_digest`` tag.

The changes are made where an attacker with access to the artifact store would make
them: in MLflow's artifact directory on disk, behind the gateway's back, before the
first read through the gateway. A real MLflow server, a real gateway, over sockets."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sklearn.linear_model import LogisticRegression

from hokusai.integrity import IntegrityError, Manifest, manifest_path
from hokusai.keys.scopes import Scope
from hokusai.sdk.registry import ModelRegistry
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import RunningGateway, sqlite_gateway
from tests.integration.artifact_cache_support import (
    FILES,
    MIB,
    counter,
    keyed_client,
    registered,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def running(
    mlflow_server: MlflowProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    home = tmp_path_factory.mktemp("artifact-cache-integrity")
    with sqlite_gateway(home, mlflow_server.url, artifact_cache_max_bytes=64 * MIB) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def client(running: RunningGateway) -> Iterator[httpx.Client]:
    with keyed_client(running) as http:
        yield http


def on_disk(mlflow_server: MlflowProcess, path: str) -> Path:
    """Where MLflow stores the artifact ``path`` of the default workspace."""
    stored = Path(mlflow_server.artifacts_destination) / path
    assert stored.exists(), stored
    return stored


def cached_files(running: RunningGateway) -> set[Path]:
    return set(running.gateway.settings.resolved_artifact_cache_dir.glob("*/*"))


def flip_a_byte(stored: Path) -> None:
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))


def named(path: str) -> str:
    """An artifact path as the gateway names it: relative to the workspace's root."""
    return path.removeprefix("workspaces/default/")


def refusal(response: httpx.Response) -> str:
    """The message of the cache's integrity refusal (asserting it is one)."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error_code"] == "INVALID_STATE", body
    assert "failed its integrity check" in body["message"]
    assert "Nothing was served" in body["message"]
    return str(body["message"])


@pytest.fixture
def sdk(running: RunningGateway) -> Iterator[ModelRegistry]:
    key = running.create_key(Scope.PROMOTE)
    with ModelRegistry(api_key=key, api_url=running.url, max_retry_time=10) as registry:
        yield registry


def sdk_registered(sdk: ModelRegistry) -> tuple[str, str]:
    """A version registered by the SDK (which records its manifest): (model name, the
    artifact path of its files)."""
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    name = f"sdk-{secrets.token_hex(4)}"
    result = sdk.register_baseline(model, "integrity", name, alias=None)
    return name, result.source.removeprefix("mlflow-artifacts:/").strip("/")


def test_a_version_registered_by_the_sdk_is_served_from_the_cache(
    running: RunningGateway, client: httpx.Client, sdk: ModelRegistry
) -> None:
    _, files = sdk_registered(sdk)
    manifest = Manifest.from_json(client.get(f"{FILES}{manifest_path(files)}").content)
    fills = counter(running, "hokusai_artifact_cache_fills", "kept")
    hits = counter(running, "hokusai_artifact_cache_requests", "hit")

    for name, expected in manifest.files.items():
        first = client.get(f"{FILES}{files}/{name}")
        again = client.get(f"{FILES}{files}/{name}")
        assert first.status_code == again.status_code == 200, (name, first.text)
        assert hashlib.sha256(first.content).hexdigest() == expected.sha256, name
        assert again.content == first.content
        assert again.headers["etag"] == f'"sha256-{expected.sha256}"'

    # Every file named (and the manifest, read by the cache) was kept once, then hit.
    assert counter(running, "hokusai_artifact_cache_fills", "kept") == fills + len(manifest.files)
    assert counter(running, "hokusai_artifact_cache_requests", "hit") == hits + len(manifest.files)


def test_a_file_changed_in_the_store_is_refused_and_never_kept(
    running: RunningGateway, client: httpx.Client, mlflow_server: MlflowProcess
) -> None:
    weights = secrets.token_bytes(3 * MIB)
    mlmodel = b"flavors: {}\n"
    name, version, path = registered(client, {"model.pkl": weights, "MLmodel": mlmodel})
    flip_a_byte(on_disk(mlflow_server, f"{path}/model.pkl"))
    changed = on_disk(mlflow_server, f"{path}/model.pkl").read_bytes()
    before = cached_files(running)
    mismatched = counter(running, "hokusai_artifact_cache_fills", "mismatched")
    url = f"{FILES}{path}/model.pkl"

    # The first download follows the fill as MLflow's bytes arrive: it breaks before its
    # last byte (or, had the fill ended first, is refused). Never the whole wrong file.
    try:
        first = client.get(url)
    except httpx.TransportError:
        pass
    else:
        refusal(first)

    message = refusal(client.get(url))
    assert f"'{named(path)}/model.pkl' of version {version} of model '{name}'" in message
    assert hashlib.sha256(changed).hexdigest() in message
    assert hashlib.sha256(weights).hexdigest() in message
    # A range or conditional request is refused the same way.
    refusal(client.get(url, headers={"Range": "bytes=0-99"}))
    assert counter(running, "hokusai_artifact_cache_fills", "mismatched") >= mismatched + 1
    assert cached_files(running) == before  # nothing of the changed file was kept

    # The version's intact files are still served, and from the cache.
    assert client.get(f"{FILES}{path}/MLmodel").content == mlmodel
    again = client.get(f"{FILES}{path}/MLmodel")
    assert again.content == mlmodel
    assert again.headers["etag"] == f'"sha256-{hashlib.sha256(mlmodel).hexdigest()}"'
    assert len(cached_files(running) - before) >= 1


def test_a_fleet_never_completes_a_changed_file(
    client: httpx.Client, mlflow_server: MlflowProcess
) -> None:
    weights = secrets.token_bytes(4 * MIB)
    _, _, path = registered(client, {"model.pkl": weights})
    flip_a_byte(on_disk(mlflow_server, f"{path}/model.pkl"))

    def download(_: int) -> int | None:
        """The status of a complete answer; None for a broken download."""
        try:
            response = client.get(f"{FILES}{path}/model.pkl")
        except httpx.TransportError:
            return None
        if response.status_code == 400:
            refusal(response)
        return response.status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(download, range(8)))
    assert set(outcomes) <= {None, 400}, outcomes
    assert download(0) == 400


def test_a_file_of_another_length_is_refused_before_anything_is_sent(
    running: RunningGateway, client: httpx.Client, mlflow_server: MlflowProcess
) -> None:
    _, _, path = registered(client, {"model.pkl": b"registered weights"})
    stored = on_disk(mlflow_server, f"{path}/model.pkl")
    stored.write_bytes(stored.read_bytes() + b"; import os")
    before = cached_files(running)

    message = refusal(client.get(f"{FILES}{path}/model.pkl"))
    assert hashlib.sha256(stored.read_bytes()).hexdigest() in message
    assert cached_files(running) == before


@pytest.mark.parametrize("change", ["rewritten", "removed"])
def test_a_version_whose_manifest_does_not_check_is_refused(
    running: RunningGateway, client: httpx.Client, mlflow_server: MlflowProcess, change: str
) -> None:
    name, version, path = registered(client, {"model.pkl": b"weights", "MLmodel": b"m\n"})
    stored = on_disk(mlflow_server, manifest_path(path))
    if change == "rewritten":
        # The attacker changes a file and rewrites the manifest to match it: the
        # version's tag still holds the digest of the registered manifest.
        on_disk(mlflow_server, f"{path}/model.pkl").write_bytes(b"forged!")
        document = json.loads(stored.read_text())
        document["files"]["model.pkl"] = {
            "sha256": hashlib.sha256(b"forged!").hexdigest(),
            "size": 7,
        }
        stored.write_text(json.dumps(document))
    else:
        stored.unlink()
    before = cached_files(running)
    refused = counter(running, "hokusai_artifact_cache_requests", "refused")

    for file in ("model.pkl", "MLmodel"):
        message = refusal(client.get(f"{FILES}{path}/{file}"))
        assert f"'{named(path)}/{file}' of version {version} of model '{name}'" in message
        if change == "rewritten":
            assert "its manifest's digest is sha256:" in message
            assert "the version records sha256:" in message
        else:
            assert f"its manifest {manifest_path(named(path))} is missing" in message
    assert counter(running, "hokusai_artifact_cache_requests", "refused") == refused + 2
    assert cached_files(running) == before


def test_a_version_without_a_manifest_is_proxied_never_cached(
    running: RunningGateway, client: httpx.Client, mlflow_server: MlflowProcess
) -> None:
    content = secrets.token_bytes(MIB)
    _, _, path = registered(client, {"model.pkl": content}, without_manifest_at=mlflow_server.url)
    unverified = counter(running, "hokusai_artifact_cache_requests", "no_manifest")
    fills = sum(
        counter(running, "hokusai_artifact_cache_fills", outcome)
        for outcome in ("kept", "not_kept", "mismatched")
    )
    before = cached_files(running)

    for _ in range(2):
        answer = client.get(f"{FILES}{path}/model.pkl")
        assert answer.status_code == 200 and answer.content == content
        assert not answer.headers.get("etag", "").startswith('"sha256-')  # MLflow's own

    assert counter(running, "hokusai_artifact_cache_requests", "no_manifest") == unverified + 2
    after = sum(
        counter(running, "hokusai_artifact_cache_fills", outcome)
        for outcome in ("kept", "not_kept", "mismatched")
    )
    assert after == fills
    assert cached_files(running) == before


def test_a_file_the_manifest_does_not_name_is_proxied_never_cached(
    running: RunningGateway, client: httpx.Client, mlflow_server: MlflowProcess
) -> None:
    """Proxied rather than refused: the SDK's own check refuses it by name, and a client
    loading with ``verify="none"`` chose to take the store as it is."""
    _, _, path = registered(client, {"model.pkl": b"weights"})
    (on_disk(mlflow_server, path) / "extra.py").write_text("print('not registered')\n")
    passed = counter(running, "hokusai_artifact_cache_requests", "passed")
    before = cached_files(running)

    answer = client.get(f"{FILES}{path}/extra.py")
    assert answer.status_code == 200 and answer.content == b"print('not registered')\n"
    assert counter(running, "hokusai_artifact_cache_requests", "passed") == passed + 1
    assert cached_files(running) == before


def test_the_sdk_loading_a_changed_version_is_told_which_file(
    sdk: ModelRegistry, mlflow_server: MlflowProcess
) -> None:
    name, files = sdk_registered(sdk)
    flip_a_byte(on_disk(mlflow_server, f"{files}/MLmodel"))

    # The gateway's refusal reaches the SDK's user as the SDK's own check would say it
    # (an IntegrityError; `hokusai models pull` exits 8).
    with pytest.raises(IntegrityError) as refused:
        sdk.load_model(f"{name}/1")
    [problem] = refused.value.problems
    assert f"'{named(files)}/MLmodel' of version 1 of model '{name}'" in problem
