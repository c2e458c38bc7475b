"""``WorkspaceAdmin``: create, list, show, update and delete workspaces (one per team),
and the public keys each trusts to sign its versions.

A workspace is two things kept in step: MLflow's own workspace (which isolates the
team's experiments, runs, models and artifacts) and the platform's row (its protected
aliases, promotion gate and whether protected aliases need signed versions, which its
keys and webhook endpoints name). Creating and deleting one is platform-wide (a platform
admin key, or the operator); changing its settings or trusted keys needs ``admin`` in
it; every key may read its own workspace and its trusted keys.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError

from hokusai.admin.actor import Actor, Outcome
from hokusai.admin.transaction import change, reading
from hokusai.authorization import Action
from hokusai.db.schema import webhook_endpoints
from hokusai.errors import Conflict, DomainError, InvalidInput, NotFound
from hokusai.keys import store as key_store
from hokusai.signing import KeyFormatError, public_key
from hokusai.timestamps import utcnow
from hokusai.workspaces import store
from hokusai.workspaces.mlflow_api import MlflowWorkspaces
from hokusai.workspaces.records import (
    DEFAULT_PROTECTED_ALIASES,
    DEFAULT_WORKSPACE,
    TrustedKeyRecord,
    WorkspaceRecord,
    check_aliases,
    check_workspace_name,
)

log = logging.getLogger("hokusai.admin")

MAX_DESCRIPTION = 1000
MAX_LABEL = 200
MAX_TRUSTED_KEYS = 100
# Why a deleted workspace's webhook endpoints stopped (shown by ``hokusai webhooks``).
DISABLED_BY_DELETE = "disabled: workspace deleted"


class WorkspaceAdmin:
    """Workspace administration; every method takes the acting :class:`Actor` first.

    ``mlflow`` gives the client of MLflow's workspace API; it is called only by the
    operations that change MLflow (create, delete), so reading workspaces on the local
    store needs no running MLflow. ``on_revoked`` is told the id of every key revoked by
    a delete, after the commit (as :class:`~hokusai.admin.keys.KeyAdmin`'s)."""

    def __init__(
        self,
        engine: Engine,
        mlflow: Callable[[], MlflowWorkspaces],
        *,
        on_revoked: Callable[[str], None] | None = None,
    ) -> None:
        self._engine = engine
        self._mlflow = mlflow
        self._on_revoked = on_revoked

    def create(
        self,
        actor: Actor,
        name: str,
        *,
        description: str = "",
        protected_aliases: builtins.list[str] | tuple[str, ...] | None = None,
        promotion_gate: bool = False,
        require_signed_versions: bool = False,
    ) -> WorkspaceRecord:
        """A new workspace, in MLflow and in the platform's store, or neither.

        MLflow's workspace is created inside the transaction that inserts the row, so the
        row is committed only once MLflow has it; if the commit then fails, an MLflow
        workspace this call created is deleted again. One that already existed under the
        name (made directly in MLflow, or left by an earlier attempt) is adopted."""
        name = check_workspace_name(name)
        if name == DEFAULT_WORKSPACE:
            raise Conflict(f"workspace {DEFAULT_WORKSPACE!r} always exists")
        aliases = check_aliases(
            DEFAULT_PROTECTED_ALIASES if protected_aliases is None else protected_aliases
        )
        description = _description(description)
        made_in_mlflow: MlflowWorkspaces | None = None
        try:
            with change(self._engine, actor, Action.WORKSPACES_CREATE) as unit:
                if store.get_workspace(unit.conn, name=name) is not None:
                    raise Conflict(f"workspace {name!r} already exists")
                now = utcnow()
                record = WorkspaceRecord(
                    name=name,
                    description=description,
                    protected_aliases=aliases,
                    promotion_gate=bool(promotion_gate),
                    created_at=now,
                    updated_at=now,
                    require_signed_versions=bool(require_signed_versions),
                )
                try:
                    # A concurrent create of the same name: the rollback undoes this one.
                    store.insert_workspace(unit.conn, record=record)
                except IntegrityError:
                    raise Conflict(f"workspace {name!r} already exists") from None
                mlflow = self._mlflow()
                created = mlflow.create(name, description)
                if created:
                    made_in_mlflow = mlflow
                unit.audit(
                    target=name,
                    outcome=Outcome.CREATED,
                    mlflow="created" if created else "adopted",
                    **record.public(),
                )
        except BaseException:
            if made_in_mlflow is not None:
                _undo_create(made_in_mlflow, name)
            raise
        return record

    def list(self, actor: Actor) -> builtins.list[WorkspaceRecord]:
        """Every workspace for a platform admin; a workspace's key sees its own."""
        with reading(self._engine, actor, Action.WORKSPACES_LIST, actor.workspace) as conn:
            found = store.list_workspaces(conn)
        if actor.workspace is None:
            return found
        return [w for w in found if w.name == actor.workspace]

    def get(self, actor: Actor, name: str) -> WorkspaceRecord:
        name = _name(name)
        with reading(self._engine, actor, Action.WORKSPACES_GET, name) as conn:
            return _existing(conn, name)

    def update(
        self,
        actor: Actor,
        name: str,
        *,
        description: str | None = None,
        protected_aliases: builtins.list[str] | tuple[str, ...] | None = None,
        promotion_gate: bool | None = None,
        require_signed_versions: bool | None = None,
    ) -> WorkspaceRecord:
        """Change a workspace's settings (``None``: leave as it is); needs ``admin`` in it."""
        name = _name(name)
        aliases = None if protected_aliases is None else check_aliases(protected_aliases)
        description = None if description is None else _description(description)
        if (
            description is None
            and aliases is None
            and promotion_gate is None
            and require_signed_versions is None
        ):
            raise InvalidInput(
                "nothing to change: give a description, protected aliases, the promotion "
                "gate or whether protected aliases require signed versions"
            )
        with change(self._engine, actor, Action.WORKSPACES_UPDATE, name) as unit:
            before = _existing(unit.conn, name)
            store.update_workspace(
                unit.conn,
                name=name,
                at=utcnow(),
                description=description,
                protected_aliases=aliases,
                promotion_gate=promotion_gate,
                require_signed_versions=require_signed_versions,
            )
            after = _existing(unit.conn, name)
            unit.audit(target=name, **_changes(before, after))
        return after

    def delete(self, actor: Actor, name: str) -> WorkspaceRecord:
        """Delete a workspace that holds nothing in MLflow: MLflow's workspace, then (in
        one audited transaction) its row, its keys (revoked) and its webhook endpoints
        (disabled). ``default`` cannot be deleted.

        If the transaction fails after MLflow deleted its workspace, deleting again
        finishes the job (MLflow's workspace being gone already is fine)."""
        name = _name(name)
        if name == DEFAULT_WORKSPACE:
            raise InvalidInput(f"workspace {DEFAULT_WORKSPACE!r} cannot be deleted")
        with change(self._engine, actor, Action.WORKSPACES_DELETE) as unit:
            record = _existing(unit.conn, name)
            in_mlflow = self._mlflow().delete(name)
            now = utcnow()
            keys = key_store.list_keys(unit.conn, include_revoked=False, workspace=name)
            revoked = [k.id for k in keys if key_store.mark_revoked(unit.conn, key_id=k.id, at=now)]
            disabled = unit.conn.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.workspace == name, webhook_endpoints.c.enabled)
                .values(enabled=False, disabled_reason=DISABLED_BY_DELETE, updated_at=now)
            ).rowcount
            untrusted = store.delete_trusted_keys(unit.conn, workspace=name)
            store.delete_workspace(unit.conn, name=name)
            unit.audit(
                target=name,
                deleted=name,
                mlflow="deleted" if in_mlflow else "absent",
                revoked_keys=revoked,
                disabled_endpoints=int(disabled or 0),
                trusted_keys_removed=untrusted,
            )
        for key_id in revoked:
            if self._on_revoked is not None:
                self._on_revoked(key_id)
        return record

    # ---- trusted keys ---------------------------------------------------------------

    def trust_key(
        self, actor: Actor, name: str, public_key_pem: str, *, label: str = ""
    ) -> TrustedKeyRecord:
        """Trust the elliptic-curve public key ``public_key_pem`` (PEM) to sign the
        workspace's versions; needs ``admin`` in it. A key trusted already is a
        :class:`Conflict` naming its fingerprint."""
        name = _name(name)
        try:
            key = public_key(public_key_pem)
        except KeyFormatError as exc:
            raise InvalidInput(str(exc)) from None
        label = _label(label)
        with change(self._engine, actor, Action.WORKSPACES_TRUST_KEY, name) as unit:
            _existing(unit.conn, name)
            if store.get_trusted_key(unit.conn, workspace=name, fingerprint=key.fingerprint):
                raise Conflict(f"workspace {name!r} trusts key {key.fingerprint} already")
            if len(store.list_trusted_keys(unit.conn, workspace=name)) >= MAX_TRUSTED_KEYS:
                raise InvalidInput(
                    f"a workspace trusts at most {MAX_TRUSTED_KEYS} keys: remove one first"
                )
            record = TrustedKeyRecord(
                workspace=name,
                fingerprint=key.fingerprint,
                public_key=key.pem,
                label=label,
                added_by=actor.label[:MAX_LABEL],
                added_at=utcnow(),
            )
            try:
                store.insert_trusted_key(unit.conn, record=record)
            except IntegrityError:  # the same key, trusted concurrently
                raise Conflict(f"workspace {name!r} trusts key {key.fingerprint} already") from None
            unit.audit(
                target=name,
                outcome=Outcome.CREATED,
                fingerprint=key.fingerprint,
                label=label,
            )
        return record

    def untrust_key(self, actor: Actor, name: str, fingerprint: str) -> TrustedKeyRecord:
        """Stop trusting the key ``fingerprint``: versions it signed no longer load with
        ``verify="signature"`` nor take a protected alias that requires signed versions."""
        name = _name(name)
        fingerprint = fingerprint.strip() if isinstance(fingerprint, str) else fingerprint
        with change(self._engine, actor, Action.WORKSPACES_UNTRUST_KEY, name) as unit:
            _existing(unit.conn, name)
            found = store.get_trusted_key(unit.conn, workspace=name, fingerprint=fingerprint)
            if found is None:
                raise NotFound(
                    f"workspace {name!r} trusts no key {fingerprint!r} "
                    f"(hokusai workspaces trusted-keys {name} lists them)"
                )
            store.delete_trusted_key(unit.conn, workspace=name, fingerprint=fingerprint)
            unit.audit(target=name, fingerprint=fingerprint, label=found.label)
        return found

    def trusted_keys(self, actor: Actor, name: str) -> builtins.list[TrustedKeyRecord]:
        """The keys the workspace trusts, oldest first; any key of the workspace may read
        them (they are public keys)."""
        name = _name(name)
        with reading(self._engine, actor, Action.WORKSPACES_TRUSTED_KEYS, name) as conn:
            _existing(conn, name)
            return store.list_trusted_keys(conn, workspace=name)


def _undo_create(mlflow: MlflowWorkspaces, name: str) -> None:
    """Delete the MLflow workspace of a create that failed after making it."""
    with contextlib.suppress(DomainError):
        mlflow.delete(name)
        return
    # Left behind: a later create of the same name adopts it.
    log.warning("could not delete MLflow workspace %r after a failed create", name)


def _existing(conn: Any, name: str) -> WorkspaceRecord:
    found = store.get_workspace(conn, name=name)
    if found is None:
        raise NotFound(f"no workspace {name!r} (hokusai workspaces list shows them)")
    return found


def _name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else name
    if not name:
        raise InvalidInput("name a workspace")
    return name


def _description(text: str) -> str:
    text = text.strip() if isinstance(text, str) else text
    if not isinstance(text, str) or len(text) > MAX_DESCRIPTION:
        raise InvalidInput(f"a description is at most {MAX_DESCRIPTION} characters")
    return text


def _label(text: str) -> str:
    text = text.strip() if isinstance(text, str) else text
    if not isinstance(text, str) or len(text) > MAX_LABEL:
        raise InvalidInput(f"a key's label is at most {MAX_LABEL} characters")
    return text


def _changes(before: WorkspaceRecord, after: WorkspaceRecord) -> dict[str, Any]:
    """What changed, as ``{field: [before, after]}`` for the audit row."""
    old, new = before.public(), after.public()
    return {
        field: [old[field], new[field]]
        for field in (
            "description",
            "protected_aliases",
            "promotion_gate",
            "require_signed_versions",
        )
        if old[field] != new[field]
    }
