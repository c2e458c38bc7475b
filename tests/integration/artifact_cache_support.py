"""What the artifact cache tests share: runs and READY versions made through the gateway
with MLflow's REST API (with or without a digest manifest), and the cache's metrics."""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from collections.abc import Iterator

import httpx

from hokusai.integrity import TAG_MANIFEST_DIGEST, FileDigest, Manifest, manifest_path
from hokusai.keys.scopes import Scope
from tests.helpers import RunningGateway

API = "/api/mlflow/api/2.0/mlflow"
FILES = "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/"
MIB = 1024 * 1024


@contextlib.contextmanager
def keyed_client(running: RunningGateway) -> Iterator[httpx.Client]:
    """A client of ``running`` with a new write key."""
    key = running.create_key(Scope.WRITE)
    with httpx.Client(
        base_url=running.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        yield http


def ok(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 200, response.text
    return response.json() if response.content else {}


def logged_files(client: httpx.Client, files: dict[str, bytes]) -> tuple[str, str]:
    """A run whose artifacts hold ``files`` under ``model/``: (run id, artifact path)."""
    experiment = ok(
        client.post(f"{API}/experiments/create", json={"name": f"cache-{uuid.uuid4().hex}"})
    )["experiment_id"]
    run = ok(client.post(f"{API}/runs/create", json={"experiment_id": experiment}))["run"]
    run_id = run["info"]["run_id"]  # type: ignore[index]
    root = run["info"]["artifact_uri"].split("mlflow-artifacts:", 1)[1].strip("/")  # type: ignore[index]
    for name, content in files.items():
        ok(client.put(f"{FILES}{root}/model/{name}", content=content))
    return run_id, f"{root}/model"


def manifest_of_files(files: dict[str, bytes]) -> Manifest:
    return Manifest(
        {
            name: FileDigest(hashlib.sha256(content).hexdigest(), len(content))
            for name, content in files.items()
        }
    )


def registered(
    client: httpx.Client, files: dict[str, bytes], *, without_manifest_at: str | None = None
) -> tuple[str, str, str]:
    """A READY version holding ``files``: (model name, version, artifact path). Its
    manifest is stored beside the files and its digest tagged on the version, as the SDK's
    registration does; with ``without_manifest_at`` (MLflow's own URL) the version is made
    there, behind the gateway, which would otherwise give it a manifest: a version made
    before manifests existed."""
    run_id, path = logged_files(client, files)
    tags = []
    if without_manifest_at is None:
        document = manifest_of_files(files)
        ok(client.put(f"{FILES}{manifest_path(path)}", content=document.to_json()))
        tags = [{"key": TAG_MANIFEST_DIGEST, "value": document.digest}]
    name = f"cache-{uuid.uuid4().hex[:10]}"
    registry = (
        client
        if without_manifest_at is None
        else httpx.Client(base_url=without_manifest_at + "/api/2.0/mlflow", timeout=30)
    )
    with contextlib.ExitStack() as stack:
        if registry is not client:
            stack.enter_context(registry)
        prefix = API if registry is client else ""
        ok(registry.post(f"{prefix}/registered-models/create", json={"name": name}))
        version = ok(
            registry.post(
                f"{prefix}/model-versions/create",
                json={
                    "name": name,
                    "source": f"mlflow-artifacts:/{path}",
                    "run_id": run_id,
                    "tags": tags,
                },
            )
        )["model_version"]
    assert version["status"] == "READY"  # type: ignore[index]
    return name, version["version"], path  # type: ignore[index]


def counter(running: RunningGateway, metric: str, label: str) -> float:
    text = running.gateway.metrics.render().decode()
    labels = rf'\{{[a-z]+="{label}"\}}' if label else ""
    found = re.search(rf"^{metric}_total{labels} (\S+)$", text, re.MULTILINE)
    assert found, f"{metric}{{{label}}} is not exported"
    return float(found.group(1))
