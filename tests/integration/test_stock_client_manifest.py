"""A version registered by the stock MLflow client gets its manifest from the gateway: the
digests of the files as they streamed through it, recorded before the client has its
answer, so the SDK checks such a version like one it registered itself.

Files are changed where an attacker with access to the artifact store would change them:
in MLflow's artifact directory on disk, behind the gateway's back."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select

from hokusai import IntegrityError
from hokusai.db.schema import events
from hokusai.integrity import (
    TAG_MANIFEST_DIGEST,
    TAG_SIGNER,
    FileDigest,
    Manifest,
    manifest_of,
    manifest_path,
)
from hokusai.keys.scopes import Scope
from hokusai.sdk.registry import ModelRegistry
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.signing import SignatureError, public_key
from tests.helpers import MLFLOW_API, RunningGateway, assert_error, auth, reread_tracking_uri
from tests.integration.artifact_cache_support import API, FILES, logged_files, ok
from tests.signing_keys import key_pair

pytestmark = pytest.mark.integration

FEATURES = np.random.default_rng(3).normal(size=(120, 4))
LABELS = (FEATURES[:, 0] - FEATURES[:, 2] > 0).astype(int)


@pytest.fixture
def writer(gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> str:
    """A write key the stock client uses, configured as its users configure it."""
    key = gateway.create_key(Scope.WRITE)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", gateway.tracking_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", key)
    reread_tracking_uri()
    return key


def log_model() -> str:
    """A model logged by the stock client; its ``models:/m-…`` URI."""
    model = LogisticRegression().fit(FEATURES, LABELS)
    experiment_id = mlflow.create_experiment(f"stock-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=experiment_id):
        return str(mlflow.sklearn.log_model(model, name="model").model_uri)


def register(gateway: RunningGateway, key: str) -> dict[str, Any]:
    """A version the stock client registered, as MLflow answers about it."""
    name = f"stock-{uuid.uuid4().hex[:8]}"
    created = mlflow.register_model(log_model(), name)
    return version_through(gateway, key, name, created.version)


def version_through(gateway: RunningGateway, key: str, name: str, number: str) -> dict[str, Any]:
    answer = httpx.get(
        gateway.url + MLFLOW_API + "model-versions/get",
        params={"name": name, "version": number},
        headers=auth(key),
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["model_version"])


def logged_model_files(gateway: RunningGateway, key: str, source: str) -> str:
    """The artifact path of the files of logged model ``source``, as clients name it."""
    answer = httpx.get(
        gateway.url + MLFLOW_API + "logged-models/" + source.removeprefix("models:/"),
        headers=auth(key),
    )
    assert answer.status_code == 200, answer.text
    uri = answer.json()["model"]["info"]["artifact_uri"]
    return str(uri).removeprefix("mlflow-artifacts:").strip("/")


def files_on_disk(mlflow_server: MlflowProcess, source: str) -> Path:
    """The directory on MLflow's disk that holds the files of logged model ``source``."""
    model_id = source.removeprefix("models:/")
    found = [p for p in Path(mlflow_server.artifacts_destination).rglob(model_id) if p.is_dir()]
    assert len(found) == 1, found
    return found[0] / "artifacts"


def tags_of(version: dict[str, Any]) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in version.get("tags", [])}


def test_a_stock_client_version_gets_a_manifest_that_verifies(
    gateway: RunningGateway, writer: str, mlflow_server: MlflowProcess, tmp_path: Path
) -> None:
    version = register(gateway, writer)
    name = version["name"]
    assert version["source"].startswith("models:/")  # MLflow 3: a logged model
    recorded = tags_of(version)[TAG_MANIFEST_DIGEST]
    files = files_on_disk(mlflow_server, version["source"])
    # The manifest names every file MLflow stored, with the digest of its bytes on disk,
    # and its own digest is the one the version records.
    stored = Path(str(files) + ".manifest.json").read_bytes()
    manifest = Manifest.from_json(stored)
    assert manifest == manifest_of(files)
    assert manifest.digest == recorded
    assert {"MLmodel", "requirements.txt"} <= set(manifest.files)

    # The files and the manifest of a READY version never change through the gateway.
    location = logged_model_files(gateway, writer, version["source"])
    for path in (f"{location}/MLmodel", manifest_path(location)):
        overwrite = httpx.put(
            gateway.url + "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/" + path,
            content=b"changed",
            headers=auth(writer),
        )
        assert_error(overwrite, 400, "INVALID_STATE", "READY")
    assert Manifest.from_json(Path(str(files) + ".manifest.json").read_bytes()) == manifest

    # The event of the version's creation, written before the client had its answer,
    # carries the digest.
    with gateway.gateway.engine.connect() as conn:
        payloads = conn.execute(
            select(events.c.payload).where(
                events.c.type == "model_version.created", events.c.model_name == name
            )
        ).all()
    [payload] = [json.loads(row.payload) for row in payloads]
    assert payload["data"]["tags"][TAG_MANIFEST_DIGEST] == recorded

    with ModelRegistry(api_key=writer, api_url=gateway.url, max_retry_time=5) as registry:
        loaded = registry.load_model(f"{name}/{version['version']}", allow_pickle=True)
        assert list(loaded.predict(FEATURES[:5])) == list(
            LogisticRegression().fit(FEATURES, LABELS).predict(FEATURES[:5])
        )


def test_a_byte_changed_in_a_stock_client_version_is_refused(
    gateway: RunningGateway, writer: str, mlflow_server: MlflowProcess, tmp_path: Path
) -> None:
    """Changed on MLflow's disk before anyone read it: refused, with the file named."""
    version = register(gateway, writer)
    files = files_on_disk(mlflow_server, version["source"])
    model_file = next(p for p in files.rglob("*") if p.is_file() and p.name != "MLmodel")
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_file.write_bytes(bytes(data))
    with (
        ModelRegistry(api_key=writer, api_url=gateway.url, max_retry_time=5) as registry,
        pytest.raises(IntegrityError) as refused,
    ):
        registry.download_model(f"{version['name']}/{version['version']}", tmp_path / "pulled")
    relative = model_file.relative_to(files).as_posix()
    # Named by the SDK's check, or by the gateway's cache refusing the same file first.
    assert any(relative in problem for problem in refused.value.problems), refused.value
    assert not (tmp_path / "pulled").exists() or not any((tmp_path / "pulled").iterdir())


def test_a_file_the_gateway_never_saw_leaves_the_version_without_a_manifest(
    gateway: RunningGateway, writer: str, mlflow_server: MlflowProcess, tmp_path: Path
) -> None:
    model_uri = log_model()
    name = f"stock-{uuid.uuid4().hex[:8]}"
    files = files_on_disk(mlflow_server, model_uri)
    (files / "added-behind-the-gateway.py").write_text("print('not registered')\n")
    created = mlflow.register_model(model_uri, name)

    version = version_through(gateway, writer, name, created.version)
    assert TAG_MANIFEST_DIGEST not in tags_of(version)
    assert not Path(str(files) + ".manifest.json").exists()
    with (
        ModelRegistry(api_key=writer, api_url=gateway.url, max_retry_time=5) as registry,
        pytest.raises(IntegrityError, match="records no manifest"),
    ):
        registry.download_model(f"{name}/{created.version}", tmp_path / "pulled")


def test_an_empty_file_is_one_of_the_files_the_gateway_vouches_for(
    gateway: RunningGateway, writer: str
) -> None:
    """An empty file is uploaded with no body at all; it is in the manifest all the same."""
    files = {"MLmodel": b"flavors: {}\n", "empty.txt": b""}
    with httpx.Client(base_url=gateway.url, headers=auth(writer), timeout=60) as client:
        run_id, path = logged_files(client, files)
        name = f"raw-{uuid.uuid4().hex[:8]}"
        ok(client.post(f"{API}/registered-models/create", json={"name": name}))
        created = ok(
            client.post(
                f"{API}/model-versions/create",
                json={"name": name, "source": f"mlflow-artifacts:/{path}", "run_id": run_id},
            )
        )["model_version"]
        version = version_through(gateway, writer, name, created["version"])  # type: ignore[index]
        stored = client.get(f"{FILES}{manifest_path(path)}")
    assert stored.status_code == 200, stored.text
    manifest = Manifest.from_json(stored.content)
    assert manifest.digest == tags_of(version)[TAG_MANIFEST_DIGEST]
    assert manifest.files["empty.txt"] == FileDigest(hashlib.sha256(b"").hexdigest(), 0)
    assert set(manifest.files) == set(files)


def test_a_version_that_records_its_own_manifest_keeps_it(
    gateway: RunningGateway, writer: str, tmp_path: Path
) -> None:
    """The SDK's manifest (sent with the version's creation) is not replaced."""
    name = f"sdk-{uuid.uuid4().hex[:8]}"
    model = LogisticRegression().fit(FEATURES, LABELS)
    with ModelRegistry(api_key=writer, api_url=gateway.url, max_retry_time=5) as registry:
        result = registry.register_baseline(model, "lead_scoring", name, alias=None)
        version = registry.get_model_version(f"{name}/{result.version}")
        registry.download_model(f"{name}/{result.version}", tmp_path / "pulled")
    assert manifest_of(tmp_path / "pulled").digest == version.tags[TAG_MANIFEST_DIGEST]
    answer = httpx.get(
        gateway.url
        + "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/"
        + manifest_path(version.source.removeprefix("mlflow-artifacts:").strip("/")),
        headers=auth(writer),
    )
    assert Manifest.from_json(answer.content).digest == version.tags[TAG_MANIFEST_DIGEST]


def test_a_stock_client_version_can_be_signed_and_verified(
    gateway: RunningGateway, writer: str, tmp_path: Path
) -> None:
    """Signed after registration with the SDK: its files are found through the logged
    model, as they are for the manifest."""
    version = register(gateway, writer)
    reference = f"{version['name']}/{version['version']}"
    pair, stranger = key_pair(), key_pair()
    with ModelRegistry(api_key=writer, api_url=gateway.url, max_retry_time=5) as registry:
        signed = registry.sign_version(reference, pair.private_pem)
        assert signed.tags[TAG_SIGNER] == public_key(pair.public_pem).fingerprint
        assert (
            registry.verify_signature(reference, trusted_keys=[pair.public_pem])
            == (signed.tags[TAG_SIGNER])
        )
        with pytest.raises(SignatureError) as refused:
            registry.verify_signature(reference, trusted_keys=[stranger.public_pem])
        assert refused.value.problem == "untrusted"
        registry.download_model(
            reference, tmp_path / "pulled", verify="signature", trusted_keys=[pair.public_pem]
        )
    assert (tmp_path / "pulled" / "MLmodel").is_file()
