"""The pages a person signs in and out with: ``/login``, ``/logout`` and ``/``.

``/login`` takes an API key pasted into a form, checks it like any request's key, and
starts a browser session (``gateway/sessions.py``); the key itself never reaches the
browser's storage. With an OpenID provider configured it also offers single sign-on
(``/login/sso``, ``gateway/sso.py``). ``/`` sends a signed-in person to the MLflow UI at
the tracking URI (``/api/mlflow/``), anyone else to ``/login``. Posts to these pages must
come from the site's own pages (no login or logout forced by another site).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, quote

import anyio
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from hokusai.gateway.audit import AuditLog
from hokusai.gateway.body import read_body
from hokusai.gateway.sessions import Sessions, cookie, same_origin, session_token, signed_in
from hokusai.gateway.sso import CALLBACK_PATH, START_PATH, Refused, SingleSignOn, browser_value
from hokusai.keys.service import KeyRejected, KeyService
from hokusai.workspaces.records import DEFAULT_WORKSPACE

UI_HOME = "/api/mlflow/"
MAX_FORM_BYTES = 8192


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site only (no ``//host`` or scheme),
    else the UI."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return UI_HOME
    return target


class SignIn:
    """The sign-in pages of one gateway."""

    def __init__(
        self,
        sessions: Sessions,
        keys: KeyService,
        audit: AuditLog,
        *,
        base_url: Callable[[Scope, dict[bytes, bytes]], str],
        failed: Callable[[str, str], None],
        body_idle_timeout: float,
        sso: SingleSignOn | None = None,
    ) -> None:
        self._sessions = sessions
        self._sso = sso
        self._keys = keys
        self._audit = audit
        self._base_url = base_url
        self._failed = failed
        self._idle = body_idle_timeout
        self._templates = Environment(
            loader=PackageLoader("hokusai.gateway", "templates"),
            autoescape=select_autoescape(["html"]),
        )

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        request_id: str,
        client: str,
    ) -> None:
        path, method = scope["path"], scope["method"]
        base = self._base_url(scope, headers)
        secure = base.startswith("https://")
        response: Response
        if method == "GET" and path in (START_PATH, CALLBACK_PATH):
            response = await self._single_sign_on(
                path, scope, headers, base, secure, request_id, client
            )
        elif method in ("GET", "HEAD"):
            response = await self._show(path, scope, headers)
        elif method == "POST" and path in ("/login", "/logout"):
            if not same_origin(headers, base):
                response = self._page(
                    "login.html",
                    403,
                    error="This form was sent from another site; sign in from this page.",
                    next=UI_HOME,
                )
            elif path == "/login":
                response = await self._login(receive, secure, request_id, client)
            else:
                response = await self._logout(headers, secure)
        else:
            response = Response(status_code=405, headers={"Allow": "GET, HEAD, POST"})
        await response(scope, receive, send)

    async def _single_sign_on(
        self,
        path: str,
        scope: Scope,
        headers: dict[bytes, bytes],
        base: str,
        secure: bool,
        request_id: str,
        client: str,
    ) -> Response:
        query = scope.get("query_string", b"").decode("latin-1")
        if self._sso is None:
            return self._page(
                "login.html", 404, error="Single sign-on is not set up here.", next=UI_HOME
            )
        try:
            if path == START_PATH:
                target = safe_next(parse_qs(query).get("next", [""])[0])
                return await self._sso.start(base, target, secure)
            return await self._sso.finish(
                query, browser_value(headers.get(b"cookie")), base, secure, request_id, client
            )
        except Refused as refused:
            self._failed(refused.reason, refused.message)
            return self._page("login.html", refused.status, error=refused.message, next=UI_HOME)

    async def _show(self, path: str, scope: Scope, headers: dict[bytes, bytes]) -> Response:
        if path == "/login":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            return self._page("login.html", 200, next=safe_next(query.get("next", [""])[0]))
        if path == "/logout":
            return self._page("logout.html", 200)
        # "/": the UI for a signed-in person, the sign-in page for anyone else.
        token = session_token(headers.get(b"cookie"))
        if token is not None:
            try:
                await anyio.to_thread.run_sync(self._sessions.authenticate, token)
                return RedirectResponse(UI_HOME, status_code=303)
            except KeyRejected:
                pass
        return RedirectResponse("/login", status_code=303)

    async def _login(
        self, receive: Receive, secure: bool, request_id: str, client: str
    ) -> Response:
        form = parse_qs((await read_body(receive, MAX_FORM_BYTES, self._idle)).decode("latin-1"))
        key = form.get("api_key", [""])[0].strip()
        target = safe_next(form.get("next", [""])[0])
        try:
            record = await anyio.to_thread.run_sync(self._keys.authenticate, key or None)
        except KeyRejected as rejected:
            self._failed(rejected.reason, rejected.message)
            return self._page("login.html", 401, error=rejected.message, next=target)
        if target == UI_HOME:
            # MLflow's UI shows a workspace's models once one is chosen; it keeps the one
            # named in its URL: the key's own (a platform admin starts in the default one).
            target += "#/?workspace=" + quote(record.workspace or DEFAULT_WORKSPACE, safe="")
        return await signed_in(
            self._sessions,
            self._audit,
            record,
            target=target,
            secure=secure,
            request_id=request_id,
            client=client,
            method="POST",
            path="/login",
        )

    async def _logout(self, headers: dict[bytes, bytes], secure: bool) -> Response:
        token = session_token(headers.get(b"cookie"))
        if token is not None:
            await anyio.to_thread.run_sync(self._sessions.end, token)
        response = RedirectResponse("/login", status_code=303)
        response.headers.append("set-cookie", cookie("", max_age=0, secure=secure))
        return response

    def _page(self, template: str, status: int, **context: object) -> HTMLResponse:
        html = self._templates.get_template(template).render(sso=self._sso is not None, **context)
        return HTMLResponse(
            html,
            status_code=status,
            headers={
                "cache-control": "no-store",
                # The pages load nothing from elsewhere and are never framed.
                "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                "x-frame-options": "DENY",
            },
        )


def login_redirect(next_path: str) -> RedirectResponse:
    """Where a browser asking for the UI without a session is sent."""
    return RedirectResponse("/login?next=" + quote(safe_next(next_path), safe="/"), 303)
