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
from hokusai.admin.authorization import DENIED, NEEDED, Action, authorize
from hokusai.audit_records import AuditRow
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
    """One transaction's change; :meth:`audit` records it on the same connection."""

    def __init__(self, conn: Connection, actor: Actor, action: Action) -> None:
        self.conn = conn
        self.actor = actor
        self.action = action
        self.audited = False

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
            ),
        )
        self.audited = True


def permit(engine: Engine, actor: Actor, action: Action) -> None:
    """:func:`authorize`, recording a refusal in the audit log before raising it."""
    try:
        authorize(actor, action)
    except PermissionDenied:
        _record_refusal(engine, actor, action)
        raise


@contextmanager
def change(engine: Engine, actor: Actor, action: Action) -> Iterator[Change]:
    """Authorize, then one transaction that commits only with its audit row."""
    permit(engine, actor, action)
    with store_errors(), engine.begin() as conn:
        unit = Change(conn, actor, action)
        yield unit
        if not unit.audited:
            # Raised inside the transaction: the unaudited change is rolled back.
            raise InternalError(f"{action.value} changed the store without its audit row")


@contextmanager
def reading(engine: Engine, actor: Actor, action: Action) -> Iterator[Connection]:
    """Authorize, then a connection for reads."""
    permit(engine, actor, action)
    with store_errors(), engine.connect() as conn:
        yield conn


def _record_refusal(engine: Engine, actor: Actor, action: Action) -> None:
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
        detail={"wanted": action.value, "needed": NEEDED[action].value},
    )
    try:
        with engine.begin() as conn:
            audit_store.insert_entry(conn, entry=entry)
    except SQLAlchemyError as exc:
        # The refusal stands whether or not it could be written down.
        log.warning("could not record a refused %s: %s", action.value, type(exc).__name__)
