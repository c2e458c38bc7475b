"""A single-tenant store moves into workspaces with nothing lost (migration 0005).

The store is built at revision 0004 with rows written in that revision's columns (keys of
every scope, a webhook endpoint, an event, audit rows), then upgraded: read and write
keys belong to ``default``, admin keys are platform admin keys and still authenticate,
the endpoint and the event are ``default``'s, and every row is still there. On SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import Engine, func, select, text

from hokusai.db.engine import make_engine
from hokusai.db.migrate import alembic_config, upgrade
from hokusai.db.schema import audit_log, events, webhook_endpoints, workspaces
from hokusai.keys import store
from hokusai.keys.format import generate_key, parse_key
from hokusai.keys.service import KeyService
from hokusai.workspaces import store as workspace_store
from hokusai.workspaces.records import DEFAULT_PROTECTED_ALIASES, DEFAULT_WORKSPACE

SECRET = b"migration-test-secret"
AT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def old_store(store_url: str) -> Iterator[Engine]:
    """The auth store as revision 0004 left it, empty."""
    engine = make_engine(store_url)
    command.upgrade(alembic_config(engine), "0004")
    yield engine
    engine.dispose()


def _insert_key(conn: object, verifier: KeyService, scope: str, number: int) -> str:
    key = generate_key("live")
    conn.execute(  # type: ignore[attr-defined]
        text(
            "INSERT INTO api_keys (id, key_hash, display_prefix, name, owner, scope, env, "
            "created_at) VALUES (:id, :hash, :prefix, :name, 'ana', :scope, 'live', :at)"
        ),
        {
            "id": f"key_{scope}{number:03d}",
            "hash": verifier.hash_key(key),
            "prefix": parse_key(key).display_prefix,
            "name": f"{scope} key",
            "scope": scope,
            "at": AT,
        },
    )
    return key


def test_a_single_tenant_store_moves_into_default_with_nothing_lost(old_store: Engine) -> None:
    verifier = KeyService(old_store, SECRET, cache_seconds=0)
    with old_store.begin() as conn:
        issued = {
            scope: _insert_key(conn, verifier, scope, n)
            for n, scope in enumerate(("read", "write", "admin"))
        }
        conn.execute(
            text(
                "INSERT INTO webhook_endpoints (id, url, description, event_types, "
                "secret_encrypted, enabled, created_at, updated_at) VALUES ('wh_old', "
                "'https://hooks.example.com/x', 'deploys', '[]', 'sealed', :yes, :at, :at)"
            ),
            {"at": AT, "yes": True},
        )
        conn.execute(
            text(
                "INSERT INTO events (id, type, occurred_at, model_name, model_version, payload, "
                "source) VALUES ('evt_old', 'model_version.created', :at, 'LSCOR', '1', '{}', "
                "'gateway')"
            ),
            {"at": AT},
        )
        for n in range(3):
            conn.execute(
                text(
                    "INSERT INTO audit_log (at, request_id, key_id, owner, action, method, path, "
                    "status) VALUES (:at, :rid, 'key_write001', 'ana', 'mlflow.write', 'POST', "
                    "'/api/2.0/mlflow/registered-models/create', 200)"
                ),
                {"at": AT, "rid": f"req-{n}"},
            )

    upgrade(old_store)

    with old_store.connect() as conn:
        keys = {k.scope.value: k for k in store.list_keys(conn, include_revoked=True)}
        assert set(keys) == {"read", "write", "admin"}
        assert keys["read"].workspace == keys["write"].workspace == DEFAULT_WORKSPACE
        assert keys["admin"].workspace is None and keys["admin"].is_platform_admin
        assert all(k.models == () and k.owner == "ana" for k in keys.values())
        default = workspace_store.get_workspace(conn, name=DEFAULT_WORKSPACE)
        assert default is not None
        assert default.protected_aliases == DEFAULT_PROTECTED_ALIASES
        assert not default.promotion_gate
        assert conn.execute(select(func.count()).select_from(workspaces)).scalar_one() == 1
        endpoint = conn.execute(select(webhook_endpoints)).one()._mapping
        assert (endpoint["id"], endpoint["workspace"], endpoint["url"]) == (
            "wh_old",
            DEFAULT_WORKSPACE,
            "https://hooks.example.com/x",
        )
        event = conn.execute(select(events)).one()._mapping
        assert (event["id"], event["workspace"], event["model_name"]) == (
            "evt_old",
            DEFAULT_WORKSPACE,
            "LSCOR",
        )
        rows = conn.execute(select(audit_log)).all()
        assert [r._mapping["request_id"] for r in rows] == ["req-0", "req-1", "req-2"]
        # Written by a platform that had one workspace: they keep none.
        assert {r._mapping["workspace"] for r in rows} == {None}

    # Every key still authenticates, with its place in the new model.
    for scope, key in issued.items():
        record = verifier.authenticate(key)
        assert record.scope.value == scope
        assert record.workspace == (None if scope == "admin" else DEFAULT_WORKSPACE)
