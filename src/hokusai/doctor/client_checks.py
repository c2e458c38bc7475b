"""The client-side walk: configuration, DNS, connection, the gateway, the key, MLflow
behind it, and optionally a scratch write and a webhook test. It stops at the first
hop that fails, since every later hop depends on it.

Longer than most modules (about 440 lines): one function per hop, in the order they are
walked, so the walk reads top to bottom.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import ssl
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx

from hokusai.doctor.no_answer import no_answer
from hokusai.doctor.report import HopFailed, Report
from hokusai.doctor.tls import client_context, tls_failure
from hokusai.keys.format import MalformedKeyError, parse_key
from hokusai.sdk.config import ClientConfig, config_file, normalise_api_url, resolve
from hokusai.sdk.errors import ConfigurationError

TIMEOUT = 10.0
# What the stock MLflow client reads: used when nothing of Hokusai's own is set.
MLFLOW_URI = "MLFLOW_TRACKING_URI"
MLFLOW_TOKEN = "MLFLOW_TRACKING_TOKEN"
DOCTOR_EXPERIMENT = "hokusai-doctor"


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or f"HTTP {response.status_code}"
    if isinstance(body, dict) and "message" in body:
        return f"{body.get('error_code')}: {body['message']}"
    return str(body)[:200]


class ClientDoctor:
    def __init__(
        self,
        api_url: str | None,
        api_key: str | None,
        profile: str | None = None,
        *,
        write: bool = False,
        webhook: str | None = None,
        model: str | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.api_url, self.api_key, self.profile = api_url, api_key, profile
        self.write, self.webhook, self.model = write, webhook, model
        self.timeout = timeout
        self.config: ClientConfig | None = None
        self.address: tuple[str, int] | None = None
        self.http: httpx.Client | None = None
        self.tls: ssl.SSLContext | None = None
        self.me: dict[str, Any] = {}

    def run(self) -> Report:
        report = Report()
        hops = [
            ("config", self.check_config),
            ("dns", self.check_dns),
            ("connect", self.check_connect),
            ("health", self.check_health),
            ("auth", self.check_auth),
            ("access", self.check_access),
            ("proxy_read", self.check_proxy_read),
        ]
        if self.write:
            hops.append(("write", self.check_write))
        if self.webhook:
            hops.append(("webhooks", self.check_webhook))
        if self.model:
            hops.append(("model", self.check_model))
        try:
            for name, check in hops:
                if not report.run(name, check):
                    break
        finally:
            if self.http is not None:
                self.http.close()
        return report

    # ---- hops -------------------------------------------------------------------------

    def check_config(self) -> str:
        self.config = self._resolve()
        try:
            parse_key(self.config.api_key)
        except MalformedKeyError as exc:
            raise HopFailed(
                f"the API key (from {self.config.key_source}) is malformed: {exc}",
                "Copy the key again, whole, from where it was issued; keys look like "
                "hk_live_ followed by 38 letters and digits.",
            ) from None
        return (
            f"URL {self.config.api_url} (from {self.config.url_source}); key "
            f"{self.config.api_key[:14]}… (from {self.config.key_source}), checksum valid"
        )

    def _resolve(self) -> ClientConfig:
        """Hokusai's own settings first; the stock MLflow client's variables when only
        those are set (and the report says so)."""
        token = os.environ.get(MLFLOW_TOKEN)
        try:
            config = resolve(self.api_key, self.api_url, self.profile)
        except ConfigurationError as exc:
            if not str(exc).startswith("No API key"):
                raise HopFailed(
                    str(exc), "Fix HOKUSAI_API_URL or --api-url, or run `hokusai login`."
                ) from None
            if not token:
                raise HopFailed(
                    "no API key: no --api-key, HOKUSAI_API_KEY is not set and no profile in "
                    f"{config_file()} has one",
                    "Set HOKUSAI_API_KEY (or pass --api-key), or run `hokusai login`.",
                ) from None
            config = resolve(token, self.api_url, self.profile)
            config = dataclasses.replace(
                config, key_source=f"{MLFLOW_TOKEN}, as HOKUSAI_API_KEY is not set"
            )
        tracking_uri = os.environ.get(MLFLOW_URI)
        if config.url_source == "default" and tracking_uri:
            try:
                url = normalise_api_url(tracking_uri)
            except ConfigurationError:
                raise HopFailed(
                    f"HOKUSAI_API_URL is not set and {MLFLOW_URI}={tracking_uri!r} is not an "
                    "http(s) URL",
                    "Set HOKUSAI_API_URL to the gateway's URL (or pass --api-url).",
                ) from None
            config = dataclasses.replace(
                config, api_url=url, url_source=f"{MLFLOW_URI}, as HOKUSAI_API_URL is not set"
            )
        return config

    def _host_port(self) -> tuple[str, int, str]:
        assert self.config is not None
        parts = urlsplit(self.config.api_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return parts.hostname or "", port, parts.scheme

    def check_dns(self) -> str:
        host, port, _ = self._host_port()
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise HopFailed(
                f"cannot resolve {host}: {exc.strerror}",
                f"Check the host name in HOKUSAI_API_URL ({host}) and your DNS.",
            ) from None
        address = str(infos[0][4][0])
        self.address = (address, port)
        return f"{host} → {', '.join(sorted({str(i[4][0]) for i in infos}))}"

    def check_connect(self) -> str:
        host, port, scheme = self._host_port()
        assert self.address is not None
        if scheme == "https":
            self.tls = client_context()
        try:
            with socket.create_connection(self.address, timeout=self.timeout) as sock:
                if self.tls is not None:
                    with self.tls.wrap_socket(sock, server_hostname=host) as tls:
                        return f"TCP and TLS ({tls.version()}) to {host}:{port}"
        except ConnectionRefusedError:
            raise HopFailed(
                f"nothing listens on {host}:{port} (connection refused)",
                "Start the gateway (`hokusai serve`) or fix the port in HOKUSAI_API_URL.",
            ) from None
        except ssl.SSLError as exc:
            raise tls_failure(exc, host, port) from None
        except TimeoutError:
            raise HopFailed(
                f"{host}:{port} did not accept a connection within {self.timeout:g} s",
                "Check that the host is up and no firewall drops packets to the port.",
            ) from None
        except OSError as exc:
            raise HopFailed(
                f"cannot connect to {host}:{port}: {exc}",
                "Check that the host is up and no firewall blocks the port.",
            ) from None
        return f"TCP to {host}:{port}"

    def _client(self) -> httpx.Client:
        assert self.config is not None
        if self.http is None:
            self.http = httpx.Client(
                base_url=self.config.api_url,
                timeout=self.timeout,
                verify=self.tls if self.tls is not None else True,
                follow_redirects=False,
                headers={"Authorization": f"Bearer {self.config.api_key}"},
            )
        return self.http

    def _get(self, path: str, fix: str, **params: Any) -> httpx.Response:
        """GET ``path`` on the gateway; no answer is a failed hop with ``fix``."""
        assert self.config is not None
        try:
            return self._client().get(path, params=params or None)
        except httpx.HTTPError as exc:
            raise no_answer(
                exc, "the gateway", self.config.api_url + path, self.timeout, fix
            ) from None

    def _post(self, path: str, body: Any = None) -> httpx.Response:
        assert self.config is not None
        try:
            return self._client().post(path, json=body)
        except httpx.HTTPError as exc:
            raise no_answer(
                exc,
                "the gateway",
                self.config.api_url + path,
                self.timeout,
                "Check the gateway's log, and MLflow's behind it (`hokusai doctor --server`).",
            ) from None

    def check_health(self) -> str:
        assert self.config is not None
        response = self._get(
            "/health", "Check that HOKUSAI_API_URL points at a running Hokusai gateway."
        )
        body: Any = None
        with contextlib.suppress(ValueError):
            body = response.json()
        if (
            response.status_code == 200
            and isinstance(body, dict)
            and body.get("service") == "hokusai-gateway"
        ):
            return f"Hokusai gateway {body.get('version')} at {self.config.api_url}"
        if isinstance(body, dict) and body.get("error_code") == "ENDPOINT_NOT_FOUND":
            base = (
                f"{urlsplit(self.config.api_url).scheme}://{urlsplit(self.config.api_url).netloc}"
            )
            raise HopFailed(
                f"a Hokusai gateway answered, but {self.config.api_url} is not its base URL",
                f"Set HOKUSAI_API_URL={base} (the MLflow tracking URI is {base}/api/mlflow).",
            )
        raise HopFailed(
            f"{self.config.api_url}/health answered {response.status_code} "
            f"{response.text[:80]!r}: this is not a Hokusai gateway",
            "Point HOKUSAI_API_URL at the Hokusai gateway (if this is MLflow itself, use the "
            "gateway in front of it; the tracking URI is <gateway>/api/mlflow).",
        )

    def check_auth(self) -> str:
        response = self._get(
            "/api/v1/whoami",
            "The gateway cannot check keys in time: operators, run `hokusai doctor --server`.",
        )
        if response.status_code == 200:
            me = response.json()
            self.me = me
            return f"key {me['id']} of {me['owner']}, role {me['scope']}, {me['state']}"
        message = _message(response)
        if response.status_code == 401:
            fix = (
                "Ask an admin for a new key (`hokusai keys create`), or rotate this one "
                "(`hokusai keys rotate`)."
            )
            if "Unknown" in message:
                fix = (
                    "This server never issued the key: check HOKUSAI_API_URL points at the "
                    "deployment that issued it, or ask its admin for a key."
                )
            raise HopFailed(message, fix)
        if response.status_code == 503:
            raise HopFailed(
                message,
                "The gateway cannot check keys because its auth store is down: operators, "
                "run `hokusai doctor --server`.",
            )
        raise HopFailed(
            f"{response.status_code} {message}",
            f"Check the gateway's log for the request id {response.headers.get('x-request-id')}.",
        )

    def check_access(self) -> str:
        """What the key may do where, and each of its recent refusals explained: the role,
        model pattern, protected alias or gate that refused it, and who can grant it."""
        me = self.me
        workspace = me.get("workspace")
        if "workspace" not in me:  # a gateway from before workspaces
            return f"role {me.get('scope')} (this gateway has no workspaces)"
        if workspace is None:
            lines = [f"platform admin key: role {me['scope']} in every workspace"]
        else:
            patterns = ", ".join(me.get("models") or []) or "every model"
            aliases = ", ".join(me.get("protected_aliases") or []) or "none"
            gate = "on" if me.get("promotion_gate") else "off"
            lines = [
                f"workspace {workspace}, role {me['scope']}, may write {patterns}; protected "
                f"aliases: {aliases}; promotion gate {gate}; more access from: "
                f"{_anyone(me.get('granted_by') or [])}"
            ]
        response = self._get("/api/v1/whoami/denials", "Check the gateway's log.", limit=5)
        if response.status_code == 200:
            denials = response.json().get("denials") or []
            if denials:
                lines.append(f"{len(denials)} recent refusal(s), newest first:")
                lines += ["  " + explain_denial(d, me.get("granted_by") or []) for d in denials]
            else:
                lines.append("no recent refusals")
        # One line, as every hop's finding (scripts read the report line by line).
        return "; ".join(lines)

    def check_proxy_read(self) -> str:
        response = self._get(
            "/api/mlflow/api/2.0/mlflow/experiments/search",
            "MLflow behind the gateway may be hung: operators, run `hokusai doctor --server`.",
            max_results=1,
        )
        if response.status_code == 200:
            return "MLflow answered experiments/search through /api/mlflow"
        message = _message(response)
        if response.status_code in (503, 504):
            raise HopFailed(
                message,
                "The gateway cannot reach MLflow: operators, check "
                "/ready and run `hokusai doctor --server`.",
            )
        raise HopFailed(
            f"{response.status_code} {message}",
            f"Check the gateway's log for request id {response.headers.get('x-request-id')}.",
        )

    def check_model(self) -> str:
        """Download the version ``--model`` names, check every file against its manifest,
        and say how it loads; nothing is deserialized."""
        from hokusai.doctor.model_check import check_version

        assert self.config is not None and self.model is not None
        return check_version(self.config, self.model, self.timeout)

    def check_write(self) -> str:
        base = "/api/mlflow/api/2.0/mlflow/"
        found = self._get(
            base + "experiments/get-by-name",
            "MLflow behind the gateway may be hung: operators, run `hokusai doctor --server`.",
            experiment_name=DOCTOR_EXPERIMENT,
        )
        if found.status_code == 200:
            experiment_id = found.json()["experiment"]["experiment_id"]
        else:
            created = self._post(base + "experiments/create", {"name": DOCTOR_EXPERIMENT})
            self._raise_for_write(created, "experiments/create")
            experiment_id = created.json()["experiment_id"]
        run = self._post(
            base + "runs/create",
            {"experiment_id": experiment_id, "run_name": f"doctor-{uuid.uuid4().hex[:8]}"},
        )
        self._raise_for_write(run, "runs/create")
        run_id = run.json()["run"]["info"]["run_id"]
        metric = self._post(
            base + "runs/log-metric",
            {"run_id": run_id, "key": "doctor", "value": 1.0, "timestamp": 0, "step": 0},
        )
        cleanup = self._post(base + "runs/delete", {"run_id": run_id})
        self._raise_for_write(metric, "runs/log-metric")
        self._raise_for_write(cleanup, "runs/delete")
        return f"created and deleted a scratch run in experiment '{DOCTOR_EXPERIMENT}'"

    def _raise_for_write(self, response: httpx.Response, what: str) -> None:
        if response.status_code < 400:
            return
        message = _message(response)
        fix = f"See the message; request id {response.headers.get('x-request-id')}."
        if response.status_code == 403:
            fix = (
                "This key cannot write: ask an admin of its workspace for a key with the "
                "'write' role."
            )
        raise HopFailed(f"{what}: {message}", fix)

    def check_webhook(self) -> str:
        response = self._post(f"/api/v1/webhooks/{self.webhook}/test")
        if response.status_code != 200:
            fix = (
                "Webhook tests need an admin key."
                if response.status_code == 403
                else ("Check the endpoint id with `hokusai webhooks list`.")
            )
            raise HopFailed(f"{response.status_code} {_message(response)}", fix)
        outcome = response.json()
        if outcome["delivered"]:
            return (
                f"test event delivered to {self.webhook}: {outcome['status_code']} in "
                f"{outcome['latency_ms']} ms"
            )
        raise HopFailed(
            f"test event to {self.webhook} not delivered: {outcome['error']}"
            + (
                f" (answer: {outcome['response_snippet']!r})"
                if outcome.get("response_snippet")
                else ""
            ),
            "Fix the receiver (it must answer 2xx within the timeout), then `hokusai webhooks "
            "replay --since 1h --endpoint " + str(self.webhook) + "` for what it missed.",
        )


def _anyone(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names) or "a platform admin"
    return ", ".join(names[:-1]) + " or " + names[-1]


def explain_denial(entry: dict[str, Any], owners: list[str]) -> str:
    """One line: which request was refused, by what, and who can grant it.

    ``owners`` are whom whoami names for the key's own workspace (its admins' owners and
    any platform admin); a refusal in another workspace, or platform-wide, names the
    granter the refusal itself recorded."""
    d = entry.get("detail") or {}
    what = f"{entry.get('method')} {entry.get('path')} was refused"
    workspace, role, needed = d.get("workspace"), d.get("role"), d.get("needed")
    within = workspace is not None and workspace == d.get("key_workspace", workspace)
    ask = _anyone(owners) if within and owners else (d.get("granted_by") or "a platform admin")
    by = d.get("refused_by")
    if by == "protected_alias":
        why = (
            f"alias '{d.get('alias')}' is protected in workspace '{workspace}' and needs "
            f"the 'promote' role (the key has '{role}')"
        )
    elif by == "promotion_gate":
        why = (
            f"workspace '{workspace}' gates alias '{d.get('alias')}' on the version's metric, "
            f"and version {d.get('version')} of '{d.get('model')}' does not meet its baseline "
            f"(measured {d.get('measured_value')}, baseline {d.get('benchmark_value')})"
        )
    elif by == "model_pattern":
        patterns = ", ".join(f"'{p}'" for p in d.get("patterns") or [])
        why = f"model '{d.get('model')}' is outside the key's patterns {patterns}"
    elif by == "workspace":
        why = f"the key belongs to workspace '{d.get('key_workspace')}', not '{workspace}'"
    elif by == "source":
        why = f"source {d.get('source')!r} is not workspace '{workspace}''s own"
    elif workspace is None and needed:
        why = f"it is platform-wide and needs a platform admin key (the key has '{role}')"
    else:
        where = f" in workspace '{workspace}'" if workspace else ""
        why = f"it needs the '{needed}' role{where} (the key has '{role}')"
    return f"{what}: {why}; ask {ask}."
