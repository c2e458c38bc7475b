"""Key roles inside a workspace: ``read`` ⊂ ``write`` ⊂ ``promote`` ⊂ ``admin``.

``read`` sees the workspace's models, runs and artifacts; ``write`` registers and changes
them (limited to model-name patterns when the key has some); ``promote`` also moves the
workspace's protected aliases; ``admin`` also manages the workspace's keys, webhooks and
settings. A platform admin key is an ``admin`` key that belongs to no workspace
(``KeyRecord.workspace is None``): it acts in every workspace.
"""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    PROMOTE = "promote"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Scope) -> bool:
        """Whether a key with this scope may do what ``needed`` demands."""
        return self.rank >= needed.rank


_RANK = {Scope.READ: 0, Scope.WRITE: 1, Scope.PROMOTE: 2, Scope.ADMIN: 3}
