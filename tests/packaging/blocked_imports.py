"""A Python prelude that makes the server's packages unimportable in a child process.

Run as ``python -c PRELUDE + code``: a meta-path finder, first in line, refuses every
module of :data:`SERVER_PACKAGES` as if it were not installed (``ModuleNotFoundError``),
and records each refused name in ``BLOCKED_ATTEMPTS`` so the child can tell whether
anything even tried.
"""

from __future__ import annotations

SERVER_PACKAGES = (
    "fastapi",
    "fastapi_offline",
    "starlette",
    "uvicorn",
    "aiohttp",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "flask",
    "gunicorn",
    "mlflow.server",
    "prometheus_client",
    "pydantic_settings",
    "standardwebhooks",
    "redis",
    "yarl",
    "hokusai.gateway",
    "hokusai.db",
    "hokusai.webhooks",
    "hokusai.keys.store",
    "hokusai.keys.service",
    "hokusai.settings",
)

PRELUDE = f"""
import sys
BLOCKED = {SERVER_PACKAGES!r}
BLOCKED_ATTEMPTS = []

class _ServerPackagesAreNotInstalled:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            BLOCKED_ATTEMPTS.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _ServerPackagesAreNotInstalled())
"""
