"""KeyAdmin on a real auth store (SQLite, and PostgreSQL when configured): each change
and its audit row in one transaction, typed records, domain errors only."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest
from sqlalchemy import update

from hokusai.admin.actor import Actor, Origin
from hokusai.admin.keys import MIN_INHERITED_LIFETIME
from hokusai.admin.transaction import change
from hokusai.authorization import Action
from hokusai.db.schema import api_keys, audit_log
from hokusai.errors import Conflict, InternalError, InvalidInput, NotFound, Unavailable
from hokusai.keys import store
from hokusai.keys.records import IssuedKey, KeyCheck, KeyRecord, Lifetime
from hokusai.keys.scopes import Scope
from hokusai.timestamps import utcnow
from tests.admin.support import Admin


def test_create_stores_a_typed_record_and_its_audit_row(admin: Admin) -> None:
    actor = admin.key_actor(Scope.ADMIN)
    before = admin.count(audit_log)

    issued = admin.services.keys.create(actor, name="ci", scope="read", expires_in="30d")

    assert isinstance(issued, IssuedKey) and isinstance(issued.record, KeyRecord)
    assert issued.record.scope is Scope.READ and issued.record.owner == actor.name
    assert issued.record.expires_at is not None
    assert abs(issued.record.expires_at - utcnow() - timedelta(days=30)) < timedelta(minutes=1)
    assert admin.verifier.authenticate(issued.key).id == issued.record.id
    entry = admin.last_audit()
    assert admin.count(audit_log) == before + 1
    assert (entry.key_id, entry.owner, entry.action) == (actor.key_id, actor.name, "keys.create")
    assert entry.detail == {
        "target": issued.record.id,
        "created": issued.record.id,
        "scope": "read",
        "workspace": "default",
    }
    assert entry.workspace == "default" and issued.record.workspace == "default"
    assert (entry.method, entry.path, entry.status) == ("POST", "/api/v1/keys", 201)
    # The secret itself is never in the log.
    assert issued.key not in json.dumps([e.public() for e in admin.audit()])


def test_the_operator_is_audited_by_name_with_no_key(admin: Admin) -> None:
    issued = admin.services.keys.create(admin.operator, name="ops")
    entry = admin.last_audit()
    assert (entry.key_id, entry.owner, entry.method, entry.status) == (
        None,
        "operator-on-host",
        "CLI",
        0,
    )
    assert entry.path == "hokusai tests" and entry.detail is not None
    assert entry.detail["target"] == issued.record.id
    assert issued.record.owner == "operator-on-host"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"name": "  "}, "name of 1 to 200"),
        ({"name": "x" * 201}, "name of 1 to 200"),
        ({"name": "ok", "owner": "o" * 201}, "owner of 1 to 200"),
        ({"name": "ok", "scope": "root"}, "scope must be one of read, write, promote, admin"),
        ({"name": "ok", "env": "prod"}, "env must be one of live, test"),
        ({"name": "ok", "expires_in": "soon"}, "is not a duration"),
        ({"name": "ok", "expires_in": "999999999d"}, "between 1s and 3650d"),
        ({"name": "ok", "expires_in": timedelta(days=40_000)}, "between 1s and 3650d"),
        ({"name": "ok", "expires_in": timedelta(seconds=-1)}, "must be positive"),
    ],
)
def test_invalid_input_changes_nothing(admin: Admin, fields: dict[str, object], says: str) -> None:
    before = (admin.count(api_keys), admin.count(audit_log))
    with pytest.raises(InvalidInput, match=says):
        admin.services.keys.create(admin.operator, **fields)  # type: ignore[arg-type]
    assert (admin.count(api_keys), admin.count(audit_log)) == before


def test_get_finds_a_key_by_id_prefix_or_whole_key(admin: Admin) -> None:
    issued = admin.services.keys.create(admin.operator, name="lookup")
    keys = admin.services.keys
    for reference in (issued.record.id, issued.record.display_prefix, issued.key):
        assert keys.get(admin.operator, reference) == issued.record
    with pytest.raises(NotFound, match="no key matches 'key_nope'"):
        keys.get(admin.operator, "key_nope")
    with pytest.raises(NotFound) as caught:
        keys.get(admin.operator, issued.key[:-1] + ("A" if issued.key[-1] != "A" else "B"))
    assert issued.key[:20] not in caught.value.message  # never echoes a key


def test_an_ambiguous_prefix_is_invalid_input_naming_both(admin: Admin) -> None:
    one = admin.services.keys.create(admin.operator, name="one")
    two = admin.services.keys.create(admin.operator, name="two")
    with admin.engine.begin() as conn:
        conn.execute(
            update(api_keys)
            .where(api_keys.c.id == two.record.id)
            .values(display_prefix=one.record.display_prefix)
        )
    with pytest.raises(InvalidInput, match="matches several keys") as caught:
        admin.services.keys.get(admin.operator, one.record.display_prefix)
    assert one.record.id in caught.value.message and two.record.id in caught.value.message


def test_list_hides_revoked_keys_unless_asked(admin: Admin) -> None:
    kept = admin.services.keys.create(admin.operator, name="kept")
    gone = admin.services.keys.create(admin.operator, name="gone")
    admin.services.keys.revoke(admin.operator, gone.record.id)
    listed = admin.services.keys.list(admin.operator)
    assert [k.id for k in listed] == [kept.record.id]
    every = admin.services.keys.list(admin.operator, include_revoked=True)
    assert {k.id for k in every} == {kept.record.id, gone.record.id}


def test_revoke_is_audited_and_evicts_the_verifier_cache(admin: Admin) -> None:
    issued = admin.services.keys.create(admin.operator, name="leaked")
    record = admin.services.keys.revoke(admin.operator, issued.record.display_prefix)
    assert record.revoked_at is not None and record.state(utcnow()) == "revoked"
    assert admin.revoked == [issued.record.id]
    entry = admin.last_audit()
    assert entry.action == "keys.revoke"
    assert entry.detail == {"target": issued.record.id, "revoked": issued.record.id}
    check = admin.services.keys.validate(admin.operator, issued.key)
    assert (check.valid, check.reason) == (False, "revoked")


def test_rotate_replaces_and_revokes_in_one_step(admin: Admin) -> None:
    old = admin.services.keys.create(
        admin.operator, name="svc", scope=Scope.WRITE, owner="team-a", env="test", expires_in="10d"
    )
    new = admin.services.keys.rotate(admin.operator, old.record.id)

    assert new.key != old.key
    fields = ("name", "owner", "scope", "env")
    assert [getattr(new.record, f) for f in fields] == [getattr(old.record, f) for f in fields]
    assert new.record.rotated_from == old.record.id
    assert new.record.expires_at is not None
    assert abs(new.record.expires_at - utcnow() - timedelta(days=10)) < timedelta(minutes=1)
    assert admin.services.keys.get(admin.operator, old.record.id).revoked_at is not None
    assert admin.revoked == [old.record.id]
    entry = admin.last_audit()
    assert entry.action == "keys.rotate"
    assert entry.detail == {
        "target": old.record.id,
        "rotated": old.record.id,
        "replacement": new.record.id,
    }


def test_rotating_an_expired_key_gives_a_fresh_lifetime(admin: Admin) -> None:
    old = admin.services.keys.create(admin.operator, name="stale", expires_in="1d")
    long_ago = utcnow() - timedelta(days=30)
    with admin.engine.begin() as conn:
        conn.execute(
            update(api_keys)
            .where(api_keys.c.id == old.record.id)
            .values(created_at=long_ago, expires_at=long_ago + timedelta(days=1))
        )
    assert admin.services.keys.validate(admin.operator, old.key).reason == "expired"

    same = admin.services.keys.rotate(admin.operator, old.record.id)
    assert same.record.state(utcnow()) == "active"
    assert same.record.expires_at is not None
    assert abs(same.record.expires_at - utcnow() - timedelta(days=1)) < timedelta(minutes=1)
    assert admin.services.keys.validate(admin.operator, same.key).valid

    longer = admin.services.keys.rotate(admin.operator, same.record.id, expires_in="7d")
    assert longer.record.expires_at is not None
    assert abs(longer.record.expires_at - utcnow() - timedelta(days=7)) < timedelta(minutes=1)
    forever = admin.services.keys.rotate(admin.operator, longer.record.id, expires_in="never")
    assert forever.record.expires_at is None
    again = admin.services.keys.rotate(admin.operator, forever.record.id, expires_in=Lifetime.SAME)
    assert again.record.expires_at is None


def test_a_short_lived_key_rotates_into_at_least_an_hour(admin: Admin) -> None:
    """A key rotated because its very short lifetime ran out is not born expired again."""
    old = admin.services.keys.create(admin.operator, name="brief", expires_in="5s")
    new = admin.services.keys.rotate(admin.operator, old.record.id)
    assert new.record.expires_at is not None
    lifetime = new.record.expires_at - new.record.created_at
    assert lifetime == MIN_INHERITED_LIFETIME == timedelta(hours=1)
    assert admin.services.keys.rotate(admin.operator, new.record.id, expires_in="5s").record


def test_rotating_a_revoked_key_is_refused_and_changes_nothing(admin: Admin) -> None:
    old = admin.services.keys.create(admin.operator, name="done")
    admin.services.keys.revoke(admin.operator, old.record.id)
    before = (admin.count(api_keys), admin.count(audit_log))
    with pytest.raises(InvalidInput, match="is revoked; create a new key"):
        admin.services.keys.rotate(admin.operator, old.record.id)
    with pytest.raises(InvalidInput, match="between 1s and 3650d"):
        admin.services.keys.rotate(admin.operator, old.record.id, expires_in="999999999d")
    assert (admin.count(api_keys), admin.count(audit_log)) == before


def test_a_rotation_that_loses_a_race_changes_nothing(admin: Admin) -> None:
    """Revoked by someone else between the lookup and the update: Conflict, no new key."""
    old = admin.services.keys.create(admin.operator, name="raced")
    before = admin.count(api_keys)
    real_mark = store.mark_revoked

    def revoked_meanwhile(conn: object, *, key_id: str, at: object) -> bool:
        real_mark(conn, key_id=key_id, at=at)  # type: ignore[arg-type]
        return real_mark(conn, key_id=key_id, at=at)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "mark_revoked", revoked_meanwhile)
        with pytest.raises(Conflict, match="was revoked while it was being rotated"):
            admin.services.keys.rotate(admin.operator, old.record.id)
    assert admin.count(api_keys) == before
    assert admin.services.keys.get(admin.operator, old.record.id).revoked_at is None


def test_a_failing_audit_insert_rolls_the_change_back(admin: Admin) -> None:
    keep = admin.services.keys.create(admin.operator, name="keep", expires_in="2d")
    keys_before = admin.rows(api_keys)
    admin.break_audit_log()

    with pytest.raises(Unavailable, match="the auth store failed"):
        admin.services.keys.create(admin.operator, name="orphan")
    with pytest.raises(Unavailable):
        admin.services.keys.revoke(admin.operator, keep.record.id)
    with pytest.raises(Unavailable) as caught:
        admin.services.keys.rotate(admin.operator, keep.record.id)

    assert admin.rows(api_keys) == keys_before  # no new key, nothing revoked
    assert admin.revoked == []
    assert admin.verifier.authenticate(keep.key).id == keep.record.id
    # The driver's text (which could carry a key hash) stays out of the message.
    assert "key_hash" not in caught.value.message and "INSERT" not in caught.value.message


def test_a_change_without_its_audit_row_is_rolled_back(admin: Admin) -> None:
    """The transaction helper refuses to commit an unaudited change: audited by construction."""
    record = dataclasses.replace(
        admin.services.keys.create(admin.operator, name="template").record, id="key_unaudited"
    )
    with (
        pytest.raises(InternalError, match="without its audit row"),
        change(admin.engine, admin.operator, Action.KEYS_CREATE) as unit,
    ):
        store.insert_key(unit.conn, record=record, key_hash="0" * 64)
    with pytest.raises(NotFound):
        admin.services.keys.get(admin.operator, "key_unaudited")


def test_validate_needs_only_a_key_and_never_returns_the_key(admin: Admin) -> None:
    reader = admin.key_actor(Scope.READ, path="/api/v1/keys/validate")
    other = admin.services.keys.create(admin.operator, name="handed over")
    check = admin.services.keys.validate(reader, other.key)
    assert isinstance(check, KeyCheck)
    assert (check.valid, check.reason, check.message) == (True, None, None)
    assert check.record is not None and check.record.id == other.record.id
    assert other.key not in repr(check)
    bad = admin.services.keys.validate(reader, "hk_live_short")
    assert (bad.valid, bad.reason, bad.record) == (False, "malformed", None)


def test_a_failing_store_is_unavailable_not_a_driver_error(admin: Admin) -> None:
    api_keys.drop(admin.engine)
    operator = Actor.operator(Origin.command("keys list"), name="x")
    with pytest.raises(Unavailable, match="nothing was changed"):
        admin.services.keys.list(operator)
