"""The admin services of a remote gateway, over ``/api/v1``, as the CLI calls them.

Each class has the method names and arguments of its local service (``KeyAdmin``,
``WebhookAdmin``, ``AuditReader``, ``WorkspaceAdmin``) and returns the same typed
records, so a command does not know which one it called: same output, same
``--json``. An error answer becomes the same :class:`~hokusai.errors.DomainError`
the local service would have raised (:func:`hokusai.errors.from_answer`), so the
same message and exit code.

Over HTTP the key is the actor: the gateway builds it from the key it authenticates.
The ``actor`` argument is there so both kinds of services are called the same way; it is
not sent.

Longer than most modules (about 530 lines) because it mirrors four services method for
method: each class is short, and they share one transport and one mapping of error
answers, which is why they stay together.
"""

from __future__ import annotations

import builtins
import os
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from hokusai.admin.actor import Actor
from hokusai.audit_records import AuditRecord
from hokusai.durations import check_time, parse_since
from hokusai.errors import InternalError, Unavailable, from_answer
from hokusai.keys.records import IssuedKey, KeyCheck, KeyRecord, Lifetime
from hokusai.keys.scopes import Scope
from hokusai.sdk.config import ClientConfig
from hokusai.webhooks.records import (
    AttemptRecord,
    DeliveryRecord,
    DeliveryTestOutcome,
    EndpointRecord,
    EndpointSecret,
    EventRecord,
)
from hokusai.workspaces.records import TrustedKeyRecord, WorkspaceRecord

TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def trust(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """What the CLI trusts: the configured CA bundle (a PEM file, or a directory of
    certificates), else httpx's own trust store. httpx deprecates a path given as is."""
    if not ca_bundle:
        return True
    if os.path.isdir(ca_bundle):
        return ssl.create_default_context(capath=ca_bundle)
    return ssl.create_default_context(cafile=ca_bundle)


class Api:
    """One gateway's ``/api/v1``, authenticated with one key."""

    def __init__(self, config: ClientConfig) -> None:
        self.url = config.api_url
        self._client = httpx.Client(
            base_url=config.api_url + "/api/v1",
            headers={"Authorization": f"Bearer {config.api_key}"},
            timeout=TIMEOUT,
            verify=trust(config.ca_bundle),
        )

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            answer = self._client.request(method, path, json=body, params=query)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"the gateway at {self.url} did not answer ({type(exc).__name__}); "
                "check --api-url and try again"
            ) from None
        try:
            data = answer.json()
        except ValueError:
            data = None
        if answer.is_error:
            if isinstance(data, dict) and "error_code" in data and "message" in data:
                details = data.get("details")
                raise from_answer(
                    str(data["error_code"]),
                    str(data["message"]),
                    details if isinstance(details, dict) else None,
                )
            raise InternalError(f"the gateway at {self.url} answered HTTP {answer.status_code}")
        if data is None:
            raise InternalError(f"the gateway at {self.url} answered without JSON")
        return data

    def close(self) -> None:
        self._client.close()


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _required_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def key_record(data: dict[str, Any]) -> KeyRecord:
    return KeyRecord(
        id=data["id"],
        display_prefix=data["display_prefix"],
        name=data["name"],
        owner=data["owner"],
        scope=Scope(data["scope"]),
        env=data["env"],
        created_at=_required_time(data["created_at"]),
        expires_at=_time(data["expires_at"]),
        revoked_at=_time(data["revoked_at"]),
        last_used_at=_time(data["last_used_at"]),
        rotated_from=data["rotated_from"],
        workspace=data.get("workspace"),
        models=tuple(data.get("models") or ()),
    )


def workspace_record(data: dict[str, Any]) -> WorkspaceRecord:
    return WorkspaceRecord(
        name=data["name"],
        description=data["description"],
        protected_aliases=tuple(data["protected_aliases"]),
        promotion_gate=bool(data["promotion_gate"]),
        created_at=_required_time(data["created_at"]),
        updated_at=_required_time(data["updated_at"]),
        require_signed_versions=bool(data.get("require_signed_versions")),
    )


def trusted_key_record(data: dict[str, Any]) -> TrustedKeyRecord:
    return TrustedKeyRecord(
        workspace=data["workspace"],
        fingerprint=data["fingerprint"],
        public_key=data["public_key"],
        label=data.get("label") or "",
        added_by=data.get("added_by") or "",
        added_at=_required_time(data["added_at"]),
    )


def endpoint_record(data: dict[str, Any]) -> EndpointRecord:
    return EndpointRecord(
        id=data["id"],
        workspace=data["workspace"],
        url=data["url"],
        description=data["description"],
        event_types=tuple(data["event_types"]),
        model_filter=data["model_filter"],
        enabled=bool(data["enabled"]),
        disabled_reason=data["disabled_reason"],
        created_at=_required_time(data["created_at"]),
        updated_at=_required_time(data["updated_at"]),
        secret_rotation_until=_time(data["secret_rotation_until"]),
    )


def _attempt(data: dict[str, Any]) -> AttemptRecord:
    return AttemptRecord(
        id=int(data["id"]),
        attempted_at=_required_time(data["attempted_at"]),
        status_code=data["status_code"],
        latency_ms=int(data["latency_ms"]),
        response_snippet=data["response_snippet"],
        error=data["error"],
    )


def _delivery(data: dict[str, Any]) -> DeliveryRecord:
    return DeliveryRecord(
        id=int(data["id"]),
        event_id=data["event_id"],
        event_seq=int(data["event_seq"]),
        event_type=data["event_type"],
        model_name=data["model_name"],
        model_version=data["model_version"],
        workspace=data["workspace"],
        endpoint_id=data["endpoint_id"],
        status=data["status"],
        attempts=int(data["attempts"]),
        next_attempt_at=_time(data["next_attempt_at"]),
        lease_until=_time(data["lease_until"]),
        last_status_code=data["last_status_code"],
        last_error=data["last_error"],
        created_at=_required_time(data["created_at"]),
        updated_at=_required_time(data["updated_at"]),
        attempt_log=tuple(_attempt(a) for a in data["attempt_log"]),
    )


def _event(data: dict[str, Any]) -> EventRecord:
    return EventRecord(
        seq=int(data["seq"]),
        id=data["id"],
        type=data["type"],
        occurred_at=_required_time(data["occurred_at"]),
        key_id=data["key_id"],
        model_name=data["model_name"],
        model_version=data["model_version"],
        payload=data["payload"],
        dedupe_key=data["dedupe_key"],
        source=data["source"],
        workspace=data["workspace"],
    )


def _audit(data: dict[str, Any]) -> AuditRecord:
    return AuditRecord(
        id=int(data["id"]),
        at=_required_time(data["at"]),
        request_id=data["request_id"],
        key_id=data["key_id"],
        owner=data["owner"],
        action=data["action"],
        method=data["method"],
        path=data["path"],
        status=int(data["status"]),
        client=data["client"],
        detail=data["detail"],
        workspace=data.get("workspace"),
    )


def _issued(data: dict[str, Any]) -> IssuedKey:
    return IssuedKey(key=data["key"], record=key_record(data["record"]))


def _secret(data: dict[str, Any]) -> EndpointSecret:
    return EndpointSecret(endpoint_record(data["endpoint"]), data["secret"])


def _duration_text(value: timedelta | str | Lifetime | None) -> str | None:
    if value is None or value is Lifetime.SAME:
        return None
    if isinstance(value, Lifetime):
        return str(value.value)
    if isinstance(value, timedelta):
        return f"{int(value.total_seconds())}s"
    return value


def _since_text(value: datetime | str | None) -> str | None:
    """The API takes a time: a duration back (``2h``) is turned into one here, checked
    the same way the local services check it."""
    if isinstance(value, str):
        return parse_since(value).isoformat() if value else None
    return check_time(value, "since").isoformat() if value else None


class RemoteKeys:
    def __init__(self, api: Api) -> None:
        self._api = api

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
        models: builtins.list[str] | tuple[str, ...] = (),
    ) -> IssuedKey:
        body = {
            "name": name,
            "scope": Scope(scope).value,
            "owner": owner,
            "env": env,
            "expires_in": _duration_text(expires_in),
            "workspace": workspace,
            "platform": platform,
            "models": list(models),
        }
        return _issued(self._api.call("POST", "/keys", body=body))

    def list(
        self, actor: Actor, *, include_revoked: bool = False, workspace: str | None = None
    ) -> builtins.list[KeyRecord]:
        params = {"include_revoked": include_revoked, "workspace": workspace}
        found = self._api.call("GET", "/keys", params=params)
        return [key_record(k) for k in found["keys"]]

    def get(self, actor: Actor, reference: str) -> KeyRecord:
        return key_record(self._api.call("GET", f"/keys/{_segment(reference)}"))

    def revoke(self, actor: Actor, reference: str) -> KeyRecord:
        return key_record(self._api.call("POST", f"/keys/{_segment(reference)}/revoke"))

    def rotate(
        self,
        actor: Actor,
        reference: str,
        *,
        expires_in: timedelta | str | Lifetime | None = Lifetime.SAME,
    ) -> IssuedKey:
        body = {"expires_in": _duration_text(expires_in)}
        return _issued(self._api.call("POST", f"/keys/{_segment(reference)}/rotate", body=body))

    def validate(self, actor: Actor, key: str) -> KeyCheck:
        found = self._api.call("POST", "/keys/validate", body={"key": key})
        record = key_record_part(found)
        return KeyCheck(bool(found["valid"]), found.get("reason"), found.get("message"), record)


def key_record_part(found: dict[str, Any]) -> KeyRecord | None:
    """``/keys/validate`` names a key by a few fields only: enough to render it."""
    if "id" not in found:
        return None
    return KeyRecord(
        id=found["id"],
        display_prefix=found["display_prefix"],
        name="",
        owner=found["owner"],
        scope=Scope(found["scope"]),
        env=found["env"],
        created_at=datetime.min,
        expires_at=_time(found["expires_at"]),
        revoked_at=None,
        last_used_at=None,
        rotated_from=None,
        workspace=found.get("workspace"),
    )


class RemoteWebhooks:
    def __init__(self, api: Api) -> None:
        self._api = api

    def add(
        self,
        actor: Actor,
        url: str,
        *,
        event_types: builtins.list[str] | None = None,
        model_filter: str | None = None,
        description: str = "",
        workspace: str | None = None,
    ) -> EndpointSecret:
        body = {
            "url": url,
            "event_types": list(event_types or []),
            "model_filter": model_filter,
            "description": description,
            "workspace": workspace,
        }
        return _secret(self._api.call("POST", "/webhooks", body=body))

    def list(self, actor: Actor, *, workspace: str | None = None) -> builtins.list[EndpointRecord]:
        found = self._api.call("GET", "/webhooks", params={"workspace": workspace})
        return [endpoint_record(e) for e in found["endpoints"]]

    def get(self, actor: Actor, endpoint_id: str) -> EndpointRecord:
        return endpoint_record(self._api.call("GET", f"/webhooks/{_segment(endpoint_id)}"))

    def disable(
        self, actor: Actor, endpoint_id: str, *, reason: str | None = None
    ) -> EndpointRecord:
        path = f"/webhooks/{_segment(endpoint_id)}/disable"
        return endpoint_record(self._api.call("POST", path))

    def enable(self, actor: Actor, endpoint_id: str) -> EndpointRecord:
        path = f"/webhooks/{_segment(endpoint_id)}/enable"
        return endpoint_record(self._api.call("POST", path))

    def remove(self, actor: Actor, endpoint_id: str) -> EndpointRecord:
        record = self.get(actor, endpoint_id)
        self._api.call("DELETE", f"/webhooks/{_segment(endpoint_id)}")
        return record

    def rotate_secret(self, actor: Actor, endpoint_id: str) -> EndpointSecret:
        path = f"/webhooks/{_segment(endpoint_id)}/rotate-secret"
        return _secret(self._api.call("POST", path))

    async def test(self, actor: Actor, endpoint_id: str) -> DeliveryTestOutcome:
        found = self._api.call("POST", f"/webhooks/{_segment(endpoint_id)}/test")
        return DeliveryTestOutcome(**found)

    def deliveries(
        self,
        actor: Actor,
        *,
        status: str | None = None,
        endpoint_id: str | None = None,
        event_id: str | None = None,
        workspace: str | None = None,
        limit: int = 100,
    ) -> builtins.list[DeliveryRecord]:
        params = {
            "status": status,
            "endpoint_id": endpoint_id,
            "event_id": event_id,
            "workspace": workspace,
            "limit": limit,
        }
        found = self._api.call("GET", "/deliveries", params=params)
        return [_delivery(d) for d in found["deliveries"]]

    def events(
        self,
        actor: Actor,
        *,
        since: datetime | str | None = None,
        model_name: str | None = None,
        workspace: str | None = None,
        limit: int = 100,
    ) -> builtins.list[EventRecord]:
        params = {
            "since": _since_text(since),
            "model_name": model_name,
            "workspace": workspace,
            "limit": limit,
        }
        return [_event(e) for e in self._api.call("GET", "/events", params=params)["events"]]

    def replay(
        self,
        actor: Actor,
        *,
        event_id: str | None = None,
        since: datetime | str | None = None,
        endpoint_id: str | None = None,
        workspace: str | None = None,
    ) -> int:
        body = {
            "event_id": event_id,
            "since": _since_text(since),
            "endpoint_id": endpoint_id,
            "workspace": workspace,
        }
        return int(self._api.call("POST", "/replay", body=body)["queued"])


class RemoteAudit:
    def __init__(self, api: Api) -> None:
        self._api = api

    def query(
        self,
        actor: Actor,
        *,
        key_id: str | None = None,
        action: str | None = None,
        since: datetime | str | None = None,
        limit: int = 100,
        workspace: str | None = None,
    ) -> list[AuditRecord]:
        params = {
            "key_id": key_id,
            "action": action,
            "since": _since_text(since),
            "limit": limit,
            "workspace": workspace,
        }
        return [_audit(e) for e in self._api.call("GET", "/audit", params=params)["entries"]]

    def denials(self, actor: Actor, *, limit: int = 20) -> list[AuditRecord]:
        found = self._api.call("GET", "/whoami/denials", params={"limit": limit})
        return [_audit(e) for e in found["denials"]]


class RemoteWorkspaces:
    def __init__(self, api: Api) -> None:
        self._api = api

    def create(
        self,
        actor: Actor,
        name: str,
        *,
        description: str = "",
        protected_aliases: builtins.list[str] | tuple[str, ...] | None = None,
        promotion_gate: bool = False,
        require_signed_versions: bool = False,
    ) -> WorkspaceRecord:
        body = {
            "name": name,
            "description": description,
            "protected_aliases": None if protected_aliases is None else list(protected_aliases),
            "promotion_gate": promotion_gate,
            "require_signed_versions": require_signed_versions,
        }
        return workspace_record(self._api.call("POST", "/workspaces", body=body))

    def list(self, actor: Actor) -> builtins.list[WorkspaceRecord]:
        found = self._api.call("GET", "/workspaces")
        return [workspace_record(w) for w in found["workspaces"]]

    def get(self, actor: Actor, name: str) -> WorkspaceRecord:
        return workspace_record(self._api.call("GET", f"/workspaces/{_segment(name)}"))

    def update(
        self,
        actor: Actor,
        name: str,
        *,
        description: str | None = None,
        protected_aliases: builtins.list[str] | tuple[str, ...] | None = None,
        promotion_gate: bool | None = None,
        require_signed_versions: bool | None = None,
    ) -> WorkspaceRecord:
        body = {
            "description": description,
            "protected_aliases": None if protected_aliases is None else list(protected_aliases),
            "promotion_gate": promotion_gate,
            "require_signed_versions": require_signed_versions,
        }
        path = f"/workspaces/{_segment(name)}"
        return workspace_record(self._api.call("PATCH", path, body=body))

    def delete(self, actor: Actor, name: str) -> WorkspaceRecord:
        return workspace_record(self._api.call("DELETE", f"/workspaces/{_segment(name)}"))

    def trust_key(
        self, actor: Actor, name: str, public_key_pem: str, *, label: str = ""
    ) -> TrustedKeyRecord:
        body = {"public_key": public_key_pem, "label": label}
        path = f"/workspaces/{_segment(name)}/trusted-keys"
        return trusted_key_record(self._api.call("POST", path, body=body))

    def untrust_key(self, actor: Actor, name: str, fingerprint: str) -> TrustedKeyRecord:
        path = f"/workspaces/{_segment(name)}/trusted-keys/{_segment(fingerprint)}"
        return trusted_key_record(self._api.call("DELETE", path))

    def trusted_keys(self, actor: Actor, name: str) -> builtins.list[TrustedKeyRecord]:
        found = self._api.call("GET", f"/workspaces/{_segment(name)}/trusted-keys")
        return [trusted_key_record(k) for k in found["trusted_keys"]]


@dataclass(frozen=True)
class RemoteServices:
    """``AdminServices``' shape, answered by a remote gateway."""

    keys: RemoteKeys
    webhooks: RemoteWebhooks
    audit: RemoteAudit
    workspaces: RemoteWorkspaces
    api: Api  # the one connection the four share

    @classmethod
    def connect(cls, config: ClientConfig) -> RemoteServices:
        api = Api(config)
        return cls(
            RemoteKeys(api), RemoteWebhooks(api), RemoteAudit(api), RemoteWorkspaces(api), api
        )

    def close(self) -> None:
        """Close the connections to the gateway."""
        self.api.close()


def _segment(value: str) -> str:
    """One path segment: a reference is never allowed to add segments or a query."""
    return quote(value.strip(), safe="")
