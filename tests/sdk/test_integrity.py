"""Tamper-evident models: a registration records the digest manifest of the model's files,
and loading refuses files that differ from it, naming them, before anything is loaded.

The changes are made where an attacker with access to the artifact store would make
them: in MLflow's artifact directory on disk, behind the gateway's back.

These are the SDK's own checks, so the gateway in front keeps its artifact cache off: a
caching gateway checks the same files against the same manifest and refuses a changed
one first (tests/integration/test_artifact_cache_integrity.py). The SDK's check is what
stands on every other way to the store."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner, Result

from hokusai import IntegrityError, ModelVersion
from hokusai.cli.main import app
from hokusai.integrity import (
    TAG_MANIFEST_DIGEST,
    Manifest,
    file_digest,
    manifest_of,
    manifest_path,
    verify_directory,
)
from hokusai.keys.scopes import Scope
from hokusai.sdk.registry import ModelRegistry
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import RunningGateway, sqlite_gateway
from tests.sdk.support import ARTIFACTS_API, LeadData, MlflowRest, unique

pytestmark = pytest.mark.integration


def stored_files(mlflow_server: MlflowProcess, source: str) -> Path:
    """The directory on MLflow's disk that holds the files of ``source``."""
    relative = source.removeprefix("mlflow-artifacts:/").strip("/")
    found = [
        path
        for path in Path(mlflow_server.artifacts_destination).rglob(Path(relative).name)
        if path.is_dir() and path.as_posix().endswith(relative)
    ]
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def sdk_gateway(
    mlflow_server: MlflowProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """The SDK tests' gateway, without an artifact cache (see the module's docstring)."""
    home = tmp_path_factory.mktemp("gateway")
    with sqlite_gateway(home, mlflow_server.url, artifact_cache_max_bytes=0) as running:
        yield running


@pytest.fixture
def registered(
    registry: ModelRegistry, lead_model: LogisticRegression, mlflow_server: MlflowProcess
) -> Iterator[tuple[ModelVersion, Path]]:
    """A freshly registered version and its files on MLflow's disk."""
    name = unique("integrity")
    result = registry.register_baseline(lead_model, "lead_scoring", name, alias=None)
    yield (
        registry.get_model_version(f"{name}/{result.version}"),
        stored_files(mlflow_server, result.source),
    )


def test_a_registration_records_the_manifest_of_every_file(
    registered: tuple[ModelVersion, Path], mlflow_rest: MlflowRest
) -> None:
    version, files = registered
    digest = version.tags[TAG_MANIFEST_DIGEST]
    path = manifest_path(version.source.removeprefix("mlflow-artifacts:/"))
    response = mlflow_rest.client.get(f"{ARTIFACTS_API}/{path}")
    assert response.status_code == 200, response.text
    manifest = Manifest.from_json(response.content)
    assert manifest.digest == digest
    on_disk = {p.relative_to(files).as_posix() for p in files.rglob("*") if p.is_file()}
    assert set(manifest.files) == on_disk
    assert "MLmodel" in manifest.files
    assert manifest.files["MLmodel"].size == (files / "MLmodel").stat().st_size


def test_an_untouched_version_loads_and_predicts(
    registered: tuple[ModelVersion, Path],
    registry: ModelRegistry,
    lead_model: LogisticRegression,
    leads: LeadData,
) -> None:
    version, _ = registered
    loaded = registry.load_model(version)
    assert list(loaded.predict(leads.features)) == list(lead_model.predict(leads.features))


def _flip_a_byte(files: Path) -> str:
    target = files / "MLmodel"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    return "MLmodel"


def _add_a_file(files: Path) -> str:
    (files / "extra.py").write_text("print('not registered')\n")
    return "extra.py"


def _remove_a_file(files: Path) -> str:
    (files / "requirements.txt").unlink()
    return "requirements.txt"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (_flip_a_byte, "has SHA-256"),
        (_add_a_file, "is not in the manifest"),
        (_remove_a_file, "is missing"),
    ],
    ids=["byte-flipped", "file-added", "file-removed"],
)
def test_a_changed_version_is_refused_with_the_file_named(
    registered: tuple[ModelVersion, Path],
    registry: ModelRegistry,
    change: Callable[[Path], str],
    complaint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    version, files = registered
    named = change(files)
    # Nothing is deserialized: MLflow's loader must never be reached.
    import mlflow.pyfunc

    def must_not_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model that failed its check was loaded")

    monkeypatch.setattr(mlflow.pyfunc, "load_model", must_not_load)
    with pytest.raises(IntegrityError) as refused:
        registry.load_model(version)
    assert [p for p in refused.value.problems if p.startswith(named) and complaint in p], (
        refused.value.problems
    )
    assert f"'{version.name}'" in str(refused.value)


def test_a_rewritten_manifest_does_not_match_the_version(
    registered: tuple[ModelVersion, Path], registry: ModelRegistry
) -> None:
    version, files = registered
    _flip_a_byte(files)
    # The attacker rewrites the manifest to match: the version's tag still holds the
    # digest of the registered one.
    forged = files.with_name(files.name + ".manifest.json")
    document = json.loads(forged.read_text())
    entry = file_digest(files / "MLmodel")
    document["files"]["MLmodel"] = {"sha256": entry.sha256, "size": entry.size}
    forged.write_text(json.dumps(document))
    assert Manifest.from_json(forged.read_bytes()).files["MLmodel"] == entry
    with pytest.raises(IntegrityError, match="its manifest's digest is"):
        registry.load_model(version)


def test_a_version_without_a_manifest_loads_only_when_asked_to_trust_it(
    registered: tuple[ModelVersion, Path],
    registry: ModelRegistry,
    mlflow_server: MlflowProcess,
    lead_model: LogisticRegression,
    leads: LeadData,
) -> None:
    """A version made behind the gateway's back (straight at MLflow) records no manifest."""
    version, _ = registered
    answer = httpx.post(
        mlflow_server.url + "/api/2.0/mlflow/model-versions/create",
        json={"name": version.name, "source": version.source, "run_id": version.run_id},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    made = answer.json()["model_version"]
    bare = registry.get_model_version(f"{version.name}/{made['version']}")
    assert TAG_MANIFEST_DIGEST not in bare.tags
    with pytest.raises(IntegrityError, match="records no manifest"):
        registry.load_model(bare)
    loaded = registry.load_model(bare, verify="none")
    assert list(loaded.predict(leads.features)) == list(lead_model.predict(leads.features))


# ---- hokusai models pull ----------------------------------------------------------------


def pull(gateway: RunningGateway, *args: str) -> Result:
    env = {
        "HOKUSAI_API_URL": gateway.url,
        "HOKUSAI_API_KEY": gateway.create_key(Scope.READ),
        "COLUMNS": "250",
    }
    return CliRunner().invoke(app, ["models", "pull", *args], env=env)


def test_pull_writes_the_checked_files(
    registered: tuple[ModelVersion, Path], sdk_gateway: RunningGateway, tmp_path: Path
) -> None:
    version, files = registered
    target = tmp_path / "pulled"
    result = pull(sdk_gateway, f"{version.name}/{version.version}", str(target))
    assert result.exit_code == 0, result.output
    assert "every file matches its manifest" in result.output
    verify_directory(target, manifest_of(files), "the pulled files")  # raises on a difference
    assert (target / "MLmodel").read_bytes() == (files / "MLmodel").read_bytes()


def test_pull_of_a_changed_version_writes_nothing_and_exits_8(
    registered: tuple[ModelVersion, Path], sdk_gateway: RunningGateway, tmp_path: Path
) -> None:
    version, files = registered
    _add_a_file(files)
    target = tmp_path / "pulled"
    result = pull(sdk_gateway, f"{version.name}/{version.version}", str(target))
    assert result.exit_code == 8, result.output
    assert "extra.py is not in the manifest" in result.output
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # no scratch directory left either
    # Asked not to check, it writes what the store holds.
    unchecked = pull(sdk_gateway, f"{version.name}/{version.version}", str(target), "--no-verify")
    assert unchecked.exit_code == 0, unchecked.output
    assert (target / "extra.py").exists()


def test_pull_never_writes_into_a_directory_that_has_files(
    registered: tuple[ModelVersion, Path], sdk_gateway: RunningGateway, tmp_path: Path
) -> None:
    version, _ = registered
    (tmp_path / "keep.txt").write_text("mine")
    result = pull(sdk_gateway, f"{version.name}/{version.version}", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert "not an empty directory" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_the_manifest_of_a_ready_version_cannot_be_rewritten_through_the_gateway(
    registered: tuple[ModelVersion, Path], mlflow_rest: MlflowRest
) -> None:
    version, files = registered
    path = manifest_path(version.source.removeprefix("mlflow-artifacts:/"))
    before = files.with_name(files.name + ".manifest.json").read_bytes()
    for method in ("PUT", "DELETE"):
        response = mlflow_rest.client.request(
            method, f"{ARTIFACTS_API}/{path}", content=b"{}" if method == "PUT" else None
        )
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "INVALID_STATE"
    assert files.with_name(files.name + ".manifest.json").read_bytes() == before


# ---- hokusai doctor --model --------------------------------------------------------------


def doctor(gateway: RunningGateway, version: ModelVersion) -> Result:
    env = {"HOKUSAI_API_URL": gateway.url, "HOKUSAI_API_KEY": gateway.create_key(Scope.READ)}
    reference = f"{version.name}/{version.version}"
    return CliRunner().invoke(app, ["doctor", "--model", reference, "--json"], env=env)


def test_doctor_reports_a_versions_digest_and_format(
    registered: tuple[ModelVersion, Path], sdk_gateway: RunningGateway
) -> None:
    version, _ = registered
    healthy = doctor(sdk_gateway, version)
    assert healthy.exit_code == 0, healthy.output
    hop = json.loads(healthy.stdout)["hops"][-1]
    assert hop["name"] == "model" and hop["ok"], hop
    assert version.tags[TAG_MANIFEST_DIGEST] in hop["detail"]
    assert "format skops, loads without pickle" in hop["detail"]


def test_doctor_names_a_changed_file(
    registered: tuple[ModelVersion, Path], sdk_gateway: RunningGateway
) -> None:
    version, files = registered
    _flip_a_byte(files)
    changed = doctor(sdk_gateway, version)
    assert changed.exit_code == 1, changed.output
    report = json.loads(changed.stdout)
    assert report["failed_hop"] == "model"
    assert "MLmodel has SHA-256" in report["hops"][-1]["detail"]
    assert "Do not deploy this version" in report["hops"][-1]["fix"]
