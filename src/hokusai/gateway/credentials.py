"""Where a request's API key may come from: headers only, never the URL."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote_plus

from hokusai.errors import ErrorCode
from hokusai.gateway.errors import GatewayError
from hokusai.keys.format import KEY_LIKE

# Query parameter names that only ever carry a credential.
_CREDENTIAL_PARAMS = {"api_key", "apikey", "api-key", "access_token", "token", "hokusai_api_key"}


def key_from_headers(headers: dict[bytes, bytes]) -> str | None:
    """The key from ``Authorization: Bearer`` or ``X-API-Key``; None when neither is sent."""
    authorization = headers.get(b"authorization")
    if authorization:
        scheme, _, value = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if scheme.lower() == "basic":
            raise GatewayError(
                ErrorCode.UNAUTHENTICATED,
                "HTTP basic authentication is not accepted here. Send the API key as a "
                "Bearer token: for the MLflow client set MLFLOW_TRACKING_TOKEN (and unset "
                "MLFLOW_TRACKING_USERNAME/PASSWORD); for the SDK set HOKUSAI_API_KEY.",
                reason="malformed",
            )
        raise GatewayError(
            ErrorCode.UNAUTHENTICATED,
            "The Authorization header is not 'Bearer <key>'. Send "
            "'Authorization: Bearer hk_live_…' or 'X-API-Key: hk_live_…'.",
            reason="malformed",
        )
    api_key = headers.get(b"x-api-key")
    if api_key:
        return api_key.decode("latin-1").strip()
    return None


# Percent-decoding rounds undone before looking for a key: a key encoded twice
# (``hk%255Flive%255F…``) is still a key in whatever log writes the URL down.
_DECODING_ROUNDS = 3


def _decoded(text: str) -> str:
    for _ in range(_DECODING_ROUNDS):
        if "%" not in text and "+" not in text:
            break
        text = unquote_plus(text)
    return text


def _key_in_url(where: str) -> GatewayError:
    return GatewayError(
        ErrorCode.INVALID_PARAMETER_VALUE,
        f"An API key was found in the URL's {where}; API keys are never accepted in the URL "
        "(URLs are written to logs), so nothing was forwarded or recorded. Send the key in the "
        "'Authorization: Bearer' header instead, and if a real key was in this URL, rotate it "
        "(`hokusai keys rotate`).",
        reason=f"key_in_{where}",
    )


def refuse_key_in_query(query_string: bytes) -> None:
    """Keys in URLs end up in proxy and browser logs: refuse them outright."""
    if not query_string:
        return
    text = query_string.decode("latin-1")
    exposed = KEY_LIKE.search(_decoded(text)) is not None
    if not exposed:
        names = {_decoded(name).lower() for name, _ in parse_qsl(text, keep_blank_values=True)}
        exposed = bool(names & _CREDENTIAL_PARAMS)
    if exposed:
        raise _key_in_url("query")


def refuse_key_in_path(path: str) -> None:
    """A key-shaped path segment (``/traces/hk_live_…``) is never forwarded, logged or audited.

    ``path`` is the decoded canonical path; a key encoded once or more inside it is
    decoded further before looking.
    """
    if ("hk" in path or "%" in path) and KEY_LIKE.search(_decoded(path)) is not None:
        raise _key_in_url("path")
