"""The admin services of one deployment, built once from its store and settings.

The gateway keeps one :class:`AdminServices` in its state for the ``/api/v1`` routers;
a ``hokusai`` command working on the local store builds one the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from hokusai.admin.audit import AuditReader
from hokusai.admin.keys import KeyAdmin
from hokusai.admin.webhooks import WebhookAdmin
from hokusai.admin.workspaces import WorkspaceAdmin
from hokusai.keys.service import KeyService
from hokusai.settings import Settings
from hokusai.webhooks.signing import SecretBox
from hokusai.webhooks.worker import dispatcher_settings
from hokusai.workspaces.mlflow_api import MlflowWorkspaces


@dataclass(frozen=True)
class AdminServices:
    keys: KeyAdmin
    webhooks: WebhookAdmin
    audit: AuditReader
    workspaces: WorkspaceAdmin


def build_services(
    engine: Engine,
    settings: Settings,
    verifier: KeyService,
    *,
    on_revoked: Callable[[str], None] | None = None,
    mlflow_url: Callable[[], str] | None = None,
) -> AdminServices:
    """The services on ``engine``; ``verifier`` is the deployment's key verifier (it holds
    the server secret that key hashes are made with). ``mlflow_url`` finds the MLflow
    server whose workspaces to manage, when one is needed (default: ``settings.mlflow_url``)."""
    find_mlflow = mlflow_url or (lambda: settings.mlflow_url)
    return AdminServices(
        keys=KeyAdmin(engine, verifier, on_revoked=on_revoked),
        webhooks=WebhookAdmin(
            engine, SecretBox(settings.resolved_secret), dispatcher_settings(settings)
        ),
        audit=AuditReader(engine),
        workspaces=WorkspaceAdmin(
            engine, lambda: MlflowWorkspaces(find_mlflow()), on_revoked=on_revoked
        ),
    )
