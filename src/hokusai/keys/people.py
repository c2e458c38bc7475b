"""People who sign in with single sign-on, as rows of ``api_keys``.

A person is a principal like a key, so everything that decides about keys — roles,
workspaces, sessions, the audit log, revocation — decides about them unchanged. Their row
is no key: its hash is of random bytes nobody kept, so it cannot be presented, and rotating
it is refused (``admin/keys.py``). It is found again by ``subject`` (the provider's issuer
and ``sub``, stable where an email address is not), and its name, owner, role and workspace
follow the provider and the role map at every sign-in. A revoked row stays revoked: the
person is refused until an admin decides otherwise.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from hokusai.keys import store
from hokusai.keys.records import KeyRecord
from hokusai.keys.scopes import Scope
from hokusai.timestamps import utcnow

ENV = "sso"
DISPLAY_PREFIX = "sso"
NAME_PREFIX = "single sign-on: "


@dataclass(frozen=True)
class Person:
    subject: str
    name: str
    email: str | None

    @property
    def owner(self) -> str:
        return f"{self.name} <{self.email}>" if self.email else self.name


class PersonRevoked(Exception):
    """The person's row was revoked: they may not sign in."""

    def __init__(self, record: KeyRecord) -> None:
        super().__init__(record.id)
        self.record = record


def sign_in(
    engine: Engine, hash_key: Callable[[str], str], person: Person, *, scope: Scope, workspace: str
) -> KeyRecord:
    """The person's row, created or brought up to date; :class:`PersonRevoked` if revoked."""
    try:
        return _sign_in_once(engine, hash_key, person, scope=scope, workspace=workspace)
    except IntegrityError:
        # The same person's first sign-in, twice at once (two tabs, two replicas): the
        # other one made the row; this one now brings it up to date.
        return _sign_in_once(engine, hash_key, person, scope=scope, workspace=workspace)


def _sign_in_once(
    engine: Engine, hash_key: Callable[[str], str], person: Person, *, scope: Scope, workspace: str
) -> KeyRecord:
    name = (NAME_PREFIX + (person.email or person.name))[:200]
    owner = person.owner[:200]
    now = utcnow()
    with engine.begin() as conn:
        found = store.get_by_subject(conn, subject=person.subject)
        if found is not None:
            if found.revoked_at is not None:
                raise PersonRevoked(found)
            store.update_person(
                conn,
                key_id=found.id,
                name=name,
                owner=owner,
                scope=scope,
                workspace=workspace,
                at=now,
            )
            found = store.get_by_subject(conn, subject=person.subject)
            assert found is not None
            return found
        record = KeyRecord(
            id="key_" + secrets.token_hex(8),
            display_prefix=DISPLAY_PREFIX,
            name=name,
            owner=owner,
            scope=scope,
            env=ENV,
            created_at=now,
            expires_at=None,
            revoked_at=None,
            last_used_at=now,
            rotated_from=None,
            workspace=workspace,
            subject=person.subject,
        )
        # The hash of 32 random bytes that are dropped at once: no key matches it.
        unusable = hash_key(secrets.token_urlsafe(32))
        store.insert_key(conn, record=record, key_hash=unusable)
        return record
