"""API key verification, and the store-level provisioning the server's first start and
test fixtures use. Administration (rotation, audited changes) is ``admin/keys.py``'s.

Verification is on every request's path, so it is shaped for that: the format and
checksum are checked without I/O, a verified key is trusted for ``cache_seconds``
(the bound on how late a revocation reaches a replica), and ``last_used_at`` is
written at most once a minute per key.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import Engine

from hokusai.keys import store
from hokusai.keys.format import MalformedKeyError, generate_key, parse_key
from hokusai.keys.records import IssuedKey, KeyRecord
from hokusai.keys.scopes import Scope
from hokusai.timestamps import utcnow
from hokusai.workspaces.records import DEFAULT_WORKSPACE

LAST_USED_RESOLUTION = timedelta(minutes=1)


class _Unset(enum.Enum):
    UNSET = "unset"


_UNSET = _Unset.UNSET


class KeyRejected(Exception):
    """A key was presented and is not accepted; ``reason`` is one of REASONS."""

    REASONS = ("missing", "malformed", "unknown", "revoked", "expired")

    def __init__(self, reason: str, message: str, record: KeyRecord | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.record = record


class KeyNotFound(LookupError):
    """No key matches the reference (id, display prefix or whole key)."""


class AmbiguousKeyReference(LookupError):
    """A display prefix matches more than one key."""


class KeyService:
    def __init__(self, engine: Engine, secret: bytes, *, cache_seconds: float = 0.5) -> None:
        if not secret:
            raise ValueError("the server secret for key hashing must not be empty")
        self._engine = engine
        self._secret = secret
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, KeyRecord]] = {}
        self._last_touch: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def hash_key(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    # ---- lifecycle -------------------------------------------------------------

    def create(
        self,
        *,
        name: str,
        owner: str,
        scope: Scope = Scope.WRITE,
        env: str = "live",
        expires_in: timedelta | None = None,
        rotated_from: str | None = None,
        workspace: str | _Unset | None = _UNSET,
        models: tuple[str, ...] = (),
    ) -> IssuedKey:
        """An unaudited key, for test fixtures; ``workspace`` None makes a platform admin
        key (``scope`` must be admin). Without one, an admin key is a platform admin key
        (what the move to workspaces made of every admin key) and any other belongs to
        ``default``."""
        if isinstance(workspace, _Unset):
            workspace = None if scope is Scope.ADMIN else DEFAULT_WORKSPACE
        if workspace is None and scope is not Scope.ADMIN:
            raise ValueError("only an admin key can be a platform admin key (no workspace)")
        name = name.strip()
        if not name or len(name) > 200:
            raise ValueError("a key needs a name of 1 to 200 characters")
        if not owner.strip() or len(owner) > 200:
            raise ValueError("a key needs an owner of 1 to 200 characters")
        if expires_in is not None and expires_in <= timedelta(0):
            raise ValueError("expires_in must be positive")
        key = generate_key(env)
        now = utcnow()
        record = KeyRecord(
            id="key_" + secrets.token_hex(8),
            display_prefix=parse_key(key).display_prefix,
            name=name,
            owner=owner.strip(),
            scope=scope,
            env=env,
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
            revoked_at=None,
            last_used_at=None,
            rotated_from=rotated_from,
            workspace=workspace,
            models=models,
        )
        with self._engine.begin() as conn:
            store.insert_key(conn, record=record, key_hash=self.hash_key(key))
        return IssuedKey(key=key, record=record)

    def list(self, *, include_revoked: bool = False) -> list[KeyRecord]:
        with self._engine.connect() as conn:
            return store.list_keys(conn, include_revoked=include_revoked)

    def count(self) -> int:
        with self._engine.connect() as conn:
            return store.count_keys(conn)

    def resolve(self, reference: str) -> KeyRecord:
        """Find a key by its id, its display prefix or the whole key."""
        reference = reference.strip()
        key_hash = self.hash_key(reference) if reference.startswith("hk_") else None
        with self._engine.connect() as conn:
            matches = store.find(conn, key_id=reference, prefix=reference, key_hash=key_hash)
        if not matches:
            raise KeyNotFound(f"no key matches {_safe_reference(reference)!r}")
        if len(matches) > 1:
            ids = ", ".join(m.id for m in matches)
            raise AmbiguousKeyReference(
                f"{_safe_reference(reference)!r} matches several keys ({ids}); use the key id"
            )
        return matches[0]

    def revoke(self, reference: str) -> KeyRecord:
        record = self.resolve(reference)
        with self._engine.begin() as conn:
            store.mark_revoked(conn, key_id=record.id, at=utcnow())
        self.forget(record.id)
        return self.resolve(record.id)

    # ---- verification (hot path) ---------------------------------------------

    def authenticate_cached(self, key: str | None) -> KeyRecord | None:
        """Verify ``key`` without I/O if possible: its record, or None when the store
        must be asked (then call :meth:`authenticate`, off the event loop).

        Raises :class:`KeyRejected` for what can be decided without the store.
        """
        if not key:
            return self.authenticate(key)  # raises "missing", no I/O
        key_hash = self.hash_key(key)
        cached = self._cache.get(key_hash)
        if cached is None or time.monotonic() - cached[0] >= self._cache_seconds:
            return None
        record = cached[1]
        now = utcnow()
        if record.state(now) != "active" or self._touch_due(record, now):
            return None
        return record

    def authenticate(self, key: str | None) -> KeyRecord:
        """The record of an acceptable key, or :class:`KeyRejected` saying why not."""
        if not key:
            raise KeyRejected(
                "missing",
                "No API key was sent. Set HOKUSAI_API_KEY (SDK) or MLFLOW_TRACKING_TOKEN "
                "(MLflow client), or send one of the headers 'Authorization: Bearer hk_live_…' "
                "or 'X-API-Key: hk_live_…'.",
            )
        try:
            parse_key(key)
        except MalformedKeyError as exc:
            raise KeyRejected("malformed", f"Malformed API key: {exc}.") from None
        key_hash = self.hash_key(key)
        now_mono = time.monotonic()
        cached = self._cache.get(key_hash)
        if cached is not None and now_mono - cached[0] < self._cache_seconds:
            record = cached[1]
        else:
            with self._engine.connect() as conn:
                found = store.get_by_hash(conn, key_hash=key_hash)
            if found is None:
                self._cache.pop(key_hash, None)
                raise KeyRejected(
                    "unknown",
                    "Unknown API key: it is well-formed but this server never issued it "
                    "(or it was issued by another deployment). Ask an admin for a key "
                    "(`hokusai keys create`).",
                )
            record = found
            self._cache[key_hash] = (now_mono, record)
        now = utcnow()
        state = record.state(now)
        if state == "revoked":
            raise KeyRejected(
                "revoked",
                f"API key {record.display_prefix}… ({record.id}) was revoked at "
                f"{record.revoked_at:%Y-%m-%d %H:%M} UTC. Use its replacement or ask an "
                "admin for a new key.",
                record,
            )
        if state == "expired":
            raise KeyRejected(
                "expired",
                f"API key {record.display_prefix}… ({record.id}) expired at "
                f"{record.expires_at:%Y-%m-%d %H:%M} UTC. Rotate it (`hokusai keys rotate "
                f"{record.id}`) or ask an admin for a new key.",
                record,
            )
        self._maybe_touch(record, now)
        return record

    def _touch_due(self, record: KeyRecord, now: datetime) -> bool:
        last = self._last_touch.get(record.id) or record.last_used_at
        return last is None or now - last >= LAST_USED_RESOLUTION

    def _maybe_touch(self, record: KeyRecord, now: datetime) -> None:
        if not self._touch_due(record, now):
            return
        with self._lock:
            self._last_touch[record.id] = now
        with self._engine.begin() as conn:
            store.touch_last_used(conn, key_id=record.id, at=now)

    def forget(self, key_id: str) -> None:
        """Drop ``key_id`` from the verification cache (it was just revoked here)."""
        for key_hash, (_, record) in list(self._cache.items()):
            if record.id == key_id:
                self._cache.pop(key_hash, None)


def _safe_reference(reference: str) -> str:
    """Never echo a whole key back: show only its display prefix."""
    if reference.startswith("hk_") and len(reference) > 20:
        return reference[:14] + "…"
    return reference
