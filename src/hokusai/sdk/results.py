r"""What the SDK returns.

Versions and registrations are frozen dataclasses. The answers that were plain JSON
objects before they were typed (:class:`KeyIdentity`, :class:`LineageEntry`,
:class:`RemovedRun`) are ``TypedDict``\ s: still the dicts callers index and print as
JSON, with their keys and types now declared."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from hokusai.tokens import TAG_TOKEN_ID


@dataclass(frozen=True)
class RegistrationResult:
    """A registered model version."""

    name: str
    version: str
    run_id: str | None
    model_uri: str
    registration_id: str
    source: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelVersion:
    """A model version as the registry knows it."""

    name: str
    version: str
    run_id: str | None
    source: str
    status: str
    created_at_ms: int
    tags: dict[str, str]
    aliases: list[str]

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def token_id(self) -> str | None:
        return self.tags.get(TAG_TOKEN_ID)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ModelVersion:
        return cls(
            name=data["name"],
            version=str(data["version"]),
            run_id=data.get("run_id") or None,
            source=data.get("source", ""),
            status=data.get("status", ""),
            created_at_ms=int(data.get("creation_timestamp", 0)),
            tags={t["key"]: t.get("value", "") for t in data.get("tags", [])},
            aliases=list(data.get("aliases", [])),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "source": self.source,
            "status": self.status,
            "created_at_ms": self.created_at_ms,
            "tags": self.tags,
            "aliases": self.aliases,
            "model_uri": self.model_uri,
        }


class KeyIdentity(TypedDict, total=False):
    """Who the gateway takes this key for (``ModelRegistry.check``, ``hokusai whoami``).
    ``total=False``: a gateway of another version may answer with fewer or more fields."""

    id: str
    display_prefix: str
    name: str
    owner: str
    scope: str
    env: str
    state: str
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None
    rotated_from: str | None
    # None: a platform key, of no one workspace.
    workspace: str | None
    models: list[str]
    protected_aliases: list[str]
    promotion_gate: bool
    granted_by: list[str]


class LineageEntry(TypedDict):
    """One version in ``ModelRegistry.get_model_lineage``: what it improved on, who
    contributed it, its metric changes and its token."""

    version: str
    model_uri: str
    run_id: str | None
    created_at_ms: int
    # ``NAME/VERSION`` of the version this one improved on, for an improvement.
    baseline: str | None
    contributor: str | None
    delta_metrics: dict[str, float]
    token_id: str | None
    aliases: list[str]
    registration_kind: Literal["baseline", "tokenized", "improved"]


class RemovedRun(TypedDict):
    """A run of a failed or abandoned registration that ``ModelRegistry.cleanup_failed``
    removed (or, in a dry run, would remove)."""

    run_id: str
    # ``failed`` or ``in_progress``: the registration status it was left with.
    status: str
    start_time_ms: int
    registration_id: str | None
