"""The gateway's URL space: which part of the server a path belongs to.

Paths are checked for canonical form on the raw (still percent-encoded) bytes,
before any routing: a dot segment, an encoded slash or dot, ``//`` or a backslash
could make the gateway's idea of the path differ from MLflow's, which is how a
policy gets bypassed.

Then every decision is made on one representation, :class:`CanonicalPath`: the raw
path with percent-encoded unreserved characters (letters, digits, ``-._~``) decoded,
as RFC 3986 6.2.2.2 normalises them, and its decoded text. In that form a prefix made
of letters and ``/`` is the same characters in both, so ``/api/mlflo%77/`` is
``/api/mlflow/`` for routing, for the route policy and for MLflow alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import unquote_to_bytes

from hokusai.errors import ErrorCode
from hokusai.gateway.errors import GatewayError

MLFLOW_PREFIX = "/api/mlflow"
# Paths that reach MLflow unchanged, for a tracking URI of just ``https://host``.
BARE_MLFLOW_PREFIXES = ("/api/2.0/mlflow/", "/api/2.0/mlflow-artifacts/", "/api/3.0/mlflow/")
ADMIN_API_PREFIX = "/api/v1/"
# The API reference page (hokusai.gateway.api_docs) and its assets, served without a key.
DOCS_PATHS = (
    "/docs",
    "/api/v1/openapi.json",
    "/docs/oauth2-redirect",
    "/docs/static/swagger-ui-bundle.js",
    "/docs/static/swagger-ui.css",
    "/docs/static/favicon.png",
)

# The pages a person signs in and out with (hokusai.gateway.signin).
SIGN_IN_PATHS = ("/", "/login", "/logout", "/login/sso", "/login/sso/callback")
# The admin console (hokusai.gateway.console): its pages are under this prefix, and the
# prefix without its slash is sent there.
CONSOLE_PREFIX = "/admin/"

# Percent-encodings that would change the path's structure once decoded.
_ENCODED_STRUCTURE = re.compile(rb"%(2[fFeE]|5[cC]|00|25)")
# A percent-encoded unreserved character (RFC 3986 2.3): the same as the character itself.
_ENCODED_UNRESERVED = re.compile(rb"%(?:[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9]|2[dDeE]|5[fF]|7[eE])")
# A '%' not starting an escape survives one decoding and can pair with what follows
# ('%%32e' -> '%2e' -> '.'), so a second decoder would see structure the first did not.
_STRAY_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# What MLflow paths look like, to recognise a request sent under the wrong prefix.
_MLFLOW_LOOKING = re.compile(r"/(?:ajax-)?api/[23]\.0/mlflow|/mlflow-artifacts/")


class Area(Enum):
    HEALTH = "health"
    READY = "ready"
    METRICS = "metrics"
    MLFLOW = "mlflow"
    ADMIN_API = "admin_api"
    SIGN_IN = "sign_in"
    CONSOLE = "console"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Target:
    area: Area
    # For Area.MLFLOW: the path as MLflow knows it (prefix removed).
    mlflow_path: str = ""
    # The gateway's prefix in front of ``mlflow_path`` ("" for the bare MLflow paths).
    prefix: str = ""


@dataclass(frozen=True)
class CanonicalPath:
    """One request path in the one form every decision is made on."""

    # Still percent-encoded, except for unreserved characters: what MLflow is sent.
    raw: bytes
    # Fully decoded: what routing, the route policy, logs and the audit see.
    path: str


def canonical(raw_path: bytes) -> CanonicalPath:
    """Check ``raw_path`` (see :func:`check_canonical`) and bring it into canonical form."""
    check_canonical(raw_path)
    if b"%" not in raw_path:  # the common case: nothing to normalise or decode
        try:
            return CanonicalPath(raw_path, raw_path.decode("ascii"))
        except UnicodeDecodeError:
            pass
    raw = _ENCODED_UNRESERVED.sub(lambda m: unquote_to_bytes(m.group(0)), raw_path)
    try:
        path = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise GatewayError(
            ErrorCode.INVALID_PARAMETER_VALUE,
            "The request path is not valid UTF-8 once percent-decoded (overlong or broken "
            "sequences); the gateway accepts only canonical paths. Percent-encode the path's "
            "UTF-8 bytes.",
            reason="non_canonical_path",
        ) from None
    return CanonicalPath(raw, path)


def check_canonical(raw_path: bytes) -> None:
    """Refuse a path that is not in canonical form."""
    problem = None
    if _ENCODED_STRUCTURE.search(raw_path):
        problem = "percent-encoded slashes, dots, backslashes, NULs or percent signs"
    elif _STRAY_PERCENT.search(raw_path):
        problem = "a '%' that does not start a percent-encoding"
    elif b"//" in raw_path:
        problem = "an empty segment ('//')"
    elif b"\\" in raw_path:
        problem = "a backslash"
    else:
        segments = raw_path.split(b"/")
        if any(s in (b".", b"..") for s in segments):
            problem = "a '.' or '..' segment"
    if problem:
        raise GatewayError(
            ErrorCode.INVALID_PARAMETER_VALUE,
            f"The request path contains {problem}; the gateway accepts only canonical paths. "
            "Send the path without it.",
            reason="non_canonical_path",
        )


def locate(path: str) -> Target:
    """Which area of the gateway ``path`` (already checked canonical) belongs to."""
    if path.startswith(MLFLOW_PREFIX + "/"):
        return Target(Area.MLFLOW, path[len(MLFLOW_PREFIX) :], MLFLOW_PREFIX)
    if path.startswith(BARE_MLFLOW_PREFIXES):
        return Target(Area.MLFLOW, path)
    if path.startswith(ADMIN_API_PREFIX) or path in DOCS_PATHS:
        return Target(Area.ADMIN_API)
    if path == "/health":
        return Target(Area.HEALTH)
    if path == "/ready":
        return Target(Area.READY)
    if path == "/metrics":
        return Target(Area.METRICS)
    if path in SIGN_IN_PATHS:
        return Target(Area.SIGN_IN)
    if path.startswith(CONSOLE_PREFIX) or path == CONSOLE_PREFIX.rstrip("/"):
        return Target(Area.CONSOLE)
    return Target(Area.NOT_FOUND)


def not_found(path: str, base_url: str) -> GatewayError:
    """The 404 for a path outside the URL space, naming the right tracking URI."""
    tracking_uri = base_url.rstrip("/") + MLFLOW_PREFIX
    if path == MLFLOW_PREFIX or path == MLFLOW_PREFIX + "/":
        message = (
            f"{path} is the MLflow tracking URI of this gateway, not an endpoint: set "
            f"MLFLOW_TRACKING_URI={tracking_uri} and let the MLflow client add the API path."
        )
    elif _MLFLOW_LOOKING.search(path):
        message = (
            f"No endpoint at {path}: this gateway serves MLflow under {MLFLOW_PREFIX}. "
            f"Set MLFLOW_TRACKING_URI={tracking_uri} (or HOKUSAI_API_URL={base_url.rstrip('/')} "
            "for the SDK)."
        )
    else:
        message = (
            f"No endpoint at {path}. This gateway serves MLflow at {tracking_uri}, its own API "
            f"under {base_url.rstrip('/')}/api/v1 (see /docs), and /health, /ready, /metrics."
        )
    return GatewayError(ErrorCode.ENDPOINT_NOT_FOUND, message, reason="no_such_path")
