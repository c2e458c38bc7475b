"""Hokusai: a self-hostable model registry platform in front of MLflow.

``from hokusai import ModelRegistry`` is the SDK; the errors it raises are importable
from here too.
"""

from hokusai.integrity import IntegrityError
from hokusai.sdk.errors import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    EndpointNotFoundError,
    HokusaiError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RegistrationError,
    RegistryUnavailableError,
    ServerError,
    UnsafeModelError,
    ValidationError,
)
from hokusai.sdk.registry import ModelRegistry
from hokusai.sdk.results import (
    KeyIdentity,
    LineageEntry,
    ModelVersion,
    RegistrationResult,
    RemovedRun,
)
from hokusai.version import __version__

__all__ = [
    "APIError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "EndpointNotFoundError",
    "HokusaiError",
    "IntegrityError",
    "KeyIdentity",
    "LineageEntry",
    "ModelRegistry",
    "ModelVersion",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RegistrationError",
    "RegistrationResult",
    "RegistryUnavailableError",
    "RemovedRun",
    "ServerError",
    "UnsafeModelError",
    "ValidationError",
    "__version__",
]
