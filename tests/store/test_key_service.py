"""The key service on a real auth store: SQLite, and PostgreSQL when configured.

The service's clocks (wall time for expiry and last use, monotonic time for the
verification cache) are moved explicitly; nothing here sleeps.

Longer than most test modules (about 570 lines): every state of a key's life (issued,
verified, cached, expired, revoked, rotated, last used), on each store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select

from hokusai.admin import keys as admin_keys_module
from hokusai.admin.actor import Actor, Origin
from hokusai.admin.keys import MIN_INHERITED_LIFETIME, KeyAdmin
from hokusai.db.engine import make_engine
from hokusai.db.migrate import alembic_config, pending_revisions, upgrade
from hokusai.db.schema import api_keys, metadata
from hokusai.keys import service as service_module
from hokusai.keys import store
from hokusai.keys.format import DISPLAY_LENGTH, display_prefix, generate_key, parse_key
from hokusai.keys.scopes import Scope
from hokusai.keys.service import (
    AmbiguousKeyReference,
    KeyNotFound,
    KeyRejected,
    KeyService,
)

SECRET = b"store-test-secret-for-key-hashing"
START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    """The key service's wall clock and monotonic clock, moved together or apart."""

    def __init__(self) -> None:
        self.wall = START
        self.mono = 10_000.0

    def utcnow(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(service_module, "utcnow", clock.utcnow)
    monkeypatch.setattr(service_module, "time", SimpleNamespace(monotonic=clock.monotonic))
    return clock


@pytest.fixture
def keys(engine: Engine, clock: Clock) -> KeyService:
    return KeyService(engine, SECRET)


@pytest.fixture
def key_admin(
    keys: KeyService, engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> KeyAdmin:
    """Rotation is key administration: one rule, in KeyAdmin, on the same store and clock."""
    monkeypatch.setattr(admin_keys_module, "utcnow", clock.utcnow)
    return KeyAdmin(engine, keys, on_revoked=keys.forget)


OPERATOR = Actor.operator(Origin.command("tests"))


def utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def stored_row(engine: Engine, key_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).one()
    return dict(row._mapping)


def rejected(keys: KeyService, key: str | None) -> KeyRejected:
    with pytest.raises(KeyRejected) as caught:
        keys.authenticate(key)
    assert caught.value.reason in KeyRejected.REASONS
    if key:
        assert key not in caught.value.message
    return caught.value


# ---- the schema ---------------------------------------------------------------------


def test_pending_revisions_are_those_not_yet_applied(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        script = ScriptDirectory.from_config(alembic_config(engine))
        in_order = [rev.revision for rev in script.walk_revisions()][::-1]  # oldest first
        assert in_order[0] == "0001"
        assert sorted(pending_revisions(engine)) == sorted(in_order)
        # Step through every revision: what is pending is exactly what comes after it.
        for position, revision in enumerate(in_order):
            command.upgrade(alembic_config(engine), revision)
            assert sorted(pending_revisions(engine)) == sorted(in_order[position + 1 :])
        upgrade(engine)
        assert pending_revisions(engine) == []
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_keeps_data(engine: Engine, keys: KeyService) -> None:
    issued = keys.create(name="before", owner="tests")
    upgrade(engine)
    upgrade(engine)
    assert pending_revisions(engine) == []
    assert {"api_keys", "audit_log"} <= set(inspect(engine).get_table_names())
    assert keys.authenticate(issued.key).id == issued.record.id


def test_the_migrated_tables_match_the_schema(engine: Engine) -> None:
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name
    unique = inspector.get_unique_constraints("api_keys")
    unique_indexes = [i for i in inspector.get_indexes("api_keys") if i.get("unique")]
    assert any(c["column_names"] == ["key_hash"] for c in unique + unique_indexes)


# ---- creation ---------------------------------------------------------------------


def test_only_a_hash_of_the_key_is_stored(engine: Engine, keys: KeyService) -> None:
    issued = keys.create(name="lscor training", owner="ana", scope=Scope.WRITE)
    key = issued.key
    secret_part = key[len("hk_live_") + DISPLAY_LENGTH :]  # never shown anywhere
    assert len(secret_part) > 30

    row = stored_row(engine, issued.record.id)
    for column, value in row.items():
        assert key not in str(value), column
        assert secret_part not in str(value), column
    assert row["key_hash"] == hmac.new(SECRET, key.encode(), hashlib.sha256).hexdigest()
    assert row["display_prefix"] == display_prefix(key)

    # Nor anywhere else in the store.
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for stored in conn.execute(select(table)).all():
                assert all(secret_part not in str(value) for value in stored), table.name


def test_create_returns_the_key_once_and_records_the_rest(engine: Engine, keys: KeyService) -> None:
    issued = keys.create(
        name="  nightly eval  ",
        owner=" ana ",
        scope=Scope.READ,
        env="test",
        expires_in=timedelta(days=30),
    )
    assert parse_key(issued.key).env == "test"
    record = issued.record
    assert record.id.startswith("key_")
    assert record.display_prefix == display_prefix(issued.key)
    assert record.display_prefix.startswith("hk_test_")
    assert (record.name, record.owner, record.scope, record.env) == (
        "nightly eval",
        "ana",
        Scope.READ,
        "test",
    )
    assert record.created_at == START
    assert record.expires_at == START + timedelta(days=30)
    assert record.revoked_at is None and record.last_used_at is None
    assert record.rotated_from is None
    assert record.state(START) == "active"

    row = stored_row(engine, record.id)
    assert (row["name"], row["owner"], row["scope"], row["env"]) == (
        "nightly eval",
        "ana",
        "read",
        "test",
    )
    assert utc(row["created_at"]) == START
    assert utc(row["expires_at"]) == START + timedelta(days=30)
    assert [r.id for r in keys.list()] == [record.id]
    assert keys.count() == 1


def test_every_key_is_different(keys: KeyService) -> None:
    issued = [keys.create(name=f"k{i}", owner="tests") for i in range(5)]
    assert len({i.key for i in issued}) == 5
    assert len({i.record.id for i in issued}) == 5
    assert keys.count() == 5


def test_name_of_exactly_200_characters_is_accepted(keys: KeyService) -> None:
    assert keys.create(name="n" * 200, owner="o" * 200).record.name == "n" * 200


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "name of 1 to 200"),
        ({"name": "   "}, "name of 1 to 200"),
        ({"name": "n" * 201}, "name of 1 to 200"),
        ({"owner": ""}, "owner of 1 to 200"),
        ({"owner": "  "}, "owner of 1 to 200"),
        ({"owner": "o" * 201}, "owner of 1 to 200"),
        ({"expires_in": timedelta(0)}, "expires_in must be positive"),
        ({"expires_in": timedelta(days=-1)}, "expires_in must be positive"),
        ({"env": "prod"}, "env must be one of live, test"),
    ],
)
def test_invalid_keys_are_refused_and_nothing_is_stored(
    keys: KeyService, kwargs: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"name": "valid", "owner": "tests", **kwargs}
    with pytest.raises(ValueError, match=message):
        keys.create(**arguments)
    assert keys.count() == 0


def test_an_empty_secret_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="secret"):
        KeyService(engine, b"")


# ---- authentication ---------------------------------------------------------------


def test_an_active_key_authenticates(keys: KeyService) -> None:
    issued = keys.create(name="ci", owner="tests", scope=Scope.ADMIN)
    record = keys.authenticate(issued.key)
    assert record.id == issued.record.id
    assert record.scope is Scope.ADMIN


def test_a_key_is_only_valid_under_the_secret_it_was_issued_with(
    engine: Engine, keys: KeyService
) -> None:
    issued = keys.create(name="ci", owner="tests")
    other_deployment = KeyService(engine, b"another-secret")
    assert rejected(other_deployment, issued.key).reason == "unknown"


@pytest.mark.parametrize("key", [None, ""])
def test_missing_key(keys: KeyService, key: str | None) -> None:
    error = rejected(keys, key)
    assert error.reason == "missing"
    assert "No API key was sent" in error.message
    assert "HOKUSAI_API_KEY" in error.message
    assert "MLFLOW_TRACKING_TOKEN" in error.message
    assert "Authorization: Bearer" in error.message


def test_unknown_key(keys: KeyService) -> None:
    keys.create(name="ci", owner="tests")
    error = rejected(keys, generate_key())
    assert error.reason == "unknown"
    assert error.record is None
    assert "Unknown API key" in error.message
    assert "never issued" in error.message
    assert "hokusai keys create" in error.message


def test_malformed_keys_say_what_is_wrong(keys: KeyService) -> None:
    good = keys.create(name="ci", owner="tests").key
    mistyped = good[:-1] + ("a" if good[-1] != "a" else "b")
    cases = {
        "sk-0123456789abcdef": "does not start with hk_live_ or hk_test_",
        mistyped: "checksum does not match",
        good[:-4]: "truncated",
        good[:20] + "-" + good[21:]: "not a letter or digit",
        good + "\n": "not a letter or digit",
    }
    for text, phrase in cases.items():
        error = rejected(keys, text)
        assert error.reason == "malformed", text
        assert error.message.startswith("Malformed API key: "), error.message
        assert phrase in error.message, error.message


def test_revoked_key_names_itself_and_when(keys: KeyService, clock: Clock) -> None:
    issued = keys.create(name="ci", owner="tests")
    clock.advance(90)
    keys.revoke(issued.record.id)
    error = rejected(keys, issued.key)
    assert error.reason == "revoked"
    assert error.record is not None and error.record.id == issued.record.id
    assert issued.record.display_prefix in error.message
    assert issued.record.id in error.message
    assert "was revoked at 2030-01-01 12:01 UTC" in error.message


def test_key_expires_at_its_expiry(keys: KeyService, clock: Clock) -> None:
    issued = keys.create(name="ci", owner="tests", expires_in=timedelta(hours=1))
    clock.advance(3599)
    assert keys.authenticate(issued.key).id == issued.record.id
    clock.advance(1)
    error = rejected(keys, issued.key)
    assert error.reason == "expired"
    assert issued.record.id in error.message
    assert "expired at 2030-01-01 13:00 UTC" in error.message
    assert f"hokusai keys rotate {issued.record.id}" in error.message


def test_authenticate_cached_needs_the_store_the_first_time(keys: KeyService) -> None:
    issued = keys.create(name="ci", owner="tests")
    assert keys.authenticate_cached(issued.key) is None
    keys.authenticate(issued.key)
    cached = keys.authenticate_cached(issued.key)
    assert cached is not None and cached.id == issued.record.id
    with pytest.raises(KeyRejected) as caught:
        keys.authenticate_cached(None)
    assert caught.value.reason == "missing"


def test_a_revocation_reaches_another_replica_within_the_cache_time(
    engine: Engine, clock: Clock
) -> None:
    admin = KeyService(engine, SECRET, cache_seconds=0.5)
    replica = KeyService(engine, SECRET, cache_seconds=0.5)
    issued = admin.create(name="ci", owner="tests")
    assert replica.authenticate(issued.key).id == issued.record.id

    admin.revoke(issued.record.id)
    # The replica trusts what it verified for at most cache_seconds...
    clock.advance(0.25)
    assert replica.authenticate(issued.key).id == issued.record.id
    assert replica.authenticate_cached(issued.key) is not None
    # ...and then sees the revocation in the store.
    clock.advance(0.25)
    assert replica.authenticate_cached(issued.key) is None
    assert rejected(replica, issued.key).reason == "revoked"
    clock.advance(60)
    assert rejected(replica, issued.key).reason == "revoked"


def test_a_revocation_is_immediate_on_the_instance_that_revokes(
    keys: KeyService, clock: Clock
) -> None:
    issued = keys.create(name="ci", owner="tests")
    keys.authenticate(issued.key)
    assert keys.authenticate_cached(issued.key) is not None
    keys.revoke(issued.key)
    assert keys.authenticate_cached(issued.key) is None
    assert rejected(keys, issued.key).reason == "revoked"


def test_with_no_cache_every_check_reads_the_store(engine: Engine, clock: Clock) -> None:
    admin = KeyService(engine, SECRET)
    replica = KeyService(engine, SECRET, cache_seconds=0)
    issued = admin.create(name="ci", owner="tests")
    replica.authenticate(issued.key)
    assert replica.authenticate_cached(issued.key) is None
    admin.revoke(issued.record.id)
    assert rejected(replica, issued.key).reason == "revoked"


def test_last_used_is_written_at_most_once_a_minute(
    engine: Engine, keys: KeyService, clock: Clock
) -> None:
    issued = keys.create(name="ci", owner="tests")
    key_id = issued.record.id
    assert stored_row(engine, key_id)["last_used_at"] is None

    keys.authenticate(issued.key)
    assert utc(stored_row(engine, key_id)["last_used_at"]) == START

    for _ in range(5):  # 50 seconds of use, every 10 s
        clock.advance(10)
        keys.authenticate(issued.key)
    assert utc(stored_row(engine, key_id)["last_used_at"]) == START

    clock.advance(10)  # a minute after the last write
    keys.authenticate(issued.key)
    assert utc(stored_row(engine, key_id)["last_used_at"]) == START + timedelta(seconds=60)


def test_another_replica_respects_the_stored_last_use(engine: Engine, clock: Clock) -> None:
    first = KeyService(engine, SECRET)
    second = KeyService(engine, SECRET)
    issued = first.create(name="ci", owner="tests")
    first.authenticate(issued.key)
    clock.advance(30)
    second.authenticate(issued.key)
    assert utc(stored_row(engine, issued.record.id)["last_used_at"]) == START
    clock.advance(30)
    second.authenticate(issued.key)
    assert utc(stored_row(engine, issued.record.id)["last_used_at"]) == START + timedelta(
        seconds=60
    )


def test_a_due_last_use_write_sends_the_check_off_the_fast_path(
    engine: Engine, keys: KeyService, clock: Clock
) -> None:
    issued = keys.create(name="ci", owner="tests")
    keys.authenticate(issued.key)
    clock.wall += timedelta(seconds=61)  # the cache is fresh, the last use is not
    assert keys.authenticate_cached(issued.key) is None
    keys.authenticate(issued.key)
    assert utc(stored_row(engine, issued.record.id)["last_used_at"]) == clock.wall


# ---- finding, revoking and rotating ---------------------------------------------------


def test_resolve_by_id_prefix_or_whole_key(keys: KeyService) -> None:
    issued = keys.create(name="ci", owner="tests")
    keys.create(name="other", owner="tests")
    record = issued.record
    for reference in (record.id, record.display_prefix, issued.key, f"  {record.id}\n"):
        assert keys.resolve(reference).id == record.id, reference


@pytest.mark.parametrize("reference", ["key_0000000000000000", "hk_live_zzzzzz", "nothing"])
def test_resolve_unknown(keys: KeyService, reference: str) -> None:
    keys.create(name="ci", owner="tests")
    with pytest.raises(KeyNotFound, match="no key matches"):
        keys.resolve(reference)


def test_resolving_an_unknown_whole_key_does_not_echo_it(keys: KeyService) -> None:
    key = generate_key()
    with pytest.raises(KeyNotFound) as caught:
        keys.resolve(key)
    assert key not in str(caught.value)
    assert display_prefix(key) in str(caught.value)


def test_an_ambiguous_display_prefix_is_refused(engine: Engine, keys: KeyService) -> None:
    issued = keys.create(name="first", owner="tests")
    # A second key whose display prefix happens to be the same.
    twin = dataclasses.replace(issued.record, id="key_twin000000000000", name="second")
    with engine.begin() as conn:
        store.insert_key(conn, record=twin, key_hash=keys.hash_key(generate_key()))

    with pytest.raises(AmbiguousKeyReference) as caught:
        keys.resolve(issued.record.display_prefix)
    message = str(caught.value)
    assert issued.record.id in message and twin.id in message
    assert "use the key id" in message

    with pytest.raises(AmbiguousKeyReference):
        keys.revoke(issued.record.display_prefix)
    assert {r.id for r in keys.list()} == {issued.record.id, twin.id}
    # The id and the whole key still name one key.
    assert keys.resolve(twin.id).name == "second"
    assert keys.resolve(issued.key).id == issued.record.id


@pytest.mark.parametrize("by", ["id", "prefix", "key"])
def test_revoke(keys: KeyService, clock: Clock, by: str) -> None:
    issued = keys.create(name="ci", owner="tests")
    kept = keys.create(name="kept", owner="tests")
    reference = {
        "id": issued.record.id,
        "prefix": issued.record.display_prefix,
        "key": issued.key,
    }[by]
    clock.advance(5)
    revoked = keys.revoke(reference)
    assert revoked.id == issued.record.id
    assert revoked.revoked_at == START + timedelta(seconds=5)
    assert revoked.state(clock.wall) == "revoked"
    assert [r.id for r in keys.list()] == [kept.record.id]
    assert {r.id for r in keys.list(include_revoked=True)} == {issued.record.id, kept.record.id}
    assert keys.authenticate(kept.key).id == kept.record.id


def test_revoking_twice_keeps_the_first_time(keys: KeyService, clock: Clock) -> None:
    issued = keys.create(name="ci", owner="tests")
    first = keys.revoke(issued.record.id)
    clock.advance(3600)
    second = keys.revoke(issued.record.id)
    assert second.revoked_at == first.revoked_at == START


def test_rotate(keys: KeyService, key_admin: KeyAdmin, clock: Clock) -> None:
    old = keys.create(
        name="lscor training", owner="ana", scope=Scope.ADMIN, env="test", expires_in=timedelta(7)
    )
    clock.advance(86_400)
    new = key_admin.rotate(OPERATOR, old.key)

    assert new.key != old.key
    assert keys.authenticate(new.key).id == new.record.id
    assert rejected(keys, old.key).reason == "revoked"

    record = new.record
    assert record.id != old.record.id
    assert (record.name, record.owner, record.scope, record.env) == (
        "lscor training",
        "ana",
        Scope.ADMIN,
        "test",
    )
    assert record.rotated_from == old.record.id
    assert keys.resolve(record.id).rotated_from == old.record.id
    # The replacement gets the original lifetime, counted from its creation.
    assert record.created_at == START + timedelta(days=1)
    assert record.expires_at == record.created_at + timedelta(days=7)
    assert keys.resolve(old.record.id).revoked_at == START + timedelta(days=1)


def test_rotating_an_expired_key_gives_a_fresh_lifetime(
    keys: KeyService, key_admin: KeyAdmin, clock: Clock
) -> None:
    old = keys.create(name="short", owner="ana", expires_in=timedelta(seconds=1))
    clock.advance(5)
    assert rejected(keys, old.key).reason == "expired"

    new = key_admin.rotate(OPERATOR, old.record.id)
    # Not the 1 s it had, which would be spent before anyone could use the key.
    assert new.record.expires_at == START + timedelta(seconds=5) + MIN_INHERITED_LIFETIME
    clock.advance(60)
    assert keys.authenticate(new.key).id == new.record.id


def test_rotate_with_a_lifetime_of_its_own(
    keys: KeyService, key_admin: KeyAdmin, clock: Clock
) -> None:
    old = keys.create(name="ci", owner="ana", expires_in=timedelta(days=7))
    clock.advance(10)
    new = key_admin.rotate(OPERATOR, old.record.id, expires_in=timedelta(hours=2))
    assert new.record.expires_at == START + timedelta(seconds=10, hours=2)
    forever = keys.create(name="svc", owner="ana")
    assert key_admin.rotate(
        OPERATOR, forever.record.id, expires_in=timedelta(days=1)
    ).record.expires_at == (START + timedelta(seconds=10, days=1))
    with pytest.raises(ValueError, match="must be positive"):
        key_admin.rotate(OPERATOR, new.record.id, expires_in=timedelta(0))
    assert keys.resolve(new.record.id).revoked_at is None, "a refused rotation changes nothing"


def test_rotating_a_key_without_expiry_gives_a_key_without_expiry(
    keys: KeyService, key_admin: KeyAdmin
) -> None:
    old = keys.create(name="ci", owner="tests")
    new = key_admin.rotate(OPERATOR, old.record.id)
    assert new.record.expires_at is None
    assert new.record.scope is old.record.scope


def test_a_revoked_key_cannot_be_rotated(keys: KeyService, key_admin: KeyAdmin) -> None:
    old = keys.create(name="ci", owner="tests")
    keys.revoke(old.record.id)
    with pytest.raises(ValueError, match="is revoked; create a new key"):
        key_admin.rotate(OPERATOR, old.record.id)
    assert keys.count() == 1
