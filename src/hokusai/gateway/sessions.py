"""Browser sessions: a person who signed in at ``/login`` with an API key.

The cookie holds a random token; the store keeps only its keyed hash (like a key's), the
key it was made with, and when it was last seen. Every request through a session is
decided by the key's state *now*: revoking or expiring the key ends every session made
with it (within the verification cache's TTL on other replicas, at once on this one).
A session also ends after ``idle`` without a request, at its absolute ``lifetime``, or at
``/logout``.

The cookie is HttpOnly and SameSite=Lax (Secure over https), and a write through a
session must come from this origin (``same_origin``): a cookie never authenticates a
cross-site request. API clients keep sending their key in a header.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import Engine, select, update
from starlette.responses import RedirectResponse

from hokusai.db.schema import sessions
from hokusai.gateway.audit import AuditEntry, AuditLog
from hokusai.keys import store as key_store
from hokusai.keys.records import KeyRecord
from hokusai.keys.service import KeyRejected, KeyService
from hokusai.timestamps import as_utc, utcnow

COOKIE = "hokusai_session"
# last_seen_at is written at most this often per session: enough to measure idleness.
SEEN_RESOLUTION = timedelta(seconds=30)
ENDED = "session_ended"


@dataclass(frozen=True)
class SessionRecord:
    id: str
    key_id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ended_at: datetime | None


class Sessions:
    """Start, check and end browser sessions on the auth store."""

    def __init__(
        self,
        engine: Engine,
        keys: KeyService,
        *,
        idle: timedelta,
        lifetime: timedelta,
        cache_seconds: float,
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._idle = idle
        self._lifetime = lifetime
        self._cache_seconds = cache_seconds
        # Often enough that a session in use never looks idle.
        self._seen_every = min(SEEN_RESOLUTION, idle / 4)
        self._cache: dict[str, tuple[float, SessionRecord, KeyRecord]] = {}
        self._lock = threading.Lock()

    def _hash(self, token: str) -> str:
        return self._keys.hash_key("session:" + token)

    def start(self, key: KeyRecord) -> str:
        """A new session for ``key`` (already verified); the cookie's token."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        with self._engine.begin() as conn:
            conn.execute(
                sessions.insert().values(
                    id="ses_" + secrets.token_hex(8),
                    token_hash=self._hash(token),
                    key_id=key.id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + self._lifetime,
                    ended_at=None,
                )
            )
        return token

    @property
    def max_age(self) -> int:
        """The cookie's Max-Age: the session's absolute lifetime."""
        return int(self._lifetime.total_seconds())

    def authenticate(self, token: str) -> KeyRecord:
        """The key a live session was made with, or :class:`KeyRejected` saying why not."""
        token_hash = self._hash(token)
        now_mono = time.monotonic()
        with self._lock:
            cached = self._cache.get(token_hash)
        if cached is not None and now_mono - cached[0] < self._cache_seconds:
            session, key = cached[1], cached[2]
        else:
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(sessions).where(sessions.c.token_hash == token_hash)
                ).first()
                found = key_store.find(conn, key_id=row._mapping["key_id"]) if row else []
            if row is None or not found:
                raise KeyRejected(ENDED, _sign_in_again("this session is not known"))
            session, key = _record(row._mapping), found[0]
            with self._lock:
                self._cache[token_hash] = (now_mono, session, key)
        now = utcnow()
        if session.ended_at is not None:
            raise KeyRejected(ENDED, _sign_in_again("you signed out"))
        if session.expires_at <= now:
            raise KeyRejected(ENDED, _sign_in_again("the session reached its lifetime"))
        if now - session.last_seen_at > self._idle:
            raise KeyRejected(ENDED, _sign_in_again("the session was idle too long"))
        state = key.state(now)
        if state != "active":
            raise KeyRejected(
                state,
                _sign_in_again(f"the key it was made with ({key.id}) is {state}"),
                key,
            )
        if now - session.last_seen_at > self._seen_every:
            self._seen(token_hash, session, now)
        return key

    def end(self, token: str) -> None:
        """Sign out: the session is refused from now on, on every replica."""
        token_hash = self._hash(token)
        with self._engine.begin() as conn:
            conn.execute(
                update(sessions)
                .where(sessions.c.token_hash == token_hash, sessions.c.ended_at.is_(None))
                .values(ended_at=utcnow())
            )
        with self._lock:
            self._cache.pop(token_hash, None)

    def forget_key(self, key_id: str) -> None:
        """A key was revoked here: its sessions are checked against the store again."""
        with self._lock:
            for token_hash in [h for h, c in self._cache.items() if c[2].id == key_id]:
                del self._cache[token_hash]

    def _seen(self, token_hash: str, session: SessionRecord, now: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(sessions).where(sessions.c.id == session.id).values(last_seen_at=now)
            )
        with self._lock:
            cached = self._cache.get(token_hash)
            if cached is not None:
                fresh = SessionRecord(
                    session.id,
                    session.key_id,
                    session.created_at,
                    now,
                    session.expires_at,
                    session.ended_at,
                )
                self._cache[token_hash] = (cached[0], fresh, cached[2])


def _record(m: object) -> SessionRecord:
    row = dict(m)  # type: ignore[call-overload]
    return SessionRecord(
        id=row["id"],
        key_id=row["key_id"],
        created_at=as_utc(row["created_at"]),  # type: ignore[arg-type]
        last_seen_at=as_utc(row["last_seen_at"]),  # type: ignore[arg-type]
        expires_at=as_utc(row["expires_at"]),  # type: ignore[arg-type]
        ended_at=as_utc(row["ended_at"]),
    )


def _sign_in_again(why: str) -> str:
    return f"Your browser session has ended: {why}. Sign in again at /login."


def session_token(cookie_header: bytes | None) -> str | None:
    """The session token of a ``Cookie`` header, if it holds one."""
    if not cookie_header:
        return None
    for part in cookie_header.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value.strip('"')
    return None


async def signed_in(
    sessions: Sessions,
    audit: AuditLog,
    key: KeyRecord,
    *,
    target: str,
    secure: bool,
    request_id: str,
    client: str,
    method: str,
    path: str,
    detail: dict[str, Any] | None = None,
) -> RedirectResponse:
    """A person proved who they are (a pasted key, or single sign-on): a session for
    ``key``, its audit row, and the redirect to ``target`` that sets its cookie."""
    token = await anyio.to_thread.run_sync(sessions.start, key)
    await anyio.to_thread.run_sync(
        audit.record,
        AuditEntry(
            request_id=request_id,
            key_id=key.id,
            owner=key.owner,
            action="sessions.start",
            method=method,
            path=path,
            status=303,
            client=client,
            detail=detail,
            workspace=key.workspace,
        ),
    )
    response = RedirectResponse(target, status_code=303)
    response.headers.append("set-cookie", cookie(token, max_age=sessions.max_age, secure=secure))
    return response


def cookie(token: str, *, max_age: int, secure: bool, name: str = COOKIE, path: str = "/") -> str:
    """The ``Set-Cookie`` value that starts a session (``max_age`` 0 ends it); the
    sign-in's other cookies (``name``, ``path``) are made the same way."""
    parts = [f"{name}={token}", f"Path={path}", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def same_origin(headers: dict[bytes, bytes], base_url: str) -> bool:
    """Whether a request comes from this site's own pages: its ``Origin`` (or, when a
    browser sent none, its ``Referer``) is ``base_url``'s origin. Browsers send one of
    them with every form post and script write; a request with neither is refused."""
    origin = base_url.rstrip("/")
    sent = headers.get(b"origin")
    if sent is not None:
        return sent.decode("latin-1").rstrip("/") == origin
    referer = headers.get(b"referer")
    if referer is not None:
        text = referer.decode("latin-1")
        return text == origin or text.startswith(origin + "/")
    return False
