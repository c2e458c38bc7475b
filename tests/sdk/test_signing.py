"""Signed versions: a manifest signed with a key (the OpenSSF model-signing library, no
network service), a workspace's trusted keys, ``verify="signature"`` on load, and the
workspace setting that protected aliases require signed versions.

A real MLflow server and a real gateway over loopback; keys are made by each test and
never written anywhere but the scratch files model-signing reads. The default workspace
is shared by the module's tests: each trusts its own keys and removes them after."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow.pyfunc
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select
from typer.testing import CliRunner, Result

from hokusai import ModelVersion
from hokusai.admin.actor import Actor, Origin
from hokusai.cli.main import app
from hokusai.db.schema import events
from hokusai.integrity import TAG_MANIFEST_DIGEST, TAG_SIGNER, signature_path
from hokusai.keys.scopes import Scope
from hokusai.sdk.errors import APIError, NotFoundError, PermissionDeniedError
from hokusai.sdk.registry import ModelRegistry
from hokusai.server.mlflow_process import MlflowProcess
from hokusai.signing import SignatureError, public_key, sign_manifest
from tests.helpers import RunningGateway
from tests.sdk.support import ARTIFACTS_API, LeadData, MlflowRest, unique
from tests.sdk.test_integrity import doctor, pull, stored_files
from tests.signing_keys import KeyPair, key_pair

pytestmark = pytest.mark.integration

OPERATOR = Actor.operator(Origin.command("tests"), name="signing-tests")


class Trust:
    """The default workspace's trusted keys and setting, as an admin changes them."""

    def __init__(self, gateway: RunningGateway) -> None:
        self.workspaces = gateway.gateway.services.workspaces
        self.added: list[str] = []

    def key(self, pair: KeyPair) -> str:
        record = self.workspaces.trust_key(OPERATOR, "default", pair.public_pem, label="tests")
        self.added.append(record.fingerprint)
        return record.fingerprint

    def require_signed(self, on: bool) -> None:
        self.workspaces.update(OPERATOR, "default", require_signed_versions=on)

    def undo(self) -> None:
        for fingerprint in self.added:
            self.workspaces.untrust_key(OPERATOR, "default", fingerprint)
        self.require_signed(False)


@pytest.fixture
def trust(sdk_gateway: RunningGateway) -> Iterator[Trust]:
    made = Trust(sdk_gateway)
    yield made
    made.undo()


@pytest.fixture
def signer() -> KeyPair:
    return key_pair()


def signing_registry(gateway: RunningGateway, key: str, pair: KeyPair) -> ModelRegistry:
    return ModelRegistry(
        api_key=key, api_url=gateway.url, max_retry_time=10, signing_key=pair.private_pem
    )


def register(registry: ModelRegistry, model: LogisticRegression) -> ModelVersion:
    result = registry.register_baseline(model, "lead_scoring", unique("signed"), alias=None)
    return registry.get_model_version(f"{result.name}/{result.version}")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model that failed its signature check was loaded")

    monkeypatch.setattr(mlflow.pyfunc, "load_model", must_not_load)


# ---- loading -----------------------------------------------------------------------------


def test_a_version_signed_by_a_trusted_key_loads(
    sdk_gateway: RunningGateway,
    team_key: str,
    trust: Trust,
    signer: KeyPair,
    lead_model: LogisticRegression,
    leads: LeadData,
    mlflow_rest: MlflowRest,
) -> None:
    fingerprint = trust.key(signer)
    with signing_registry(sdk_gateway, team_key, signer) as registry:
        version = register(registry, lead_model)
        assert version.tags[TAG_SIGNER] == fingerprint == public_key(signer.public_pem).fingerprint
        stored = signature_path(version.source.removeprefix("mlflow-artifacts:/"))
        answer = mlflow_rest.client.get(f"{ARTIFACTS_API}/{stored}")
        assert answer.status_code == 200
        assert b"PRIVATE" not in answer.content  # a bundle names the key, never holds it
        loaded = registry.load_model(version, verify="signature")
        assert list(loaded.predict(leads.features)) == list(lead_model.predict(leads.features))
        assert [k.fingerprint for k in registry.trusted_keys()] == [fingerprint]


def test_a_version_signed_by_an_untrusted_key_is_refused_before_loading(
    sdk_gateway: RunningGateway,
    team_key: str,
    trust: Trust,
    signer: KeyPair,
    lead_model: LogisticRegression,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trust.key(key_pair())  # the workspace trusts some other key
    with signing_registry(sdk_gateway, team_key, signer) as registry:
        version = register(registry, lead_model)
        # Trusted by the caller's own list, it loads.
        assert (
            registry.load_model(version, verify="signature", trusted_keys=[signer.public_pem])
            is not None
        )
        no_loading(monkeypatch)
        with pytest.raises(SignatureError) as refused:
            registry.load_model(version, verify="signature")
    assert refused.value.problem == "untrusted"
    assert version.tags[TAG_SIGNER] in str(refused.value)
    assert "hokusai workspaces trust-key" in str(refused.value)


def test_an_unsigned_version_is_refused_with_verify_signature(
    registry: ModelRegistry,
    trust: Trust,
    signer: KeyPair,
    lead_model: LogisticRegression,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    trust.key(signer)
    version = register(registry, lead_model)
    assert TAG_SIGNER not in version.tags
    no_loading(monkeypatch)
    with pytest.raises(SignatureError, match="it is not signed") as refused:
        registry.load_model(version, verify="signature")
    assert refused.value.problem == "unsigned"
    with pytest.raises(SignatureError):
        registry.download_model(version, tmp_path / "pulled", verify="signature")
    assert not (tmp_path / "pulled").exists()
    # The digest alone still checks out.
    registry.download_model(version, tmp_path / "pulled")


def test_pull_signed_takes_only_a_version_signed_by_a_trusted_key(
    sdk_gateway: RunningGateway,
    team_key: str,
    registry: ModelRegistry,
    trust: Trust,
    signer: KeyPair,
    lead_model: LogisticRegression,
    tmp_path: Path,
) -> None:
    trust.key(signer)
    unsigned = register(registry, lead_model)
    with signing_registry(sdk_gateway, team_key, signer) as signing:
        signed = register(signing, lead_model)
    refused = pull(
        sdk_gateway, "--signed", f"{unsigned.name}/{unsigned.version}", str(tmp_path / "a")
    )
    assert refused.exit_code == 8, refused.output
    assert "not signed" in " ".join(refused.output.split())
    assert not (tmp_path / "a").exists()
    taken = pull(sdk_gateway, "--signed", f"{signed.name}/{signed.version}", str(tmp_path / "b"))
    assert taken.exit_code == 0, taken.output
    assert "signed by a trusted key" in " ".join(taken.output.split())
    assert (tmp_path / "b" / "MLmodel").is_file()
    contradiction = pull(sdk_gateway, "--signed", "--no-verify", "x/1", str(tmp_path / "c"))
    assert contradiction.exit_code == 2


# ---- signing after registration, once ----------------------------------------------------


def test_a_registered_version_is_signed_once_and_its_signature_never_changes(
    registry: ModelRegistry,
    trust: Trust,
    signer: KeyPair,
    lead_model: LogisticRegression,
    mlflow_rest: MlflowRest,
    mlflow_server: MlflowProcess,
) -> None:
    fingerprint = trust.key(signer)
    version = register(registry, lead_model)
    signed = registry.sign_version(f"{version.name}/{version.version}", signer.private_pem)
    assert signed.tags[TAG_SIGNER] == fingerprint
    assert signed.tags[TAG_MANIFEST_DIGEST] == version.tags[TAG_MANIFEST_DIGEST]
    registry.load_model(signed, verify="signature")
    # Signing again with the same key completes nothing new; another key is refused.
    registry.sign_version(signed, signer.private_pem)
    with pytest.raises(APIError, match="signed already"):
        registry.sign_version(signed, key_pair().private_pem)

    files = stored_files(mlflow_server, version.source)
    on_disk = files.with_name(files.name + ".manifest.sig")
    before = on_disk.read_bytes()
    path = signature_path(version.source.removeprefix("mlflow-artifacts:/"))
    manifest = files.with_name(files.name + ".manifest.json").read_bytes()
    forged = sign_manifest(manifest, key_pair().private_pem).bundle
    for method in ("PUT", "DELETE"):
        answer = mlflow_rest.client.request(
            method, f"{ARTIFACTS_API}/{path}", content=forged if method == "PUT" else None
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error_code"] == "INVALID_STATE"
        assert "signed already" in answer.json()["message"]
    assert on_disk.read_bytes() == before
    registry.load_model(signed, verify="signature")


# ---- the requirement of signed versions for protected aliases ----------------------------


def events_of(gateway: RunningGateway, name: str, event_type: str) -> list[dict[str, object]]:
    """The data of model ``name``'s events of ``event_type`` in the outbox, in order."""
    with gateway.gateway.engine.connect() as conn:
        rows = conn.execute(
            select(events.c.payload)
            .where(events.c.type == event_type, events.c.model_name == name)
            .order_by(events.c.seq)
        ).all()
    return [json.loads(row.payload)["data"] for row in rows]


def test_a_token_version_of_signed_files_is_registered_with_their_digest_and_signer(
    sdk_gateway: RunningGateway,
    team_key: str,
    trust: Trust,
    signer: KeyPair,
    lead_model: LogisticRegression,
) -> None:
    """A version made from another's files shares their manifest and its signature: the
    model.registered event says both, and the version verifies as signed."""
    fingerprint = trust.key(signer)
    with signing_registry(sdk_gateway, team_key, signer) as signing:
        base = register(signing, lead_model)
        token = signing.register_tokenized_model(
            f"models:/{base.name}/{base.version}", unique("token"), "tok-signed", "auroc", 0.8
        )
        made = signing.get_model_version(f"{token.name}/{token.version}")
        assert signing.verify_signature(made) == fingerprint
    assert made.tags[TAG_MANIFEST_DIGEST] == base.tags[TAG_MANIFEST_DIGEST]
    assert made.tags[TAG_SIGNER] == fingerprint
    [data] = events_of(sdk_gateway, token.name, "model.registered")
    assert (data["manifest_digest"], data["signer"]) == (
        base.tags[TAG_MANIFEST_DIGEST],
        fingerprint,
    )


def test_only_a_version_signed_by_a_trusted_key_takes_a_protected_alias(
    sdk_gateway: RunningGateway,
    team_key: str,
    registry: ModelRegistry,
    trust: Trust,
    signer: KeyPair,
    lead_model: LogisticRegression,
) -> None:
    stranger = key_pair()
    trusted_fingerprint = trust.key(signer)
    with signing_registry(sdk_gateway, team_key, stranger) as strangers:
        foreign = register(strangers, lead_model)
    unsigned = registry.register_baseline(
        lead_model, "lead_scoring", foreign.name, alias=None
    ).version
    with signing_registry(sdk_gateway, team_key, signer) as signers:
        good = signers.register_baseline(
            lead_model, "lead_scoring", foreign.name, alias=None
        ).version

    # Off: any version may be promoted.
    registry.promote(foreign.name, foreign.version)
    registry.delete_alias(foreign.name, "production")

    trust.require_signed(True)
    with pytest.raises(PermissionDeniedError) as refused:
        registry.promote(foreign.name, foreign.version)
    details = refused.value.details
    assert refused.value.status_code == 403
    assert (details["refused_by"], details["signature"]) == ("signed_versions", "untrusted")
    assert details["signer"] == foreign.tags[TAG_SIGNER]
    assert "trust-key" in refused.value.message and "nothing was changed" in refused.value.message
    with pytest.raises(PermissionDeniedError) as refused:
        registry.promote(foreign.name, unsigned)
    assert refused.value.details["signature"] == "unsigned"
    with pytest.raises(NotFoundError):  # nothing changed
        registry.get_model_version(f"{foreign.name}@production")
    # An unprotected alias is not judged.
    registry.set_alias(foreign.name, "candidate", unsigned)

    promoted = registry.promote(foreign.name, good)
    assert "production" in promoted.aliases
    # The alias events say what the version is and who signed it.
    by_version = {
        e["version"]: e for e in events_of(sdk_gateway, foreign.name, "model_version.alias_set")
    }
    assert by_version[good]["signer"] == trusted_fingerprint
    assert by_version[good]["manifest_digest"] == promoted.tags[TAG_MANIFEST_DIGEST]
    assert by_version[unsigned]["signer"] is None
    assert by_version[unsigned]["manifest_digest"] is not None
    assert by_version[foreign.version]["signer"] == foreign.tags[TAG_SIGNER]


def test_a_signature_changed_in_the_store_does_not_pass(
    sdk_gateway: RunningGateway,
    team_key: str,
    registry: ModelRegistry,
    trust: Trust,
    signer: KeyPair,
    lead_model: LogisticRegression,
    mlflow_server: MlflowProcess,
) -> None:
    trust.key(signer)
    with signing_registry(sdk_gateway, team_key, signer) as signers:
        version = register(signers, lead_model)
    files = stored_files(mlflow_server, version.source)
    on_disk = files.with_name(files.name + ".manifest.sig")
    bundle = json.loads(on_disk.read_text())
    signature = bundle["dsseEnvelope"]["signatures"][0]
    middle = len(signature["sig"]) // 2
    flipped = "B" if signature["sig"][middle] == "A" else "A"
    signature["sig"] = signature["sig"][:middle] + flipped + signature["sig"][middle + 1 :]
    on_disk.write_text(json.dumps(bundle))
    trust.require_signed(True)
    with pytest.raises(PermissionDeniedError) as refused:
        registry.promote(version.name, version.version)
    assert refused.value.details["signature"] == "invalid"
    with pytest.raises(SignatureError) as failed:
        registry.load_model(version, verify="signature")
    assert failed.value.problem == "invalid"


# ---- hokusai doctor --model, and the trusted keys' CLI and API ---------------------------


def test_doctor_reports_the_signer_and_whether_it_is_trusted(
    sdk_gateway: RunningGateway,
    team_key: str,
    trust: Trust,
    signer: KeyPair,
    lead_model: LogisticRegression,
) -> None:
    with signing_registry(sdk_gateway, team_key, signer) as signers:
        version = register(signers, lead_model)
    fingerprint = version.tags[TAG_SIGNER]
    untrusted = doctor(sdk_gateway, version)
    assert untrusted.exit_code == 0, untrusted.output
    hop = json.loads(untrusted.stdout)["hops"][-1]
    assert f"signed by {fingerprint}, a key the workspace does not trust" in hop["detail"]
    trust.key(signer)
    trusted = json.loads(doctor(sdk_gateway, version).stdout)["hops"][-1]
    assert f"signed by {fingerprint}, a key the workspace trusts" in trusted["detail"]
    assert version.tags[TAG_MANIFEST_DIGEST] in trusted["detail"]
    assert "format skops" in trusted["detail"]


def cli(gateway: RunningGateway, key: str, *args: str) -> Result:
    env = {"HOKUSAI_API_URL": gateway.url, "HOKUSAI_API_KEY": key, "COLUMNS": "250"}
    return CliRunner().invoke(app, ["workspaces", *args], env=env)


def test_trusted_keys_through_the_cli_and_the_api(
    sdk_gateway: RunningGateway, signer: KeyPair, tmp_path: Path
) -> None:
    admin_key = sdk_gateway.create_key(Scope.ADMIN, workspace="default")
    public = tmp_path / "release.pub.pem"
    public.write_text(signer.public_pem)
    fingerprint = public_key(signer.public_pem).fingerprint
    added = cli(sdk_gateway, admin_key, "trust-key", "default", str(public), "--label", "release")
    assert added.exit_code == 0, added.output
    assert f"trusted {fingerprint} (release) in default" in added.output
    again = cli(sdk_gateway, admin_key, "trust-key", "default", str(public))
    assert again.exit_code != 0 and "already" in again.output

    # Any key of the workspace reads them over the API; only its admin changes them.
    reader = sdk_gateway.create_key(Scope.READ, workspace="default")
    with httpx.Client(base_url=sdk_gateway.url, headers=bearer(reader)) as client:
        listed = client.get("/api/v1/workspaces/default/trusted-keys")
        assert listed.status_code == 200, listed.text
        assert [k["fingerprint"] for k in listed.json()["trusted_keys"]] == [fingerprint]
        assert listed.json()["trusted_keys"][0]["public_key"] == signer.public_pem
        refused = client.post(
            "/api/v1/workspaces/default/trusted-keys", json={"public_key": key_pair().public_pem}
        )
        assert refused.status_code == 403, refused.text
    shown = cli(sdk_gateway, reader, "trusted-keys", "default", "--json")
    assert shown.exit_code == 0, shown.output
    assert [k["label"] for k in json.loads(shown.stdout)] == ["release"]

    required = cli(sdk_gateway, admin_key, "update", "default", "--require-signed-versions")
    assert required.exit_code == 0, required.output
    assert "signed versions:    required" in required.output
    relaxed = cli(sdk_gateway, admin_key, "update", "default", "--no-require-signed-versions")
    assert "signed versions:    not required" in relaxed.output

    removed = cli(sdk_gateway, admin_key, "untrust-key", "default", fingerprint)
    assert removed.exit_code == 0, removed.output
    assert json.loads(cli(sdk_gateway, reader, "trusted-keys", "default", "--json").stdout) == []
