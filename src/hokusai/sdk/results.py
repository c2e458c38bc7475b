"""What the SDK returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
        return self.tags.get("hokusai_token_id")

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
