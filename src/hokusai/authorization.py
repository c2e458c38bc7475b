"""The one decision of who may do what, for admin operations and MLflow requests alike.

A key acts in one workspace with one role (``read ⊂ write ⊂ promote ⊂ admin``); a
platform admin key (no workspace) and the operator on the server's store act in every
workspace. Everything that refuses anybody anything asks a function here:

- :func:`authorize`: an admin operation (:class:`Action`, least role in :data:`NEEDED`)
  on a workspace, or platform-wide (``workspace=None``).
- :func:`request_workspace`: the workspace an MLflow request acts in, from the key and
  the workspace header the client may have sent.
- :func:`check_role`: the route policy's least role for an MLflow endpoint.
- :func:`check_models`: a write key's model-name patterns.
- :func:`check_alias`: a workspace's protected aliases, and its promotion gate.
- :func:`check_signed`: a workspace's requirement that protected aliases name signed
  versions.
- :func:`refuse_source`: a version's source that is not the workspace's own.

Each refusal is a :class:`PermissionDenied` whose message says what refused it and who
can grant it, with the same facts in ``details`` (for ``hokusai doctor`` and the audit
log). The gateway gathers the facts (the request's model names, the alias, the version,
where a source lives); this module decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from hokusai.admin.actor import Actor
from hokusai.errors import PermissionDenied
from hokusai.keys.records import KeyRecord
from hokusai.keys.scopes import Scope
from hokusai.signing import SignatureError
from hokusai.webhooks.events import is_ready_for_deploy, version_data
from hokusai.workspaces.records import DEFAULT_WORKSPACE, WorkspaceRecord


class Action(StrEnum):
    """An admin operation. A change's value is the ``action`` of its audit row."""

    KEYS_CREATE = "keys.create"
    KEYS_LIST = "keys.list"
    KEYS_GET = "keys.get"
    KEYS_REVOKE = "keys.revoke"
    KEYS_ROTATE = "keys.rotate"
    KEYS_VALIDATE = "keys.validate"
    WEBHOOKS_ADD = "webhooks.add"
    WEBHOOKS_LIST = "webhooks.list"
    WEBHOOKS_GET = "webhooks.get"
    WEBHOOKS_DISABLE = "webhooks.disable"
    WEBHOOKS_ENABLE = "webhooks.enable"
    WEBHOOKS_REMOVE = "webhooks.remove"
    WEBHOOKS_ROTATE_SECRET = "webhooks.rotate_secret"
    WEBHOOKS_TEST = "webhooks.test"
    WEBHOOKS_DELIVERIES = "webhooks.deliveries"
    WEBHOOKS_EVENTS = "webhooks.events"
    WEBHOOKS_REPLAY = "webhooks.replay"
    AUDIT_READ = "audit.read"
    WORKSPACES_CREATE = "workspaces.create"
    WORKSPACES_LIST = "workspaces.list"
    WORKSPACES_GET = "workspaces.get"
    WORKSPACES_UPDATE = "workspaces.update"
    WORKSPACES_DELETE = "workspaces.delete"
    WORKSPACES_TRUST_KEY = "workspaces.trust_key"
    WORKSPACES_UNTRUST_KEY = "workspaces.untrust_key"
    WORKSPACES_TRUSTED_KEYS = "workspaces.trusted_keys"


# Checking another service's key needs only a key of one's own: it reveals no more than
# presenting that key would; reading one's own workspace's settings likewise (every key
# meets its protected aliases), and its trusted keys (every key that loads a model with
# ``verify="signature"`` checks against them). Everything else administers a workspace.
NEEDED: Mapping[Action, Scope] = MappingProxyType(
    {action: Scope.ADMIN for action in Action}
    | {
        Action.KEYS_VALIDATE: Scope.READ,
        Action.WORKSPACES_GET: Scope.READ,
        Action.WORKSPACES_LIST: Scope.READ,
        Action.WORKSPACES_TRUSTED_KEYS: Scope.READ,
    }
)

# The audit action of a refusal (kept from the gateway's own refusals).
DENIED = "denied"

# What refused a request: the refusal's ``reason``, which ``details["refused_by"]`` repeats.
ROLE = "role"
WORKSPACE = "workspace"
MODEL_PATTERN = "model_pattern"
PROTECTED_ALIAS = "protected_alias"
PROMOTION_GATE = "promotion_gate"
SIGNED_VERSIONS = "signed_versions"
SOURCE = "source"


def granted_by(workspace: str | None) -> str:
    """Who can grant what a workspace's key lacks."""
    if workspace is None:
        return "a platform admin"
    return f"an admin of workspace '{workspace}' or a platform admin"


def _has(workspace: str | None, scope: Scope) -> str:
    if workspace is None:
        return "is a platform admin" if scope is Scope.ADMIN else f"has '{scope.value}'"
    return f"has '{scope.value}' in workspace '{workspace}'"


def authorize(actor: Actor, action: Action, workspace: str | None = None) -> None:
    """Return if ``actor`` may do ``action`` on ``workspace`` (None: platform-wide, which
    only a platform admin or the operator may); else raise :class:`PermissionDenied`
    naming the role needed, the one the actor has, and who can grant it."""
    needed = NEEDED[action]
    in_reach = actor.workspace is None or actor.workspace == workspace
    if in_reach and actor.scope.allows(needed):
        return
    origin = actor.origin
    what = action.value if origin.is_local else f"{origin.method} {origin.path}"
    if workspace is None:
        message = f"{what} is platform-wide: it needs a platform admin key"
    else:
        message = f"{what} needs the '{needed.value}' role in workspace '{workspace}'"
    raise PermissionDenied(
        f"{message}; {actor.label} {_has(actor.workspace, actor.scope)}. "
        f"Ask {granted_by(workspace)}.",
        needed=needed.value,
        reason=ROLE if in_reach or workspace is None else WORKSPACE,
        details={
            "needed": needed.value,
            "role": actor.scope.value,
            "workspace": workspace,
            "key_workspace": actor.workspace,
            "granted_by": granted_by(workspace),
        },
    )


# ---- MLflow requests ---------------------------------------------------------------------


def _key_label(key: KeyRecord) -> str:
    return f"API key {key.display_prefix}… ({key.id})"


def request_workspace(key: KeyRecord, requested: str | None) -> str:
    """The workspace an MLflow request acts in: the key's own; a platform admin key's is
    the one the client asked for (``X-MLflow-Workspace``), else ``default``. A client
    asking for a workspace its key does not belong to is refused, naming it."""
    if key.workspace is None:
        return requested or DEFAULT_WORKSPACE
    if requested and requested != key.workspace:
        raise PermissionDenied(
            f"{_key_label(key)} belongs to workspace '{key.workspace}', not "
            f"'{requested}': it cannot act in '{requested}'. Drop the X-MLflow-Workspace "
            f"header (or MLFLOW_WORKSPACE), or ask {granted_by(requested)} for a key there.",
            needed=key.scope.value,
            reason=WORKSPACE,
            details={
                "workspace": requested,
                "key_workspace": key.workspace,
                "granted_by": granted_by(requested),
            },
        )
    return key.workspace


def check_role(key: KeyRecord, needed: Scope, what: str, workspace: str) -> None:
    """The route policy's decision: ``what`` (``"POST /api/2.0/…"``) needs ``needed``.

    An ``admin`` route of MLflow (its workspaces, its server-side webhooks, its AI
    gateway's secrets) configures the whole server, so it needs a platform admin."""
    platform = needed is Scope.ADMIN
    if key.scope.allows(needed) and (not platform or key.workspace is None):
        return
    if platform:
        message = f"{what} configures the whole MLflow server: it needs a platform admin key"
        grant = granted_by(None)
    else:
        message = f"{what} needs the '{needed.value}' role"
        grant = granted_by(workspace)
    raise PermissionDenied(
        f"{message}; {_key_label(key)} {_has(key.workspace, key.scope)}. Ask {grant} "
        f"for a key with the '{needed.value}' role.",
        needed=needed.value,
        reason=ROLE,
        details={
            "needed": needed.value,
            "role": key.scope.value,
            "workspace": None if platform else workspace,
            "key_workspace": key.workspace,
            "granted_by": grant,
        },
    )


def check_models(key: KeyRecord, names: Iterable[str] | None, what: str, workspace: str) -> None:
    """A write key limited to model-name patterns changes only the models they match;
    ``names`` None: the request's models cannot be told, which such a key may not do."""
    if not key.models:
        return
    if names is None:
        raise PermissionDenied(
            f"{what}: the model it changes cannot be told from the request, and "
            f"{_key_label(key)} may only change models matching "
            f"{', '.join(repr(p) for p in key.models)}.",
            needed=key.scope.value,
            reason=MODEL_PATTERN,
            details={
                "patterns": list(key.models),
                "workspace": workspace,
                "granted_by": granted_by(workspace),
            },
        )
    for name in names:
        if key.model_pattern_refusing(name):
            patterns = ", ".join(f"'{p}'" for p in key.models)
            raise PermissionDenied(
                f"{what} changes model '{name}', but {_key_label(key)} may only change "
                f"models matching {patterns}. Ask {granted_by(workspace)} for a key whose "
                "patterns include it.",
                needed=key.scope.value,
                reason=MODEL_PATTERN,
                details={
                    "model": name,
                    "patterns": list(key.models),
                    "workspace": workspace,
                    "granted_by": granted_by(workspace),
                },
            )


def check_alias(
    key: KeyRecord,
    settings: WorkspaceRecord,
    *,
    model: str,
    alias: str,
    what: str,
    version: Mapping[str, Any] | None = None,
) -> None:
    """Setting (``version`` given: the version it will name) or deleting ``alias``.

    A protected alias needs the ``promote`` role; with the workspace's promotion gate
    on, it may only name a version whose measured metric meets its baseline."""
    if not settings.protects(alias):
        return
    workspace = settings.name
    if not key.scope.allows(Scope.PROMOTE):
        raise PermissionDenied(
            f"{what}: alias '{alias}' is protected in workspace '{workspace}', and moving "
            f"it needs the 'promote' role; {_key_label(key)} {_has(key.workspace, key.scope)}."
            f" Ask {granted_by(workspace)} for a promote key.",
            needed=Scope.PROMOTE.value,
            reason=PROTECTED_ALIAS,
            details={
                "alias": alias,
                "model": model,
                "needed": Scope.PROMOTE.value,
                "role": key.scope.value,
                "workspace": workspace,
                "granted_by": granted_by(workspace),
            },
        )
    if version is None or not settings.promotion_gate:
        return
    # One rule with the webhooks' ``token.ready_for_deploy`` event.
    data = version_data(dict(version))
    if is_ready_for_deploy(data):
        return
    metric = data.get("metric") or {}
    measured, baseline = metric.get("measured_value"), metric.get("benchmark_value")
    if measured is None or baseline is None:
        why = "it carries no measured metric and baseline (measured_value, benchmark_value)"
    else:
        better = "at most" if metric.get("lower_is_better") else "at least"
        why = f"its measured {metric.get('name') or 'metric'} {measured:g} is not {better} "
        why += f"its baseline {baseline:g}"
    raise PermissionDenied(
        f"{what}: workspace '{workspace}' gates its protected aliases on the version's "
        f"metric, and version {data.get('version')} of '{model}' does not pass: {why}.",
        needed=Scope.PROMOTE.value,
        reason=PROMOTION_GATE,
        details={
            "alias": alias,
            "model": model,
            "version": data.get("version"),
            "measured_value": measured,
            "benchmark_value": baseline,
            "workspace": workspace,
            "granted_by": f"a version that meets its baseline; {granted_by(workspace)} "
            "can turn the gate off",
        },
    )


# What a version that fails the signed-versions requirement lacks, and what to do about it,
# by ``SignatureError.problem`` (``hokusai.signing``).
_UNSIGNED_FIXES = {
    "unsigned": "Sign it with a key the workspace trusts (ModelRegistry.sign_version)",
    "invalid": "Its manifest or signature was changed after signing: register the model "
    "again and sign the new version",
    "untrusted": "Register and sign a new version with a key the workspace trusts",
}


def check_signed(
    key: KeyRecord,
    settings: WorkspaceRecord,
    *,
    model: str,
    alias: str,
    what: str,
    version: str,
    problem: SignatureError | None,
) -> None:
    """Setting the protected ``alias`` to ``version``, whose signature check found
    ``problem`` (None: signed by a key the workspace trusts). With the workspace's
    requirement of signed versions on, only a signed version passes."""
    if problem is None or not settings.require_signed_versions or not settings.protects(alias):
        return
    workspace = settings.name
    fix = _UNSIGNED_FIXES[problem.problem]
    grant = granted_by(workspace)
    if problem.problem == "untrusted":
        fix += f", or ask {grant} to trust the key (hokusai workspaces trust-key)"
    raise PermissionDenied(
        f"{what}: workspace '{workspace}' requires a protected alias to name a version "
        f"signed by a key it trusts, and version {version} of '{model}' is not: "
        f"{'; '.join(problem.problems)}. {fix}; nothing was changed.",
        needed=Scope.PROMOTE.value,
        reason=SIGNED_VERSIONS,
        details={
            "alias": alias,
            "model": model,
            "version": version,
            "signature": problem.problem,
            "signer": problem.signer,
            "workspace": workspace,
            "granted_by": f"a version signed by a trusted key; {grant} can trust a key or "
            "turn the requirement off",
        },
    )


def refuse_source(key: KeyRecord, source: str, why: str, workspace: str) -> PermissionDenied:
    """The refusal of a model version made from ``source``, which is not the workspace's
    own (another team's run, model or artifacts, or a place outside the registry)."""
    return PermissionDenied(
        f"A model version in workspace '{workspace}' must come from the workspace's own "
        f"runs, models or artifacts; its source {source!r} does not: {why}.",
        needed=key.scope.value,
        reason=SOURCE,
        details={"source": source, "workspace": workspace},
    )
