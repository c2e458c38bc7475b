"""What a workspace is, as the workspace service and a remote gateway's ``/api/v1`` hand
it back; and the rules for its name and its protected aliases.

Plain records with no store behind them, so the CLI's remote services can build them on
the base install.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from hokusai.errors import InvalidInput

DEFAULT_WORKSPACE = "default"
# The header MLflow takes a request's workspace from (the gateway sets it from the key).
WORKSPACE_HEADER = "X-MLflow-Workspace"
DEFAULT_PROTECTED_ALIASES: tuple[str, ...] = ("production", "champion")

# MLflow's own rule for workspace names (Kubernetes-style), so that a name the platform
# accepts is one MLflow accepts too, and its reserved words.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_RESERVED = frozenset({"workspaces", "api", "ajax-api", "static-files"})
# MLflow's alias rule: letters, digits, '_' and '-', not a version-like 'v<digits>'.
_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,255}\Z")
MAX_PROTECTED_ALIASES = 50


def check_workspace_name(name: str) -> str:
    """``name`` if MLflow would accept it as a workspace name; else :class:`InvalidInput`."""
    if not isinstance(name, str) or not 2 <= len(name) <= 63 or not _NAME.match(name):
        raise InvalidInput(
            f"workspace name {name!r} must be 2 to 63 lowercase letters, digits and inner "
            "hyphens (like a Kubernetes namespace)"
        )
    if name in _RESERVED:
        raise InvalidInput(f"workspace name {name!r} is reserved by MLflow")
    return name


def check_aliases(aliases: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A workspace's protected aliases, checked and without repeats (order kept)."""
    if len(aliases) > MAX_PROTECTED_ALIASES:
        raise InvalidInput(f"at most {MAX_PROTECTED_ALIASES} protected aliases")
    seen: dict[str, None] = {}
    for alias in aliases:
        if not isinstance(alias, str) or not _ALIAS.match(alias.strip()):
            raise InvalidInput(
                f"protected alias {alias!r} must be 1 to 255 letters, digits, '_' or '-'"
            )
        seen[alias.strip()] = None
    return tuple(seen)


@dataclass(frozen=True)
class WorkspaceRecord:
    """A workspace as the platform knows it."""

    name: str
    description: str
    protected_aliases: tuple[str, ...]
    promotion_gate: bool
    created_at: datetime
    updated_at: datetime
    # A protected alias may only name a version signed by a key the workspace trusts.
    require_signed_versions: bool = False

    def protects(self, alias: str) -> bool:
        """Whether setting or deleting ``alias`` needs the ``promote`` role."""
        return alias in self.protected_aliases

    def public(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "protected_aliases": list(self.protected_aliases),
            "promotion_gate": self.promotion_gate,
            "require_signed_versions": self.require_signed_versions,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class TrustedKeyRecord:
    """A public key whose signatures a workspace trusts (``hokusai.signing``)."""

    workspace: str
    fingerprint: str
    public_key: str
    label: str
    added_by: str
    added_at: datetime

    def public(self) -> dict[str, object]:
        return {
            "workspace": self.workspace,
            "fingerprint": self.fingerprint,
            "public_key": self.public_key,
            "label": self.label,
            "added_by": self.added_by,
            "added_at": self.added_at.isoformat(),
        }
