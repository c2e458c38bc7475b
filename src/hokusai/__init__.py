"""Hokusai: a self-hostable model registry platform in front of MLflow.

``from hokusai import ModelRegistry`` is the SDK; the errors it raises are importable
from here too.
"""

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
    ValidationError,
)
from hokusai.sdk.registry import ModelRegistry
from hokusai.sdk.results import ModelVersion, RegistrationResult
from hokusai.version import __version__

__all__ = [
    "APIError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "EndpointNotFoundError",
    "HokusaiError",
    "ModelRegistry",
    "ModelVersion",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "RegistrationError",
    "RegistrationResult",
    "RegistryUnavailableError",
    "ServerError",
    "ValidationError",
    "__version__",
]
