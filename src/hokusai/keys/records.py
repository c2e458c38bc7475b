"""What a key is, as the key services and a remote gateway's ``/api/v1`` hand it back.

Plain records with no store behind them: the stores (``keys/store.py``), the services
(``keys/service.py``, ``admin/keys.py``) and the CLI's remote services
(``cli/remote.py``) share them, and the last runs on the base install, without the
server's packages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from functools import lru_cache

from hokusai.keys.scopes import Scope


@dataclass(frozen=True)
class KeyRecord:
    """What the store knows of a key: everything but the key."""

    id: str
    display_prefix: str
    name: str
    owner: str
    scope: Scope
    env: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_from: str | None
    # The workspace the key acts in; None: a platform admin key (every workspace).
    workspace: str | None = "default"
    # Model-name patterns (``*`` and ``?``) its registry writes are limited to; empty: all.
    models: tuple[str, ...] = field(default=())
    # A person signed in with single sign-on (issuer and ``sub``), not a key; None: a key.
    subject: str | None = None

    @property
    def is_person(self) -> bool:
        return self.subject is not None

    @property
    def is_platform_admin(self) -> bool:
        return self.workspace is None

    def model_pattern_refusing(self, model_name: str) -> bool:
        """Whether this key's model patterns leave ``model_name`` out."""
        return bool(self.models) and not any(_pattern(p).match(model_name) for p in self.models)

    def state(self, now: datetime) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def public(self, now: datetime) -> dict[str, object]:
        """A JSON-ready view, safe to show anyone allowed to see keys."""
        return {
            "id": self.id,
            "display_prefix": self.display_prefix,
            "name": self.name,
            "owner": self.owner,
            "scope": self.scope.value,
            "env": self.env,
            "state": self.state(now),
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "last_used_at": _iso(self.last_used_at),
            "rotated_from": self.rotated_from,
            "workspace": self.workspace,
            "models": list(self.models),
        }


@lru_cache(maxsize=1024)
def _pattern(pattern: str) -> re.Pattern[str]:
    """A model-name pattern: ``*`` any run of characters, ``?`` one; all else literal."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile(regex + r"\Z", re.DOTALL)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class IssuedKey:
    """A key at the one moment it exists in plain text."""

    key: str
    record: KeyRecord


class Lifetime(Enum):
    """What a rotated key's expiry is, when no new duration is given."""

    SAME = "same"  # the old key's lifetime, counted from now (none if it had none)
    NEVER = "never"  # no expiry


@dataclass(frozen=True)
class KeyCheck:
    """The answer to "is this key good?": ``reason`` is one of ``KeyRejected.REASONS``
    when it is not; ``record`` is known unless the key is missing, malformed or unknown."""

    valid: bool
    reason: str | None
    message: str | None
    record: KeyRecord | None
