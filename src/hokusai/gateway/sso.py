"""Single sign-on with an OpenID provider: ``/login/sso`` and its callback.

``/login/sso`` starts an authorization code flow with PKCE (S256): a random ``state``,
``nonce`` and code verifier are kept in the auth store (``sso_attempts``), so any replica
can finish what another started, for :data:`ATTEMPT_LIFETIME` and once. The attempt is
bound to the browser that started it by a short-lived cookie whose keyed hash the row
keeps: a callback URL carried to another browser finishes nothing.

``/login/sso/callback`` claims the attempt (one UPDATE: live, unused, this browser's),
exchanges the code with the verifier, verifies the ID token (signature by the provider's
published keys, ``iss``, ``aud``, ``exp``, ``nonce``), maps its claims to a workspace and
role (``role_map.py``) and starts a browser session for the person's row
(``keys/people.py``). Anything wrong answers a readable page and creates nothing. No
code, token, state or secret is ever logged or audited.

Longer than most modules (about 420 lines) because the flow is read in one place: the
start, the callback and every refusal between them, in the order a sign-in meets them.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import anyio
import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Engine, delete, select, update
from starlette.responses import RedirectResponse, Response

from hokusai.db.schema import sso_attempts
from hokusai.gateway.audit import AuditLog
from hokusai.gateway.sessions import Sessions, cookie, signed_in
from hokusai.keys import people
from hokusai.keys.service import KeyService
from hokusai.role_map import match
from hokusai.settings import Settings
from hokusai.timestamps import utcnow

log = logging.getLogger(__name__)

START_PATH = "/login/sso"
CALLBACK_PATH = "/login/sso/callback"
BROWSER_COOKIE = "hokusai_sso"
ATTEMPT_LIFETIME = timedelta(minutes=10)
# The provider's discovery document and keys change rarely; keys are fetched again sooner
# when a token names one not seen yet (the provider rotated its keys).
DISCOVERY_TTL = 3600.0
JWKS_REFRESH_AFTER = 60.0
PROVIDER_TIMEOUT = 10.0
# Token signatures with a shared secret (HS*) or none are never accepted.
ASYMMETRIC = ("RS", "PS", "ES", "Ed")

Page = Callable[..., Response]


class Refused(Exception):
    """A sign-in that does not go on: the page's status and what it tells the person."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


class SingleSignOn:
    """The OpenID Connect relying party of one gateway."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        keys: KeyService,
        sessions: Sessions,
        audit: AuditLog,
        *,
        failed: Callable[[str, str], None],
    ) -> None:
        assert settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret
        self._issuer = settings.oidc_issuer
        self._client_id = settings.oidc_client_id
        self._client_secret = settings.oidc_client_secret
        self._scopes = settings.oidc_scopes
        self._rules = settings.oidc_role_rules
        self._engine = engine
        self._keys = keys
        self._sessions = sessions
        self._audit = audit
        self._failed = failed
        self._discovery: tuple[float, dict[str, Any]] | None = None
        self._jwks: tuple[float, KeySet] | None = None

    # ---- the two steps ----------------------------------------------------------

    async def start(self, base: str, next_path: str, secure: bool) -> Response:
        """Remember a new attempt and send the browser to the provider."""
        document = await self._document()
        state, nonce, verifier = generate_token(43), generate_token(43), generate_token(64)
        browser = secrets.token_urlsafe(32)
        now = utcnow()

        def remember() -> None:
            with self._engine.begin() as conn:
                # Expired attempts are of no use to anyone: each start sweeps them.
                conn.execute(delete(sso_attempts).where(sso_attempts.c.expires_at < now))
                conn.execute(
                    sso_attempts.insert().values(
                        state_hash=self._hash("state", state),
                        browser_hash=self._hash("browser", browser),
                        nonce=nonce,
                        code_verifier=verifier,
                        next_path=next_path,
                        created_at=now,
                        expires_at=now + ATTEMPT_LIFETIME,
                        used_at=None,
                    )
                )

        await anyio.to_thread.run_sync(remember)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self._client_id,
                "redirect_uri": base + CALLBACK_PATH,
                "scope": self._scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": create_s256_code_challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        endpoint = document["authorization_endpoint"]
        response = RedirectResponse(
            endpoint + ("&" if "?" in endpoint else "?") + query, status_code=303
        )
        response.headers.append("set-cookie", _browser_cookie(browser, secure))
        return response

    async def finish(
        self,
        query_string: str,
        browser: str | None,
        base: str,
        secure: bool,
        request_id: str,
        client: str,
    ) -> Response:
        """The provider sent the browser back: check everything, then start a session."""
        query = parse_qs(query_string)
        state = _one(query, "state")
        if not state or not browser:
            raise Refused(
                400,
                "This sign-in was not started in this browser, or took too long. "
                "Start again with the single sign-on button.",
                "sso_state",
            )
        attempt = await anyio.to_thread.run_sync(self._claim, state, browser)
        if attempt is None:
            raise Refused(
                400,
                "This sign-in link is not valid: it expired, was already used, or was not "
                "started in this browser. Start again with the single sign-on button.",
                "sso_state",
            )
        error = _one(query, "error")
        if error:
            described = (_one(query, "error_description") or "")[:300]
            raise Refused(
                401,
                f"The identity provider did not sign you in ({error[:60]}"
                + (f": {described}" if described else "")
                + ").",
                "sso_provider_refused",
            )
        code = _one(query, "code")
        returned_issuer = _one(query, "iss")
        if not code or (returned_issuer is not None and returned_issuer != self._issuer):
            raise Refused(
                400, "The identity provider's answer is incomplete; start again.", "sso_answer"
            )
        claims = await self._exchange(code, attempt["code_verifier"], attempt["nonce"], base)
        rule = match(self._rules, claims)
        who = str(claims.get("email") or claims.get("preferred_username") or claims["sub"])
        if rule is None:
            raise Refused(
                403,
                f"You signed in as {who}, but this registry gives that account no access. "
                "Ask an administrator to add a rule for it to the role map "
                "(HOKUSAI_OIDC_ROLE_MAP).",
                "sso_no_rule",
            )
        person = people.Person(
            subject=f"{self._issuer}#{claims['sub']}"[:300],
            name=str(claims.get("name") or who),
            email=str(claims["email"]) if isinstance(claims.get("email"), str) else None,
        )
        try:
            record = await anyio.to_thread.run_sync(
                lambda: people.sign_in(
                    self._engine,
                    self._keys.hash_key,
                    person,
                    scope=rule.role,
                    workspace=rule.workspace,
                )
            )
        except people.PersonRevoked as revoked:
            raise Refused(
                403,
                f"Single sign-on for {who} was revoked here ({revoked.record.id}). "
                "Ask an administrator.",
                "revoked",
            ) from None
        response = await signed_in(
            self._sessions,
            self._audit,
            record,
            target=attempt["next_path"],
            secure=secure,
            request_id=request_id,
            client=client,
            method="GET",
            path=CALLBACK_PATH,
            detail={"method": "sso", "role": rule.role.value},
        )
        response.headers.append("set-cookie", _browser_cookie("", secure, max_age=0))
        return response

    # ---- the attempt in the store -----------------------------------------------

    def _hash(self, kind: str, value: str) -> str:
        return self._keys.hash_key(f"sso-{kind}:{value}")

    def _claim(self, state: str, browser: str) -> dict[str, Any] | None:
        """The attempt of ``state``, marked used, if it is live, unused and this browser's;
        None otherwise (and nothing changes). One UPDATE decides, so of two callbacks with
        the same state, on any replicas, one at most goes on."""
        state_hash, now = self._hash("state", state), utcnow()
        with self._engine.begin() as conn:
            claimed = conn.execute(
                update(sso_attempts)
                .where(
                    sso_attempts.c.state_hash == state_hash,
                    sso_attempts.c.browser_hash == self._hash("browser", browser),
                    sso_attempts.c.used_at.is_(None),
                    sso_attempts.c.expires_at > now,
                )
                .values(used_at=now)
            )
            if claimed.rowcount != 1:
                return None
            row = conn.execute(
                select(sso_attempts).where(sso_attempts.c.state_hash == state_hash)
            ).one()
        return dict(row._mapping)

    # ---- the provider ------------------------------------------------------------

    async def _exchange(self, code: str, verifier: str, nonce: str, base: str) -> dict[str, Any]:
        """The verified claims of the ID token the code is exchanged for."""
        document = await self._document()
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": base + CALLBACK_PATH,
            "code_verifier": verifier,
        }
        secret = self._client_secret.get_secret_value()
        methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        auth: httpx.Auth | None = None
        if "client_secret_basic" in methods:
            # RFC 6749 §2.3.1: both are form-encoded before they go into Basic.
            auth = httpx.BasicAuth(quote(self._client_id, safe=""), quote(secret, safe=""))
        elif "client_secret_post" in methods:
            data |= {"client_id": self._client_id, "client_secret": secret}
        else:
            raise Refused(502, _provider_trouble("accepts no client secret"), "sso_provider")
        try:
            async with httpx.AsyncClient(timeout=PROVIDER_TIMEOUT) as http:
                answer = await http.post(
                    document["token_endpoint"],
                    data=data,
                    auth=auth or httpx.USE_CLIENT_DEFAULT,
                    headers={"accept": "application/json"},
                )
        except httpx.HTTPError as exc:
            raise Refused(
                502,
                _provider_trouble(f"could not be reached ({type(exc).__name__})"),
                "sso_provider",
            ) from None
        if answer.status_code != 200:
            # A used or expired code: the provider's error name is safe to show.
            error = _error_name(answer)
            raise Refused(
                400,
                f"The identity provider did not accept this sign-in ({error}); start again.",
                "sso_code",
            )
        id_token = answer.json().get("id_token")
        if not isinstance(id_token, str):
            raise Refused(502, _provider_trouble("sent no ID token"), "sso_provider")
        return await self._verify(id_token, nonce, document)

    async def _verify(self, id_token: str, nonce: str, document: dict[str, Any]) -> dict[str, Any]:
        offered = document.get("id_token_signing_alg_values_supported", ["RS256"])
        algorithms = [a for a in offered if isinstance(a, str) and a.startswith(ASYMMETRIC)]
        keys = await self._keyset(document, refresh=False)
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=algorithms)
            except (JoseError, ValueError):
                # Perhaps signed with a key published since the keys were fetched.
                keys = await self._keyset(document, refresh=True)
                token = jwt.decode(id_token, keys, algorithms=algorithms)
            jwt.JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": self._issuer},
                aud={"essential": True, "value": self._client_id},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
                sub={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError) as exc:
            log.warning("single sign-on: ID token refused (%s)", type(exc).__name__)
            raise Refused(
                400,
                "The identity provider's ID token did not verify; start again.",
                "sso_id_token",
            ) from None
        return dict(token.claims)

    async def _document(self) -> dict[str, Any]:
        cached = self._discovery
        if cached is not None and time.monotonic() - cached[0] < DISCOVERY_TTL:
            return cached[1]
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._fetch(url, "its discovery document")
        if document.get("issuer") != self._issuer:
            raise Refused(502, _provider_trouble("names another issuer"), "sso_provider")
        for needed in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(needed), str):
                raise Refused(502, _provider_trouble(f"names no {needed}"), "sso_provider")
        self._discovery = (time.monotonic(), document)
        return document

    async def _keyset(self, document: dict[str, Any], *, refresh: bool) -> KeySet:
        cached = self._jwks
        fresh_enough = cached is not None and (
            not refresh or time.monotonic() - cached[0] < JWKS_REFRESH_AFTER
        )
        if cached is not None and fresh_enough and time.monotonic() - cached[0] < DISCOVERY_TTL:
            return cached[1]
        try:
            published = await self._fetch(document["jwks_uri"], "its keys")
            keys = KeySet.import_key_set(published)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError):
            raise Refused(
                502, _provider_trouble("publishes unusable keys"), "sso_provider"
            ) from None
        self._jwks = (time.monotonic(), keys)
        return keys

    async def _fetch(self, url: str, what: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=PROVIDER_TIMEOUT) as http:
                answer = await http.get(url, headers={"accept": "application/json"})
            answer.raise_for_status()
            body = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("single sign-on: %s from %s failed (%s)", what, url, type(exc).__name__)
            raise Refused(502, _provider_trouble(f"did not send {what}"), "sso_provider") from None
        if not isinstance(body, dict):
            raise Refused(502, _provider_trouble(f"sent unusable {what}"), "sso_provider")
        return body


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values and len(values) == 1 else None


def _error_name(answer: httpx.Response) -> str:
    try:
        error = answer.json().get("error")
    except ValueError:
        error = None
    return str(error)[:60] if error else f"HTTP {answer.status_code}"


def _provider_trouble(what: str) -> str:
    return (
        f"Single sign-on is not working: the identity provider {what}. Sign in with an API "
        "key, or try again later; operators: the gateway's log says more."
    )


def _browser_cookie(value: str, secure: bool, *, max_age: int | None = None) -> str:
    """The cookie that binds an attempt to this browser: sent back only to the callback."""
    age = int(ATTEMPT_LIFETIME.total_seconds()) if max_age is None else max_age
    return cookie(value, max_age=age, secure=secure, name=BROWSER_COOKIE, path=START_PATH)


def browser_value(cookie_header: bytes | None) -> str | None:
    """The attempt-binding value of a ``Cookie`` header, if it holds one."""
    if not cookie_header:
        return None
    for part in cookie_header.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == BROWSER_COOKIE and value:
            return value
    return None
