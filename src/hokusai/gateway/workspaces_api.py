"""``/api/v1/workspaces``: one workspace per team, with its protected aliases, gates and
the public keys it trusts to sign its versions.

Routes only parse: each calls one :class:`~hokusai.admin.workspaces.WorkspaceAdmin`
operation with the calling key as its actor and renders the record it returns.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from hokusai.gateway.deps import CurrentActor, Services


class CreateWorkspace(BaseModel):
    name: str = Field(max_length=63, description="Lowercase letters, digits, inner hyphens")
    description: str = Field(default="", max_length=1000)
    protected_aliases: list[str] | None = Field(
        default=None,
        max_length=50,
        description="Aliases only a promote key may move (default: production, champion)",
    )
    promotion_gate: bool = Field(
        default=False,
        description="A protected alias may only name a version whose metric meets its baseline",
    )
    require_signed_versions: bool = Field(
        default=False,
        description="A protected alias may only name a version signed by a trusted key",
    )


class UpdateWorkspace(BaseModel):
    description: str | None = Field(default=None, max_length=1000)
    protected_aliases: list[str] | None = Field(default=None, max_length=50)
    promotion_gate: bool | None = None
    require_signed_versions: bool | None = None


class TrustKey(BaseModel):
    public_key: str = Field(
        max_length=4096, description="A PEM elliptic-curve public key (P-256, P-384 or P-521)"
    )
    label: str = Field(default="", max_length=200, description="Whose key it is")


router = APIRouter(prefix="/api/v1")


@router.get("/workspaces", summary="List workspaces (a workspace's key: its own)")
def list_workspaces(services: Services, actor: CurrentActor) -> dict[str, Any]:
    return {"workspaces": [w.public() for w in services.workspaces.list(actor)]}


@router.post(
    "/workspaces",
    status_code=201,
    summary="Create a workspace, in MLflow too (platform admin)",
)
def create(body: CreateWorkspace, services: Services, actor: CurrentActor) -> dict[str, Any]:
    return services.workspaces.create(
        actor,
        body.name,
        description=body.description,
        protected_aliases=body.protected_aliases,
        promotion_gate=body.promotion_gate,
        require_signed_versions=body.require_signed_versions,
    ).public()


@router.get("/workspaces/{name}", summary="One workspace")
def get(name: str, services: Services, actor: CurrentActor) -> dict[str, Any]:
    return services.workspaces.get(actor, name).public()


@router.patch("/workspaces/{name}", summary="Change a workspace's settings (its admin)")
def update(
    name: str, body: UpdateWorkspace, services: Services, actor: CurrentActor
) -> dict[str, Any]:
    return services.workspaces.update(
        actor,
        name,
        description=body.description,
        protected_aliases=body.protected_aliases,
        promotion_gate=body.promotion_gate,
        require_signed_versions=body.require_signed_versions,
    ).public()


@router.delete(
    "/workspaces/{name}",
    summary="Delete an empty workspace; revokes its keys, disables its endpoints (platform admin)",
)
def delete(name: str, services: Services, actor: CurrentActor) -> dict[str, Any]:
    return services.workspaces.delete(actor, name).public()


@router.get(
    "/workspaces/{name}/trusted-keys",
    summary="The public keys the workspace trusts to sign versions (any of its keys)",
)
def trusted_keys(name: str, services: Services, actor: CurrentActor) -> dict[str, Any]:
    return {"trusted_keys": [k.public() for k in services.workspaces.trusted_keys(actor, name)]}


@router.post(
    "/workspaces/{name}/trusted-keys",
    status_code=201,
    summary="Trust a public key to sign the workspace's versions (its admin)",
)
def trust_key(name: str, body: TrustKey, services: Services, actor: CurrentActor) -> dict[str, Any]:
    return services.workspaces.trust_key(actor, name, body.public_key, label=body.label).public()


@router.delete(
    "/workspaces/{name}/trusted-keys/{fingerprint}",
    summary="Stop trusting a public key (its admin)",
)
def untrust_key(
    name: str, fingerprint: str, services: Services, actor: CurrentActor
) -> dict[str, Any]:
    return services.workspaces.untrust_key(actor, name, fingerprint).public()
