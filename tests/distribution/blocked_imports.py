"""A Python prelude that makes the server's packages unimportable in a child process.

Run as ``python -c prelude() + code``: a meta-path finder, first in line, refuses every
module of :data:`SERVER_PACKAGES` as if it were not installed, and records each refused
name in ``BLOCKED_ATTEMPTS`` so the child can tell whether anything even tried.
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

# What mlflow-skinny 3.x requires itself (``mlflow.pyfunc`` reaches FastAPI through
# ``mlflow.gateway``): present wherever the SDK's MLflow 3 is, so a test of the SDK's own
# path blocks everything else.
MLFLOW_SKINNY_OWN = ("fastapi", "starlette", "uvicorn")


def prelude(blocked: tuple[str, ...] = SERVER_PACKAGES) -> str:
    """The prelude that makes ``blocked`` (and their submodules) unimportable."""
    return _PRELUDE.replace("BLOCKED_NAMES", repr(blocked))


_PRELUDE = """
import sys
BLOCKED = BLOCKED_NAMES
BLOCKED_ATTEMPTS = []

class _ServerPackagesAreNotInstalled:
    # Every finder goes behind this one: a blocked name is found by none of them, so an
    # import raises ModuleNotFoundError and importlib.util.find_spec answers None, as
    # when the package is not installed.
    def __init__(self, finders):
        self.finders = finders

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            BLOCKED_ATTEMPTS.append(name)
            return None
        for finder in self.finders:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                return spec
        return None

    def find_distributions(self, *args, **kwargs):
        # importlib.metadata asks sys.meta_path too (MLflow checks which of its
        # distributions is installed that way).
        for finder in self.finders:
            find = getattr(finder, "find_distributions", None)
            if find is not None:
                yield from find(*args, **kwargs)

    def invalidate_caches(self):
        for finder in self.finders:
            if hasattr(finder, "invalidate_caches"):
                finder.invalidate_caches()

sys.meta_path[:] = [_ServerPackagesAreNotInstalled(list(sys.meta_path))]
"""
