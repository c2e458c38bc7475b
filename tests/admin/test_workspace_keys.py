"""Keys per workspace: a workspace's admin manages its own workspace's keys only and
cannot make a platform key; a platform admin manages all; write and promote keys
administer nothing; model patterns and the platform flag are checked; the audit log is
read per workspace."""

from __future__ import annotations

import pytest

from hokusai.db.schema import api_keys, audit_log
from hokusai.errors import InvalidInput, NotFound, PermissionDenied
from hokusai.keys.scopes import Scope
from tests.admin.support import Admin


@pytest.fixture
def teams(admin: Admin) -> Admin:
    admin.workspace("team-a")
    admin.workspace("team-b")
    return admin


def test_a_workspace_admin_manages_only_its_workspace(teams: Admin) -> None:
    a_admin = teams.key_actor(Scope.ADMIN, workspace="team-a")
    b_key = teams.services.keys.create(teams.operator, name="b", workspace="team-b")

    made = teams.services.keys.create(a_admin, name="ci", scope=Scope.PROMOTE)
    assert (made.record.workspace, made.record.scope) == ("team-a", Scope.PROMOTE)
    before = teams.rows(api_keys)
    with pytest.raises(PermissionDenied, match="in workspace 'team-b'") as refused:
        teams.services.keys.create(a_admin, name="x", workspace="team-b")
    assert refused.value.details["refused_by"] == "workspace"
    with pytest.raises(PermissionDenied, match="platform-wide"):
        teams.services.keys.create(a_admin, name="x", scope=Scope.ADMIN, platform=True)
    with pytest.raises(PermissionDenied):
        teams.services.keys.list(a_admin, workspace="team-b")
    with pytest.raises(PermissionDenied):
        teams.services.keys.get(a_admin, b_key.record.id)
    with pytest.raises(PermissionDenied):
        teams.services.keys.revoke(a_admin, b_key.record.id)
    with pytest.raises(PermissionDenied):
        teams.services.keys.rotate(a_admin, b_key.record.id)
    assert teams.rows(api_keys) == before
    assert {k.workspace for k in teams.services.keys.list(a_admin)} == {"team-a"}
    teams.services.keys.revoke(a_admin, made.record.id)


def test_a_platform_admin_manages_every_workspace(teams: Admin) -> None:
    platform = teams.platform_actor()
    b_key = teams.services.keys.create(platform, name="b", workspace="team-b", models=["LS*"])
    assert (b_key.record.workspace, b_key.record.models) == ("team-b", ("LS*",))
    other = teams.services.keys.create(platform, name="p", scope=Scope.ADMIN, platform=True)
    assert other.record.is_platform_admin
    assert teams.services.keys.get(platform, b_key.record.id).workspace == "team-b"
    assert {k.workspace for k in teams.services.keys.list(platform)} >= {"team-b", None}
    assert {k.workspace for k in teams.services.keys.list(platform, workspace="team-b")} == {
        "team-b"
    }
    teams.services.keys.rotate(platform, b_key.record.id)
    teams.services.keys.revoke(platform, other.record.id)


@pytest.mark.parametrize("scope", [Scope.WRITE, Scope.PROMOTE], ids=str)
def test_write_and_promote_keys_administer_nothing(teams: Admin, scope: Scope) -> None:
    actor = teams.key_actor(scope, workspace="team-a")
    with pytest.raises(PermissionDenied, match="needs the 'admin' role in workspace 'team-a'"):
        teams.services.keys.create(actor, name="x")
    with pytest.raises(PermissionDenied):
        teams.services.keys.list(actor)
    with pytest.raises(PermissionDenied):
        teams.services.audit.query(actor)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"models": ["ok*", ""]}, "model pattern"),
        ({"models": ["bad\nname"]}, "model pattern"),
        ({"models": [f"m{i}" for i in range(21)]}, "at most 20"),
        ({"platform": True, "scope": Scope.WRITE}, "admin role"),
        ({"platform": True, "scope": Scope.ADMIN, "workspace": "team-a"}, "no workspace"),
        ({"platform": True, "scope": Scope.ADMIN, "models": ["x"]}, "cannot be limited"),
        ({"workspace": "Team A"}, "workspace name"),
    ],
)
def test_bad_key_input_changes_nothing(teams: Admin, fields: dict[str, object], says: str) -> None:
    before = teams.rows(api_keys), teams.count(audit_log)
    with pytest.raises(InvalidInput, match=says):
        teams.services.keys.create(teams.operator, name="x", **fields)  # type: ignore[arg-type]
    assert (teams.rows(api_keys), teams.count(audit_log)) == before


def test_a_key_in_a_workspace_that_does_not_exist_is_not_made(teams: Admin) -> None:
    with pytest.raises(NotFound, match="no workspace 'team-z'"):
        teams.services.keys.create(teams.operator, name="x", workspace="team-z")


def test_the_audit_log_is_read_per_workspace(teams: Admin) -> None:
    a_admin = teams.key_actor(Scope.ADMIN, workspace="team-a")
    b_admin = teams.key_actor(Scope.ADMIN, workspace="team-b")
    teams.services.keys.create(a_admin, name="a1")
    teams.services.keys.create(b_admin, name="b1")
    platform = teams.platform_actor()

    seen_by_a = teams.services.audit.query(a_admin)
    assert seen_by_a and {e.workspace for e in seen_by_a} == {"team-a"}
    with pytest.raises(PermissionDenied):
        teams.services.audit.query(a_admin, workspace="team-b")
    everything = teams.services.audit.query(platform)
    assert {"team-a", "team-b", None} <= {e.workspace for e in everything}
    only_b = teams.services.audit.query(platform, workspace="team-b")
    assert only_b and {e.workspace for e in only_b} == {"team-b"}


def test_a_key_reads_its_own_refusals_and_its_access(teams: Admin) -> None:
    writer = teams.key_actor(Scope.WRITE, workspace="team-a")
    teams.key_actor(Scope.ADMIN, workspace="team-a")  # an admin of team-a, owned by the operator
    with pytest.raises(PermissionDenied):
        teams.services.keys.list(writer)
    (denied,) = teams.services.audit.denials(writer)
    assert denied.detail is not None
    assert (denied.detail["wanted"], denied.detail["needed"]) == ("keys.list", "admin")
    assert denied.workspace == "team-a"
    assert teams.services.audit.denials(teams.operator) == []

    access = teams.services.keys.access(writer)
    assert access.public() == {
        "workspace": "team-a",
        "protected_aliases": ["production", "champion"],
        "promotion_gate": False,
        "granted_by": ["operator-on-host", "any platform admin"],
    }
