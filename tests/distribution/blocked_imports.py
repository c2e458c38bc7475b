"""A Python prelude that makes the server's packages unimportable in a child process.

Run as ``python -c prelude() + code``: a meta-path finder, first in line, refuses every
module of the names it is given as if it were not installed, and records each refused
name in ``BLOCKED_ATTEMPTS`` so the child can tell whether anything even tried.

Two sets: what a base install (``pip install hokusai-ml-platform``) really lacks, for the
commands that must run there; and, for the SDK's own path, everything of the server,
hokusai's own server modules included.
"""

from __future__ import annotations

# What mlflow-skinny requires itself, 2.22 and 3.x alike (``mlflow.pyfunc`` reaches FastAPI
# through ``mlflow.gateway``): present wherever the SDK's MLflow is.
MLFLOW_SKINNY_OWN = ("fastapi", "starlette", "uvicorn")

# The third-party packages only the server extra brings (and full MLflow's server, whose
# Flask app mlflow-skinny cannot import): what a base install lacks. hokusai's own
# modules are all there (the wheel holds them); those that need these fail to import.
NOT_IN_THE_BASE_INSTALL = (
    "fastapi_offline",
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
)

# hokusai's server modules: the SDK never loads them, even where they could be imported.
HOKUSAI_SERVER_MODULES = (
    "hokusai.gateway",
    "hokusai.db",
    "hokusai.webhooks",
    "hokusai.keys.store",
    "hokusai.keys.service",
    "hokusai.settings",
)

# Everything of the server: for checks of the SDK alone.
SERVER_PACKAGES = MLFLOW_SKINNY_OWN + NOT_IN_THE_BASE_INSTALL + HOKUSAI_SERVER_MODULES


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
