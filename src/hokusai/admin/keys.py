"""``KeyAdmin``: the lifecycle of API keys — create, list, get, revoke, rotate, validate.

Verification on the gateway's hot path stays in :class:`hokusai.keys.service.KeyService`
(the cache, ``last_used_at``); this service is what every front-end calls to manage
keys, so the checks, the transaction and the audit row are the same from anywhere.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from hokusai.admin.actor import Actor, Outcome
from hokusai.admin.transaction import change, permit, reading, store_errors
from hokusai.authorization import Action
from hokusai.durations import check_duration, parse_duration
from hokusai.errors import Conflict, InvalidInput, NotFound
from hokusai.keys import store
from hokusai.keys.format import ENVIRONMENTS, generate_key, parse_key
from hokusai.keys.records import IssuedKey, KeyCheck, KeyRecord, Lifetime
from hokusai.keys.scopes import Scope
from hokusai.keys.service import KeyRejected, KeyService
from hokusai.timestamps import utcnow
from hokusai.workspaces import store as workspace_store
from hokusai.workspaces.records import DEFAULT_WORKSPACE, check_workspace_name

MAX_TEXT = 200
# A replacement that inherits its lifetime gets at least this long: a key rotated because
# its very short lifetime ran out must not be born (all but) expired again.
MIN_INHERITED_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class KeyAccess:
    """A key's workspace (None: a platform admin key), that workspace's protected aliases
    and promotion gate, and who can grant it more: the owners of the workspace's active
    admin keys, and any platform admin."""

    workspace: str | None
    protected_aliases: tuple[str, ...]
    promotion_gate: bool
    granted_by: tuple[str, ...]

    def public(self) -> dict[str, object]:
        return {
            "workspace": self.workspace,
            "protected_aliases": list(self.protected_aliases),
            "promotion_gate": self.promotion_gate,
            "granted_by": list(self.granted_by),
        }


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
        workspace: str | None = None,
        platform: bool = False,
        models: list[str] | tuple[str, ...] = (),
    ) -> IssuedKey:
        """A new key (shown only in the returned :class:`IssuedKey`); ``owner`` defaults to
        the actor's name, ``expires_in`` (``"30d"`` or a timedelta) to no expiry.

        The key belongs to ``workspace`` (default: the actor's own, else ``default``);
        ``platform=True`` makes a platform admin key instead, which belongs to none.
        ``models`` limits a write key's registry writes to those name patterns."""
        scope = _scope(scope)
        name, owner = _text("name", name), _text("owner", owner or actor.name)
        if env not in ENVIRONMENTS:
            raise InvalidInput(f"env must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
        lifetime = _duration(expires_in)
        patterns = check_model_patterns(models)
        if platform:
            if workspace is not None:
                raise InvalidInput("a platform admin key belongs to no workspace: drop one")
            if scope is not Scope.ADMIN:
                raise InvalidInput("a platform key must have the admin role (--scope admin)")
            if patterns:
                raise InvalidInput("a platform admin key cannot be limited to models")
            target: str | None = None
        else:
            target = check_workspace_name(workspace or actor.workspace or DEFAULT_WORKSPACE)
        with change(self._engine, actor, Action.KEYS_CREATE, target) as unit:
            if target is not None and not workspace_store.get_workspace(unit.conn, name=target):
                raise NotFound(
                    f"no workspace {target!r}; create it first (hokusai workspaces create)"
                )
            issued = self._insert(
                unit.conn,
                name=name,
                owner=owner,
                scope=scope,
                env=env,
                lifetime=lifetime,
                workspace=target,
                models=patterns,
            )
            unit.audit(
                target=issued.record.id,
                outcome=Outcome.CREATED,
                created=issued.record.id,
                scope=scope.value,
                workspace=target,
                **({"models": list(patterns)} if patterns else {}),
            )
        return issued

    def list(
        self, actor: Actor, *, include_revoked: bool = False, workspace: str | None = None
    ) -> list[KeyRecord]:
        """Keys of ``workspace`` (a workspace admin: always their own), or of every
        workspace and the platform for a platform admin who names none."""
        workspace = workspace or actor.workspace
        with reading(self._engine, actor, Action.KEYS_LIST, workspace) as conn:
            return store.list_keys(conn, include_revoked=include_revoked, workspace=workspace)

    def get(self, actor: Actor, reference: str) -> KeyRecord:
        """A key by its id, its display prefix or the whole key."""
        with reading(self._engine, actor, Action.KEYS_GET, actor.workspace) as conn:
            found = self._resolve(conn, reference)
        # Authorized for the key's own workspace: another workspace's admin is refused.
        permit(self._engine, actor, Action.KEYS_GET, found.workspace)
        return found

    def revoke(self, actor: Actor, reference: str) -> KeyRecord:
        """Revoke a key (again is harmless): every gateway refuses it within the cache TTL."""
        with change(self._engine, actor, Action.KEYS_REVOKE, actor.workspace) as unit:
            target = self._resolve(unit.conn, reference)
            unit.within(target.workspace)
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
        with change(self._engine, actor, Action.KEYS_ROTATE, actor.workspace) as unit:
            old = self._resolve(unit.conn, reference)
            unit.within(old.workspace)
            if old.is_person:
                raise InvalidInput(
                    f"{old.id} is a person who signs in with single sign-on ({old.owner}), not "
                    "a key: there is nothing to rotate. Revoke it to stop them signing in; "
                    "create a key if they need one for scripts."
                )
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
                workspace=old.workspace,
                models=old.models,
            )
            unit.audit(target=old.id, rotated=old.id, replacement=issued.record.id)
        self._revoked(old.id)
        return issued

    def access(self, actor: Actor) -> KeyAccess:
        """What the acting key may do where, and who can grant it more (``whoami``,
        ``hokusai doctor``). Needs no role: it tells a key only about itself and its
        workspace."""
        workspace = actor.workspace
        with store_errors(), self._engine.connect() as conn:
            settings = workspace_store.get_workspace(conn, name=workspace) if workspace else None
            admins = (
                store.list_keys(conn, include_revoked=False, workspace=workspace)
                if workspace
                else []
            )
        now = utcnow()
        owners = sorted(
            {k.owner for k in admins if k.scope is Scope.ADMIN and k.state(now) == "active"}
        )
        return KeyAccess(
            workspace=workspace,
            protected_aliases=settings.protected_aliases if settings else (),
            promotion_gate=bool(settings and settings.promotion_gate),
            granted_by=(*owners, "any platform admin"),
        )

    def validate(self, actor: Actor, key: str) -> KeyCheck:
        """Check a key another service was handed; the answer never contains the key."""
        # Any key may check one, in its own workspace (a platform key: platform-wide).
        permit(self._engine, actor, Action.KEYS_VALIDATE, actor.workspace)
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
        workspace: str | None,
        models: tuple[str, ...] = (),
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
            workspace=workspace,
            models=models,
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


MAX_MODEL_PATTERNS = 20
_PATTERN_CHARS = re.compile(r"[^\x00-\x1f\x7f]{1,256}\Z")


def check_model_patterns(patterns: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Model-name patterns (``*`` any run of characters, ``?`` one), without repeats."""
    if len(patterns) > MAX_MODEL_PATTERNS:
        raise InvalidInput(f"at most {MAX_MODEL_PATTERNS} model patterns")
    found: dict[str, None] = {}
    for pattern in patterns:
        pattern = pattern.strip() if isinstance(pattern, str) else pattern
        if not isinstance(pattern, str) or not _PATTERN_CHARS.match(pattern):
            raise InvalidInput(
                f"model pattern {pattern!r} must be 1 to 256 printable characters "
                "('*' matches any run of characters, '?' one)"
            )
        found[pattern] = None
    return tuple(found)


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
