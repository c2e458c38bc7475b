"""Who a person signed in with single sign-on is on the platform: the role map.

``HOKUSAI_OIDC_ROLE_MAP`` is a JSON list of rules; each matches on one claim of the
provider's ID token (``group``: one of the ``groups``; ``email``: the address, ``*`` and
``?`` as wildcards) and names a ``workspace`` and a ``role``. The first rule that matches
decides; a person no rule matches is not signed in. The map is checked when the settings
load, so a mistake stops the server at startup instead of at someone's sign-in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hokusai.keys.scopes import Scope

CLAIMS = ("group", "email")
# MLflow's workspace names: what `hokusai workspaces create` accepts.
_WORKSPACE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


@dataclass(frozen=True)
class RoleRule:
    claim: str  # "group" or "email"
    value: str
    workspace: str
    role: Scope

    def matches(self, claims: Mapping[str, Any]) -> bool:
        if self.claim == "group":
            groups = claims.get("groups")
            return isinstance(groups, list) and self.value in groups
        email = claims.get("email")
        # An address the provider says it has not verified proves nothing about who this is.
        if not isinstance(email, str) or claims.get("email_verified") is False:
            return False
        return _wildcard(self.value).match(email.lower()) is not None


def _wildcard(pattern: str) -> re.Pattern[str]:
    """``*`` any run of characters, ``?`` one; everything else literal, case ignored."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex.lower() + r"\Z", re.DOTALL)


def parse_role_map(text: str) -> tuple[RoleRule, ...]:
    """The rules of ``text``, or ValueError naming the first thing wrong with it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the role map is not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, list):
        raise ValueError("the role map must be a JSON list of rules")
    return tuple(_rule(i, item) for i, item in enumerate(data, start=1))


def _rule(number: int, item: object) -> RoleRule:
    where = f"rule {number} of the role map"
    if not isinstance(item, dict):
        raise ValueError(
            f"{where} must be an object such as "
            '{"group": "ml-admins", "workspace": "ml", "role": "admin"}'
        )
    claims = [c for c in CLAIMS if c in item]
    if len(claims) != 1:
        raise ValueError(f"{where} must match on exactly one of: group, email")
    unknown = set(item) - {*CLAIMS, "workspace", "role"}
    if unknown:
        raise ValueError(f"{where} has unknown fields: {', '.join(sorted(unknown))}")
    value, workspace, role = item[claims[0]], item.get("workspace"), item.get("role")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {claims[0]} must be a non-empty string")
    if not isinstance(workspace, str) or not _WORKSPACE.match(workspace):
        raise ValueError(f'{where}: workspace must be a workspace name such as "default"')
    roles = [s.value for s in Scope]
    if role not in roles:
        raise ValueError(f"{where}: role must be one of {', '.join(roles)}")
    return RoleRule(claims[0], value.strip(), workspace, Scope(role))


def match(rules: Sequence[RoleRule], claims: Mapping[str, Any]) -> RoleRule | None:
    """The first rule ``claims`` match, if any."""
    return next((rule for rule in rules if rule.matches(claims)), None)
