"""``KeyAdmin``: the lifecycle of API keys — create, list, get, revoke, rotate, validate.

Verification on the gateway's hot path stays in :class:`hokusai.keys.service.KeyService`
(the cache, ``last_used_at``); this service is what every front-end calls to manage
keys, so the checks, the transaction and the audit row are the same from anywhere.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from hokusai.admin.actor import Actor, Outcome
from hokusai.admin.authorization import Action
from hokusai.admin.transaction import change, permit, reading, store_errors
from hokusai.durations import check_duration, parse_duration
from hokusai.errors import Conflict, InvalidInput, NotFound
from hokusai.keys import store
from hokusai.keys.format import ENVIRONMENTS, generate_key, parse_key
from hokusai.keys.records import IssuedKey, KeyCheck, KeyRecord, Lifetime
from hokusai.keys.scopes import Scope
from hokusai.keys.service import KeyRejected, KeyService
from hokusai.timestamps import utcnow

MAX_TEXT = 200
# A replacement that inherits its lifetime gets at least this long: a key rotated because
# its very short lifetime ran out must not be born (all but) expired again.
MIN_INHERITED_LIFETIME = timedelta(hours=1)


class KeyAdmin:
    """Key administration; every method takes the acting :class:`Actor` first.

    ``on_revoked`` is told the id of every key revoked (also by rotation), after the
    commit: the gateway passes its verifier's cache eviction, so a revocation through
    this process takes effect at once rather than within the cache's TTL.
    """

    def __init__(
        self,
        engine: Engine,
        verifier: KeyService,
        *,
        on_revoked: Callable[[str], None] | None = None,
    ) -> None:
        self._engine = engine
        self._verifier = verifier
        self._on_revoked = on_revoked

    def create(
        self,
        actor: Actor,
        *,
        name: str,
        scope: Scope | str = Scope.WRITE,
        owner: str | None = None,
        env: str = "live",
        expires_in: timedelta | str | None = None,
    ) -> IssuedKey:
        """A new key (shown only in the returned :class:`IssuedKey`); ``owner`` defaults to
        the actor's name, ``expires_in`` (``"30d"`` or a timedelta) to no expiry."""
        scope = _scope(scope)
        name, owner = _text("name", name), _text("owner", owner or actor.name)
        if env not in ENVIRONMENTS:
            raise InvalidInput(f"env must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
        lifetime = _duration(expires_in)
        with change(self._engine, actor, Action.KEYS_CREATE) as unit:
            issued = self._insert(
                unit.conn, name=name, owner=owner, scope=scope, env=env, lifetime=lifetime
            )
            unit.audit(
                target=issued.record.id,
                outcome=Outcome.CREATED,
                created=issued.record.id,
                scope=scope.value,
            )
        return issued

    def list(self, actor: Actor, *, include_revoked: bool = False) -> list[KeyRecord]:
        with reading(self._engine, actor, Action.KEYS_LIST) as conn:
            return store.list_keys(conn, include_revoked=include_revoked)

    def get(self, actor: Actor, reference: str) -> KeyRecord:
        """A key by its id, its display prefix or the whole key."""
        with reading(self._engine, actor, Action.KEYS_GET) as conn:
            return self._resolve(conn, reference)

    def revoke(self, actor: Actor, reference: str) -> KeyRecord:
        """Revoke a key (again is harmless): every gateway refuses it within the cache TTL."""
        with change(self._engine, actor, Action.KEYS_REVOKE) as unit:
            target = self._resolve(unit.conn, reference)
            store.mark_revoked(unit.conn, key_id=target.id, at=utcnow())
            unit.audit(target=target.id, revoked=target.id)
            record = self._resolve(unit.conn, target.id)
        self._revoked(record.id)
        return record

    def rotate(
        self,
        actor: Actor,
        reference: str,
        *,
        expires_in: timedelta | str | Lifetime | None = Lifetime.SAME,
    ) -> IssuedKey:
        """Replace a key: a new key with the same name, owner, scope and env, and the old
        one revoked, in one transaction.

        The new key's expiry is ``expires_in`` from now, or by default the old key's
        lifetime counted from now and at least :data:`MIN_INHERITED_LIFETIME` (none if the
        old key never expired) — so an expired key rotates into a fresh, working one.
        """
        wanted = self._lifetime(expires_in)
        with change(self._engine, actor, Action.KEYS_ROTATE) as unit:
            old = self._resolve(unit.conn, reference)
            if old.revoked_at is not None:
                raise InvalidInput(f"{old.id} is revoked; create a new key instead of rotating it")
            lifetime: timedelta | None
            if wanted is Lifetime.SAME:
                lifetime = (
                    max(old.expires_at - old.created_at, MIN_INHERITED_LIFETIME)
                    if old.expires_at
                    else None
                )
            elif wanted is Lifetime.NEVER:
                lifetime = None
            else:
                lifetime = wanted
            if not store.mark_revoked(unit.conn, key_id=old.id, at=utcnow()):
                raise Conflict(f"{old.id} was revoked while it was being rotated; nothing changed")
            issued = self._insert(
                unit.conn,
                name=old.name,
                owner=old.owner,
                scope=old.scope,
                env=old.env,
                lifetime=lifetime,
                rotated_from=old.id,
            )
            unit.audit(target=old.id, rotated=old.id, replacement=issued.record.id)
        self._revoked(old.id)
        return issued

    def validate(self, actor: Actor, key: str) -> KeyCheck:
        """Check a key another service was handed; the answer never contains the key."""
        permit(self._engine, actor, Action.KEYS_VALIDATE)
        with store_errors():
            try:
                record = self._verifier.authenticate(key)
            except KeyRejected as rejected:
                return KeyCheck(False, rejected.reason, rejected.message, rejected.record)
        return KeyCheck(True, None, None, record)

    # ---- inside a transaction --------------------------------------------------------

    def _insert(
        self,
        conn: Connection,
        *,
        name: str,
        owner: str,
        scope: Scope,
        env: str,
        lifetime: timedelta | None,
        rotated_from: str | None = None,
    ) -> IssuedKey:
        key = generate_key(env)
        now = utcnow()
        record = KeyRecord(
            id="key_" + secrets.token_hex(8),
            display_prefix=parse_key(key).display_prefix,
            name=name,
            owner=owner,
            scope=scope,
            env=env,
            created_at=now,
            expires_at=_expiry(now, lifetime),
            revoked_at=None,
            last_used_at=None,
            rotated_from=rotated_from,
        )
        store.insert_key(conn, record=record, key_hash=self._verifier.hash_key(key))
        return IssuedKey(key=key, record=record)

    def _resolve(self, conn: Connection, reference: str) -> KeyRecord:
        reference = reference.strip()
        if not reference:
            raise InvalidInput("name a key by its id, its display prefix or the whole key")
        key_hash = self._verifier.hash_key(reference) if reference.startswith("hk_") else None
        matches = store.find(conn, key_id=reference, prefix=reference, key_hash=key_hash)
        if not matches:
            raise NotFound(f"no key matches {safe_reference(reference)!r}")
        if len(matches) > 1:
            ids = ", ".join(m.id for m in matches)
            raise InvalidInput(
                f"{safe_reference(reference)!r} matches several keys ({ids}); use the key id"
            )
        return matches[0]

    def _lifetime(self, expires_in: timedelta | str | Lifetime | None) -> timedelta | Lifetime:
        if expires_in is None or expires_in == "":
            return Lifetime.SAME
        if isinstance(expires_in, Lifetime):
            return expires_in
        if isinstance(expires_in, str) and expires_in.strip().lower() == Lifetime.NEVER.value:
            return Lifetime.NEVER
        lifetime = _duration(expires_in)
        assert lifetime is not None
        return lifetime

    def _revoked(self, key_id: str) -> None:
        if self._on_revoked is not None:
            self._on_revoked(key_id)


def safe_reference(reference: str) -> str:
    """Never echo a whole key back: show only its display prefix."""
    if reference.startswith("hk_") and len(reference) > 20:
        return reference[:14] + "…"
    return reference


def _scope(scope: Scope | str) -> Scope:
    try:
        return Scope(scope)
    except ValueError:
        allowed = ", ".join(s.value for s in Scope)
        raise InvalidInput(f"scope must be one of {allowed}, not {scope!r}") from None


def _text(field: str, value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_TEXT:
        raise InvalidInput(f"a key needs a {field} of 1 to {MAX_TEXT} characters")
    return value


def _duration(value: timedelta | str | None) -> timedelta | None:
    if value is None:
        return None
    return check_duration(parse_duration(value) if isinstance(value, str) else value)


def _expiry(now: datetime, lifetime: timedelta | None) -> datetime | None:
    return now + lifetime if lifetime is not None else None
