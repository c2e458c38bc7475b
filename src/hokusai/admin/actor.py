"""Who is acting: an API key, or the operator working on the server's own store.

Every service operation takes an :class:`Actor`. It says who acts (for the audit log),
how far it may go (its scope, which :func:`hokusai.authorization.authorize` reads),
and where the request came from (:class:`Origin`, also for the audit log).

A key acts in its workspace with its role (``workspace`` None: every workspace, for a
platform admin key and the operator). A signed-in person will be a third kind (a
session, revoked with its key).
"""

from __future__ import annotations

import getpass
import uuid
from dataclasses import dataclass
from enum import StrEnum

from hokusai.keys.records import KeyRecord
from hokusai.keys.scopes import Scope

# The method the audit log records for a change made on the local store.
LOCAL_METHOD = "CLI"


class ActorKind(StrEnum):
    KEY = "key"
    OPERATOR = "operator"


class Outcome(StrEnum):
    """How an operation ended, as far as the audit log's ``status`` column says."""

    DONE = "done"
    CREATED = "created"
    DENIED = "denied"


_HTTP_STATUS = {Outcome.DONE: 200, Outcome.CREATED: 201, Outcome.DENIED: 403}


@dataclass(frozen=True)
class Origin:
    """The request an action came in: an HTTP request, or a command on the local store."""

    request_id: str
    method: str
    path: str
    client: str | None

    @classmethod
    def http(cls, *, request_id: str, method: str, path: str, client: str | None) -> Origin:
        return cls(request_id=request_id, method=method, path=path, client=client)

    @classmethod
    def command(cls, command: str) -> Origin:
        """A ``hokusai`` command run on the server's store (``command``: ``"keys create"``)."""
        return cls(
            request_id="cli-" + uuid.uuid4().hex,
            method=LOCAL_METHOD,
            path=f"hokusai {command}",
            client="cli",
        )

    @property
    def is_local(self) -> bool:
        return self.method == LOCAL_METHOD

    def status(self, outcome: Outcome) -> int:
        """The audit ``status``: the HTTP status answered, or 0 when no HTTP was involved."""
        return 0 if self.is_local else _HTTP_STATUS[outcome]


@dataclass(frozen=True)
class Actor:
    """Who acts, with what it may do. Build one with :meth:`for_key` or :meth:`operator`."""

    kind: ActorKind
    name: str
    scope: Scope
    origin: Origin
    key: KeyRecord | None = None
    # The workspace the actor acts in; None: every workspace (a platform admin key, the
    # operator).
    workspace: str | None = None

    @classmethod
    def for_key(cls, key: KeyRecord, origin: Origin) -> Actor:
        """A caller authenticated by ``key`` (the gateway has verified it)."""
        return cls(ActorKind.KEY, key.owner, key.scope, origin, key, key.workspace)

    @classmethod
    def operator(cls, origin: Origin, name: str | None = None) -> Actor:
        """Whoever runs ``hokusai`` with the server's store in reach (``--data-dir`` or
        ``HOKUSAI_DATABASE_URL`` with the server secret): they could change the store
        directly anyway, so they may do everything, and the audit log names their OS user."""
        return cls(ActorKind.OPERATOR, name or getpass.getuser(), Scope.ADMIN, origin)

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key else None

    @property
    def label(self) -> str:
        """How messages name the actor: ``API key hk_live_AbCdEf… (key_1a2b)``."""
        if self.key is not None:
            return f"API key {self.key.display_prefix}… ({self.key.id})"
        return f"the operator {self.name!r} on the server's store"
