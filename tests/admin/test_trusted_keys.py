"""The public keys a workspace trusts to sign its versions, and its setting that protected
aliases require signed versions: stored, audited and authorized like its other settings,
on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hokusai.db.schema import trusted_keys
from hokusai.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from hokusai.keys.scopes import Scope
from tests.admin.support import Admin
from tests.signing_keys import key_pair


def fingerprint(public_pem: str) -> str:
    key = serialization.load_pem_public_key(public_pem.encode())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def test_a_trusted_key_is_listed_audited_and_removed(admin: Admin) -> None:
    pair = key_pair()
    actor = admin.key_actor(Scope.ADMIN)
    added = admin.services.workspaces.trust_key(actor, "default", pair.public_pem, label="ci")
    assert added.fingerprint == fingerprint(pair.public_pem)
    assert (added.workspace, added.label, added.public_key) == ("default", "ci", pair.public_pem)
    entry = admin.last_audit()
    assert (entry.action, entry.workspace) == ("workspaces.trust_key", "default")
    assert entry.detail is not None and entry.detail["fingerprint"] == added.fingerprint

    # Any key of the workspace reads them: a loading client checks against them.
    reader = admin.key_actor(Scope.READ)
    assert admin.services.workspaces.trusted_keys(reader, "default") == [added]

    with pytest.raises(Conflict, match="already"):
        admin.services.workspaces.trust_key(actor, "default", pair.public_pem)

    removed = admin.services.workspaces.untrust_key(actor, "default", added.fingerprint)
    assert removed == added
    assert admin.last_audit().action == "workspaces.untrust_key"
    assert admin.services.workspaces.trusted_keys(reader, "default") == []
    with pytest.raises(NotFound, match="trusts no key"):
        admin.services.workspaces.untrust_key(actor, "default", added.fingerprint)


def test_each_curve_model_signing_signs_with_is_accepted(admin: Admin) -> None:
    for curve in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()):
        pair = key_pair(curve)
        added = admin.services.workspaces.trust_key(admin.operator, "default", pair.public_pem)
        assert added.fingerprint == fingerprint(pair.public_pem)
    assert admin.count(trusted_keys) == 3


def _rsa_public() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("not a key", "not a PEM public key"),
        (None, "private key"),
        ("rsa", "elliptic-curve"),
        ("k1", "elliptic-curve"),
    ],
    ids=["garbage", "private-key", "rsa", "secp256k1"],
)
def test_what_is_not_a_usable_public_key_is_refused(
    admin: Admin, text: str | None, complaint: str
) -> None:
    if text is None:
        text = key_pair().private_pem.decode()
    elif text == "rsa":
        text = _rsa_public()
    elif text == "k1":
        text = key_pair(ec.SECP256K1()).public_pem
    with pytest.raises(InvalidInput, match=complaint):
        admin.services.workspaces.trust_key(admin.operator, "default", text)
    assert admin.count(trusted_keys) == 0


def test_only_the_workspaces_admin_changes_its_trusted_keys(admin: Admin) -> None:
    admin.workspace("other")
    pair = key_pair()
    with pytest.raises(PermissionDenied, match="'admin' role"):
        admin.services.workspaces.trust_key(
            admin.key_actor(Scope.PROMOTE), "default", pair.public_pem
        )
    # Another workspace's admin neither changes nor reads them.
    outsider = admin.key_actor(Scope.ADMIN, workspace="other")
    with pytest.raises(PermissionDenied):
        admin.services.workspaces.trust_key(outsider, "default", pair.public_pem)
    with pytest.raises(PermissionDenied):
        admin.services.workspaces.trusted_keys(outsider, "default")
    assert admin.count(trusted_keys) == 0
    with pytest.raises(NotFound):
        admin.services.workspaces.trust_key(admin.operator, "nowhere", pair.public_pem)


def test_requiring_signed_versions_is_a_setting_like_the_gate(admin: Admin) -> None:
    actor = admin.key_actor(Scope.ADMIN)
    assert not admin.services.workspaces.get(actor, "default").require_signed_versions
    after = admin.services.workspaces.update(actor, "default", require_signed_versions=True)
    assert after.require_signed_versions and after.public()["require_signed_versions"] is True
    entry = admin.last_audit()
    assert entry.detail is not None
    assert entry.detail["require_signed_versions"] == [False, True]
    assert admin.services.workspaces.get(actor, "default").require_signed_versions
