"""The one decision of who may run which admin operation.

:data:`NEEDED` is the table (operation → least scope), :func:`authorize` the decision.
Every service asks :func:`authorize` before it reads or changes anything; no front-end
decides on its own. Workspaces will turn the scope into a role per workspace
(``read ⊂ write ⊂ promote ⊂ admin``) and add the resource to the question; the
services' calls stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from hokusai.admin.actor import Actor
from hokusai.errors import PermissionDenied
from hokusai.keys.scopes import Scope


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


# Checking another service's key needs only a key of one's own: it reveals no more than
# presenting that key would. Everything else administers the platform.
NEEDED: Mapping[Action, Scope] = MappingProxyType(
    {action: Scope.ADMIN for action in Action} | {Action.KEYS_VALIDATE: Scope.READ}
)

# The audit action of a refusal (kept from the gateway's own refusals).
DENIED = "denied"


def authorize(actor: Actor, action: Action) -> None:
    """Return if ``actor`` may do ``action``; else raise :class:`PermissionDenied`
    naming the scope needed and the one the actor has."""
    needed = NEEDED[action]
    if actor.scope.allows(needed):
        return
    origin = actor.origin
    what = action.value if origin.is_local else f"{origin.method} {origin.path}"
    raise PermissionDenied(
        f"{what} needs the '{needed.value}' scope; {actor.label} has '{actor.scope.value}'.",
        needed=needed.value,
    )
