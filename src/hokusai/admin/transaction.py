"""How a service touches the store: authorized, in one transaction, audited, and with
store failures turned into domain errors.

:func:`change` is the only way a service writes. It authorizes the actor, opens one
transaction, and refuses to commit unless the change wrote its audit row (through
:meth:`Change.audit`, on the same connection): "every change is audited" holds by
construction, and a failed audit insert rolls the change back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from hokusai import audit_store
from hokusai.admin.actor import Actor, Outcome
from hokusai.audit_records import AuditRow
from hokusai.authorization import DENIED, NEEDED, Action, authorize
from hokusai.errors import DomainError, InternalError, PermissionDenied, Unavailable

log = logging.getLogger("hokusai.admin")


@contextmanager
def store_errors() -> Iterator[None]:
    """Turn a failure of the auth store into :class:`Unavailable`.

    The message names only the kind of failure: a driver's message can carry the
    statement's parameters, and those include key hashes.
    """
    try:
        yield
    except DomainError:
        raise
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise Unavailable(
            f"the auth store failed ({type(cause).__name__}); nothing was changed, try again"
        ) from exc


class Change:
    """One transaction's change; :meth:`audit` records it on the same connection.

    ``workspace`` is the workspace the change was authorized for (None: platform-wide);
    when the target's workspace is known only once it is read (a key named by its id),
    :meth:`within` authorizes that one before anything is changed."""

    def __init__(
        self, engine: Engine, conn: Connection, actor: Actor, action: Action, workspace: str | None
    ) -> None:
        self.engine = engine
        self.conn = conn
        self.actor = actor
        self.action = action
        self.workspace = workspace
        self.audited = False

    def within(self, workspace: str | None) -> None:
        """Authorize the change for the target's ``workspace`` (refusals are audited)."""
        permit(self.engine, self.actor, self.action, workspace)
        self.workspace = workspace

    def audit(self, *, target: str, outcome: Outcome = Outcome.DONE, **detail: Any) -> None:
        """Write the audit row: who (the actor), what (the action), to what (``target``)."""
        origin = self.actor.origin
        audit_store.insert_entry(
            self.conn,
            entry=AuditRow(
                request_id=origin.request_id,
                key_id=self.actor.key_id,
                owner=self.actor.name,
                action=self.action.value,
                method=origin.method,
                path=origin.path,
                status=origin.status(outcome),
                client=origin.client,
                detail={"target": target, **detail},
                workspace=self.workspace,
            ),
        )
        self.audited = True


def permit(engine: Engine, actor: Actor, action: Action, workspace: str | None = None) -> None:
    """:func:`authorize`, recording a refusal in the audit log before raising it."""
    try:
        authorize(actor, action, workspace)
    except PermissionDenied as refusal:
        _record_refusal(engine, actor, action, workspace, refusal)
        raise


@contextmanager
def change(
    engine: Engine, actor: Actor, action: Action, workspace: str | None = None
) -> Iterator[Change]:
    """Authorize (for ``workspace``; None: platform-wide), then one transaction that
    commits only with its audit row."""
    permit(engine, actor, action, workspace)
    with store_errors(), engine.begin() as conn:
        unit = Change(engine, conn, actor, action, workspace)
        yield unit
        if not unit.audited:
            # Raised inside the transaction: the unaudited change is rolled back.
            raise InternalError(f"{action.value} changed the store without its audit row")


@contextmanager
def reading(
    engine: Engine, actor: Actor, action: Action, workspace: str | None = None
) -> Iterator[Connection]:
    """Authorize (for ``workspace``), then a connection for reads."""
    permit(engine, actor, action, workspace)
    with store_errors(), engine.connect() as conn:
        yield conn


def _record_refusal(
    engine: Engine,
    actor: Actor,
    action: Action,
    workspace: str | None,
    refusal: PermissionDenied,
) -> None:
    origin = actor.origin
    entry = AuditRow(
        request_id=origin.request_id,
        key_id=actor.key_id,
        owner=actor.name,
        action=DENIED,
        method=origin.method,
        path=origin.path,
        status=origin.status(Outcome.DENIED),
        client=origin.client,
        detail={"wanted": action.value, "needed": NEEDED[action].value, **refusal.details},
        workspace=workspace if workspace is not None else actor.workspace,
    )
    try:
        with engine.begin() as conn:
            audit_store.insert_entry(conn, entry=entry)
    except SQLAlchemyError as exc:
        # The refusal stands whether or not it could be written down.
        log.warning("could not record a refused %s: %s", action.value, type(exc).__name__)
