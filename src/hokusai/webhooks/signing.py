"""Webhook secrets and signatures (Standard Webhooks).

Secrets are ``whsec_`` + base64 of 32 random bytes. The store keeps them encrypted
under a key derived from the server secret: unlike API keys they must be readable,
because the dispatcher signs with them.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.fernet import Fernet
from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class SecretBox:
    """Encrypts webhook secrets at rest."""

    def __init__(self, server_secret: bytes) -> None:
        derived = hashlib.sha256(b"hokusai-webhook-secrets\x00" + server_secret).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        return self._fernet.decrypt(sealed.encode()).decode()


def signing_secrets(box: SecretBox, endpoint: Mapping[str, Any]) -> list[str]:
    """An endpoint row's secrets to sign with: the current one, and the previous one while
    its rotation grace lasts (receivers verify with either)."""
    found = [box.open(endpoint["secret_encrypted"])]
    previous = endpoint.get("previous_secret_encrypted")
    until = endpoint.get("previous_secret_expires_at")
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)  # SQLite gives back naive UTC
    if previous and until and until > datetime.now(UTC):
        found.append(box.open(previous))
    return found


def signature_header(msg_id: str, timestamp: datetime, body: str, secrets_: list[str]) -> str:
    """``v1,<sig>`` for each secret, space-separated (old and new during a rotation)."""
    return " ".join(Webhook(s).sign(msg_id, timestamp, body) for s in secrets_)
