"""The admin console at ``/admin/``: server-rendered pages over the admin services.

One more front-end of ``KeyAdmin``, ``WebhookAdmin``, ``AuditReader`` and
``WorkspaceAdmin``, beside ``/api/v1`` and the CLI. A page parses its query or form,
calls one service operation with the signed-in key as the actor (``Actor.for_key``) and
renders the records it gets, or the service's :class:`~hokusai.errors.DomainError`: its
message, with the HTTP status its code maps to. Who may do what is the services' to
decide, exactly as for the other front-ends.

The gateway has already authenticated the request (a session cookie, or a key header),
refused a cookie-authenticated write from another origin and applied the key's rate
limit before any page here runs.

A page that shows a secret once (a new or rotated key, a new endpoint's signing secret)
is the answer to its POST, never a page redirected to: the secret is in that one
``no-store`` response body only, never in a URL or a log. Every other successful POST is
answered with 303 to a page (post/redirect/get).

Longer than most modules (about 440 lines): one small handler per page and form, over
the same services; the pages' markup is in ``templates/console``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from importlib.resources import files
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

import anyio
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from hokusai.admin.actor import Actor, Origin
from hokusai.admin.services import AdminServices
from hokusai.errors import DomainError, InvalidInput
from hokusai.gateway.body import read_body
from hokusai.keys.records import KeyRecord, Lifetime
from hokusai.timestamps import utcnow
from hokusai.webhooks.records import DEAD

PREFIX = "/admin/"
STYLESHEET = PREFIX + "static/console.css"
MAX_FORM_BYTES = 16384
FORM_TYPE = "application/x-www-form-urlencoded"

# Every console answer: nothing loaded from elsewhere, no script at all, never framed,
# never cached (a page may hold a secret shown once).
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}

# What a page redirected to after a POST says happened: the query parameter that names
# the thing changed, and the sentence about it.
NOTICES = {
    "revoked": "Key {} is revoked: it no longer authenticates, and its sessions have ended.",
    "disabled": "Endpoint {} is disabled: its deliveries wait until it is enabled again.",
    "enabled": "Endpoint {} is enabled.",
    "removed": "Endpoint {} is removed, with its undelivered deliveries.",
    "queued": "{} deliveries queued again.",
    "tested": "A test delivery was sent to endpoint {}: its attempt is below.",
}

# Model-name patterns and event types are typed as a list: commas, spaces or new lines.
_LIST_SEPARATORS = re.compile(r"[\s,]+")

T = TypeVar("T")
Form = dict[str, str]


@dataclass(frozen=True)
class Visit:
    """One request to the console: who makes it, and what it sent."""

    key: KeyRecord
    actor: Actor
    path: str
    query: Form
    form: Form

    def arg(self, name: str) -> str:
        """A form field (POST) or query parameter (GET), trimmed; empty when absent."""
        return (self.form.get(name) or self.query.get(name) or "").strip()


Page = Callable[[Visit], Awaitable[Response]]


class Console:
    """The console's pages, on one deployment's services and readiness checks."""

    def __init__(
        self,
        services: AdminServices,
        *,
        readiness: Callable[[], Awaitable[tuple[int, dict[str, Any]]]],
        body_idle_timeout: float,
    ) -> None:
        self._services = services
        self._readiness = readiness
        self._idle = body_idle_timeout
        self._templates = Environment(
            loader=PackageLoader("hokusai.gateway", "templates"),
            autoescape=select_autoescape(["html"]),
        )
        self._templates.filters["when"] = _when
        self._templates.filters["as_json"] = _as_json
        self._stylesheet = (
            files("hokusai.gateway").joinpath("templates/console/console.css").read_bytes()
        )
        self._pages: dict[str, Page] = {
            PREFIX: self._index,
            PREFIX + "keys": self._keys,
            PREFIX + "webhooks": self._webhooks,
            PREFIX + "webhooks/deliveries": self._deliveries,
            PREFIX + "audit": self._audit,
            PREFIX + "health": self._health,
            PREFIX + "workspaces": self._workspaces,
        }
        self._actions: dict[str, Page] = {
            PREFIX + "keys/create": self._create_key,
            PREFIX + "keys/revoke": self._revoke_key,
            PREFIX + "keys/rotate": self._rotate_key,
            PREFIX + "webhooks/add": self._add_endpoint,
            PREFIX + "webhooks/disable": self._disable_endpoint,
            PREFIX + "webhooks/enable": self._enable_endpoint,
            PREFIX + "webhooks/remove": self._remove_endpoint,
            PREFIX + "webhooks/test": self._test_endpoint,
            PREFIX + "webhooks/replay": self._replay,
        }

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        key: KeyRecord,
        request_id: str,
        client: str,
    ) -> None:
        """Answer one request under ``/admin/`` made with ``key`` (already authenticated)."""
        path, method = scope["path"], scope["method"]
        response: Response
        if path == STYLESHEET and method in ("GET", "HEAD"):
            response = Response(
                self._stylesheet,
                media_type="text/css",
                headers={**SECURITY_HEADERS, "cache-control": "private, max-age=300"},
            )
        elif method in ("GET", "HEAD") and path in self._pages:
            visit = self._visit(scope, key, request_id, client, {})
            response = await self._answer(self._pages[path], visit)
        elif method == "POST" and path in self._actions:
            if not _is_form(scope):
                response = self._error(
                    visit=None,
                    status=415,
                    message=f"The console takes forms sent as {FORM_TYPE}.",
                )
            else:
                form = await read_body(receive, MAX_FORM_BYTES, self._idle)
                visit = self._visit(scope, key, request_id, client, _fields(form))
                response = await self._answer(self._actions[path], visit)
        elif path in self._pages or path in self._actions:
            allowed = "GET, HEAD" if path in self._pages else "POST"
            response = self._error(
                visit=None, status=405, message=f"{path} takes {allowed}.", allow=allowed
            )
        else:
            response = self._error(
                visit=None,
                status=404,
                message=f"The console has no page {path}; start from {PREFIX}.",
            )
        await response(scope, receive, send)

    def _visit(
        self, scope: Scope, key: KeyRecord, request_id: str, client: str, form: Form
    ) -> Visit:
        origin = Origin.http(
            request_id=request_id, method=scope["method"], path=scope["path"], client=client
        )
        query = _fields(scope.get("query_string", b""))
        return Visit(key, Actor.for_key(key, origin), scope["path"], query, form)

    async def _answer(self, page: Page, visit: Visit) -> Response:
        """The page, or the service's refusal shown readably with its HTTP status."""
        try:
            return await page(visit)
        except DomainError as error:
            return self._error(visit=visit, status=error.http_status, message=error.message)

    # ---- pages -----------------------------------------------------------------------

    async def _index(self, visit: Visit) -> Response:
        return self._page("index.html", visit)

    async def _keys(self, visit: Visit) -> Response:
        include_revoked = visit.arg("include_revoked") == "1"
        workspace = visit.arg("workspace") or None
        found = await _run(
            self._services.keys.list,
            visit.actor,
            include_revoked=include_revoked,
            workspace=workspace,
        )
        return self._page(
            "keys.html",
            visit,
            keys=found,
            include_revoked=include_revoked,
            workspace=workspace or "",
            now=utcnow(),
        )

    async def _create_key(self, visit: Visit) -> Response:
        platform = visit.arg("platform") == "1"
        issued = await _run(
            self._services.keys.create,
            visit.actor,
            name=visit.arg("name"),
            scope=visit.arg("role") or "write",
            owner=visit.arg("owner") or None,
            expires_in=visit.arg("expires_in") or None,
            workspace=(visit.arg("workspace") or None) if not platform else None,
            platform=platform,
            models=_items(visit.arg("models")),
        )
        return self._page(
            "key_issued.html", visit, issued=issued, what="created", now=utcnow(), status=201
        )

    async def _revoke_key(self, visit: Visit) -> Response:
        record = await _run(self._services.keys.revoke, visit.actor, _required(visit, "key_id"))
        return _see_other("keys", include_revoked="1", revoked=record.id)

    async def _rotate_key(self, visit: Visit) -> Response:
        expires_in = visit.arg("expires_in")
        issued = await _run(
            self._services.keys.rotate,
            visit.actor,
            _required(visit, "key_id"),
            expires_in=expires_in or Lifetime.SAME,
        )
        return self._page("key_issued.html", visit, issued=issued, what="rotated", now=utcnow())

    async def _webhooks(self, visit: Visit) -> Response:
        endpoints = await _run(self._services.webhooks.list, visit.actor)
        return self._page("webhooks.html", visit, endpoints=endpoints)

    async def _add_endpoint(self, visit: Visit) -> Response:
        added = await _run(
            self._services.webhooks.add,
            visit.actor,
            _required(visit, "url"),
            event_types=_items(visit.arg("event_types")),
            model_filter=visit.arg("model_filter") or None,
            description=visit.arg("description"),
            workspace=visit.arg("workspace") or None,
        )
        return self._page("endpoint_added.html", visit, added=added, status=201)

    async def _disable_endpoint(self, visit: Visit) -> Response:
        found = await _run(
            self._services.webhooks.disable,
            visit.actor,
            _required(visit, "endpoint_id"),
            reason=visit.arg("reason") or None,
        )
        return _see_other("webhooks", disabled=found.id)

    async def _enable_endpoint(self, visit: Visit) -> Response:
        found = await _run(
            self._services.webhooks.enable, visit.actor, _required(visit, "endpoint_id")
        )
        return _see_other("webhooks", enabled=found.id)

    async def _remove_endpoint(self, visit: Visit) -> Response:
        found = await _run(
            self._services.webhooks.remove, visit.actor, _required(visit, "endpoint_id")
        )
        return _see_other("webhooks", removed=found.id)

    async def _test_endpoint(self, visit: Visit) -> Response:
        endpoint_id = _required(visit, "endpoint_id")
        outcome = await self._services.webhooks.test(visit.actor, endpoint_id)
        # The test's delivery, with its one attempt, is on the deliveries page.
        return _see_other("webhooks/deliveries", event_id=outcome.event_id, tested=endpoint_id)

    async def _deliveries(self, visit: Visit) -> Response:
        filters = {
            "status": visit.arg("status"),
            "endpoint_id": visit.arg("endpoint_id"),
            "event_id": visit.arg("event_id"),
        }
        found = await _run(
            self._services.webhooks.deliveries,
            visit.actor,
            status=filters["status"] or None,
            endpoint_id=filters["endpoint_id"] or None,
            event_id=filters["event_id"] or None,
            limit=_limit(visit),
        )
        return self._page("deliveries.html", visit, deliveries=found, filters=filters, dead=DEAD)

    async def _replay(self, visit: Visit) -> Response:
        queued = await _run(
            self._services.webhooks.replay,
            visit.actor,
            event_id=_required(visit, "event_id"),
            endpoint_id=visit.arg("endpoint_id") or None,
        )
        return _see_other("webhooks/deliveries", queued=str(queued))

    async def _audit(self, visit: Visit) -> Response:
        filters = {name: visit.arg(name) for name in ("key_id", "action", "since", "workspace")}
        entries = await _run(
            self._services.audit.query,
            visit.actor,
            key_id=filters["key_id"] or None,
            action=filters["action"] or None,
            since=filters["since"] or None,
            workspace=filters["workspace"] or None,
            limit=_limit(visit),
        )
        return self._page("audit.html", visit, entries=entries, filters=filters)

    async def _health(self, visit: Visit) -> Response:
        status, report = await self._readiness()
        return self._page("health.html", visit, report=report, status=status)

    async def _workspaces(self, visit: Visit) -> Response:
        found = await _run(self._services.workspaces.list, visit.actor)
        # Members as the key service decides: a key that may read its workspace but not
        # its keys sees the refusal in place of the list.
        members: dict[str, list[KeyRecord] | str] = {}
        for workspace in found:
            try:
                members[workspace.name] = await _run(
                    self._services.keys.list, visit.actor, workspace=workspace.name
                )
            except DomainError as error:
                members[workspace.name] = error.message
        return self._page("workspaces.html", visit, workspaces=found, members=members)

    # ---- rendering -------------------------------------------------------------------

    def _page(self, name: str, visit: Visit, *, status: int = 200, **context: Any) -> Response:
        notice = next(
            (text.format(visit.query[q]) for q, text in NOTICES.items() if visit.query.get(q)),
            None,
        )
        html = self._templates.get_template("console/" + name).render(
            me=visit.key, path=visit.path, notice=notice, stylesheet=STYLESHEET, **context
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def _error(
        self, *, visit: Visit | None, status: int, message: str, allow: str | None = None
    ) -> Response:
        path = visit.path if visit else ""
        # Back to the page the refused form was on (an action's path less its verb).
        back = path if path in self._pages else path.rsplit("/", 1)[0]
        html = self._templates.get_template("console/error.html").render(
            me=visit.key if visit else None,
            path=path,
            back=back if back in self._pages else PREFIX,
            status=status,
            message=message,
            stylesheet=STYLESHEET,
        )
        headers = dict(SECURITY_HEADERS)
        if allow:
            headers["allow"] = allow
        return HTMLResponse(html, status_code=status, headers=headers)


async def _run(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A service operation (blocking: it uses the store) off the event loop."""
    return await anyio.to_thread.run_sync(partial(function, *args, **kwargs))


def _see_other(page: str, **query: str) -> Response:
    """Post/redirect/get: the page to show after a change that succeeded."""
    target = PREFIX + page + ("?" + urlencode(query) if query else "")
    return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)


def _is_form(scope: Scope) -> bool:
    sent: bytes = dict(scope["headers"]).get(b"content-type", b"")
    return sent.decode("latin-1").split(";")[0].strip().lower() == FORM_TYPE


def _fields(encoded: bytes) -> Form:
    """A form body or query string: each name's first value (UTF-8, as browsers send)."""
    parsed = parse_qs(encoded.decode("latin-1"), keep_blank_values=True, encoding="utf-8")
    return {name: values[0] for name, values in parsed.items()}


def _required(visit: Visit, name: str) -> str:
    value = visit.arg(name)
    if not value:
        raise InvalidInput(f"the form is missing {name!r}")
    return value


def _items(text: str) -> list[str]:
    return [item for item in _LIST_SEPARATORS.split(text) if item]


def _limit(visit: Visit) -> int:
    text = visit.arg("limit")
    if not text:
        return 100
    if not text.isdigit():
        raise InvalidInput(f"limit must be a whole number, not {text!r}")
    return max(1, min(int(text), 10_000))


def _when(value: datetime | None) -> str:
    """A time as the pages show it: UTC to the second."""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _as_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str) if value else ""
