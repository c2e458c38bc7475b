"""``ModelRegistry``: register baseline, tokenized and improved models through the gateway."""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from hokusai.sdk import mlflow_api as api
from hokusai.sdk.artifacts import artifact_root_path, download_directory, upload_directory
from hokusai.sdk.config import resolve
from hokusai.sdk.errors import NotFoundError, PermissionDeniedError, ValidationError
from hokusai.sdk.model_files import (
    TAG_SERIALIZATION_FORMAT,
    check_model,
    check_serialization_format,
    save_model_directory,
)
from hokusai.sdk.results import ModelVersion, RegistrationResult
from hokusai.sdk.saga import (
    STATUS_COMPLETE,
    STATUS_FAILED,
    STATUS_IN_PROGRESS,
    TAG_KIND,
    TAG_MODEL_UPLOADED,
    TAG_REGISTRATION_ID,
    TAG_STATUS,
    AfterStep,
    SagaState,
    Step,
    find_version,
    run_saga,
)
from hokusai.sdk.transport import Transport

TOKEN_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# MLflow's own rule for metric, param and tag keys.
KEY_NAME = re.compile(r"^[A-Za-z0-9_\-. /]{1,250}$")
MODEL_NAME = re.compile(r"^[^/\x00-\x1f]{1,256}$")
REGISTRATION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
DEFAULT_EXPERIMENT = "hokusai-registrations"
LATEST_ALIASES = ("production", "champion")
SCOPE_ORDER = ("read", "write", "promote", "admin")
# MLflow's rule for aliases: letters, digits, _ and -; not "latest", not v<digits>.
ALIAS = re.compile(r"^(?!latest$)(?![vV]\d+$)[A-Za-z0-9_-]{1,255}$")
READY_TIMEOUT = 120.0

TAG_TOKEN_ID = "hokusai_token_id"
TAG_BENCHMARK_METRIC = "benchmark_metric"
TAG_BENCHMARK_VALUE = "benchmark_value"
TAG_MEASURED_VALUE = "measured_value"
TAG_LOWER_IS_BETTER = "lower_is_better"
TAG_READY = "ready_for_deploy"
TAG_MODEL_TYPE = "hokusai_model_type"
TAG_BASELINE = "hokusai_baseline"
TAG_CONTRIBUTOR = "hokusai_contributor"
DELTA_PREFIX = "hokusai_delta_"


class ModelRegistry:
    """The Hokusai model registry.

    Arguments fall back to the environment, then to the user's profile
    (``hokusai login``):

    - ``api_key``: ``HOKUSAI_API_KEY``, then the profile's key.
    - ``api_url``: ``HOKUSAI_API_URL``, then the profile's URL, then
      ``http://127.0.0.1:8080``. The gateway's base URL (MLflow is at ``{api_url}/api/mlflow``).
    - ``profile``: ``HOKUSAI_PROFILE``, then the file's default profile.
    - ``ca_bundle``: ``HOKUSAI_CA_BUNDLE``, then ``SSL_CERT_FILE``, then the system's trust
      store. A PEM file of the CAs to trust (a registry behind a private CA).

    ``timeout`` bounds each HTTP request; ``max_retry_time`` bounds each call's retries
    of transient failures, waits included. The constructor makes no network call.

    Example::

        registry = ModelRegistry()
        result = registry.register_baseline(model, model_type="lead_scoring",
                                            model_name="LSCOR", metrics={"auroc": 0.82})
        print(result.model_uri)   # models:/LSCOR/1
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        *,
        profile: str | None = None,
        ca_bundle: str | Path | None = None,
        timeout: float = 30.0,
        max_retry_time: float = 30.0,
    ) -> None:
        if timeout <= 0 or max_retry_time < 0:
            raise ValidationError("timeout must be positive and max_retry_time not negative")
        self.config = resolve(api_key, api_url, profile, ca_bundle=ca_bundle)
        self._transport = Transport(self.config, timeout=timeout, max_retry_time=max_retry_time)
        # Called with each saga step's name after it succeeds (fault injection in tests).
        self._after_step: AfterStep | None = None

    @property
    def api_url(self) -> str:
        return self.config.api_url

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI of this registry (for the stock MLflow client)."""
        return self.config.tracking_uri

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def check(self) -> dict[str, Any]:
        """Ask the gateway who this key is: its id, owner, scope and state."""
        return self._transport.json("GET", "/api/v1/whoami")

    def require_scope(self, scope: str, *, alias: str | None = None) -> dict[str, Any]:
        """Check that this key has the role ``scope`` (``read`` < ``write`` < ``promote`` <
        ``admin``), and may set ``alias`` if one is given (a protected alias of its
        workspace needs ``promote``), before work that would be wasted without it; the
        key's identity. Raises :class:`PermissionDeniedError` naming the key's role."""
        identity = self.check()
        have = str(identity.get("scope"))
        rank = SCOPE_ORDER.index(have) if have in SCOPE_ORDER else -1
        label = f"API key {identity.get('display_prefix')}… ({identity.get('id')})"
        if SCOPE_ORDER.index(scope) > rank:
            raise PermissionDeniedError(
                f"this needs the {scope!r} role; {label} has {have!r}. Ask an admin of its "
                f"workspace for a key with the {scope!r} role.",
                status_code=403,
                error_code="PERMISSION_DENIED",
            )
        protected = identity.get("protected_aliases") or []
        if alias is not None and alias in protected and rank < SCOPE_ORDER.index("promote"):
            workspace = identity.get("workspace")
            raise PermissionDeniedError(
                f"alias {alias!r} is protected in workspace {workspace!r} and needs the "
                f"'promote' role; {label} has {have!r}. Register with another alias (or "
                "none) and promote with a promote key, or ask an admin of the workspace.",
                status_code=403,
                error_code="PERMISSION_DENIED",
                body={
                    "details": {
                        "refused_by": "protected_alias",
                        "alias": alias,
                        "needed": "promote",
                        "role": have,
                        "workspace": workspace,
                    }
                },
            )
        return identity

    # ---- registration -------------------------------------------------------------

    def register_baseline(
        self,
        model: Any,
        model_type: str,
        model_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        *,
        registration_id: str | None = None,
        alias: str | None = "baseline",
        experiment_name: str | None = None,
        serialization_format: str | None = None,
    ) -> RegistrationResult:
        """Register ``model`` as a new version of ``model_name`` (default: ``model_type``).

        ``model``: a fitted estimator, a local model path, or a ``runs:/`` / ``models:/``
        URI. ``metrics`` are measured values of the model, logged on its run.
        Pass the same ``registration_id`` again to resume a failed registration.
        ``serialization_format``: how a scikit-learn estimator is saved — ``skops``
        (loading it runs no code, but MLflow 2.x clients cannot load it), ``cloudpickle``
        or ``pickle`` (loadable by MLflow 2.x; loading runs code). The default is
        ``skops`` where the installed MLflow can save it (3.9 and later, with skops
        installed), else ``cloudpickle``; the version's ``hokusai_serialization_format``
        tag records the one used. ``skops`` asked of an MLflow that cannot save it is a
        :class:`ValidationError`, raised before anything is sent.
        """
        _check_name(model_type, "model_type")
        name = model_name or model_type
        _check_model_name(name)
        tags = {TAG_MODEL_TYPE: model_type, **_metadata_tags(metadata)}
        return self._register(
            model,
            name,
            kind="baseline",
            metrics=_check_metrics(metrics),
            version_tags=tags,
            registration_id=registration_id,
            alias=alias,
            experiment_name=experiment_name,
            params={"model_type": model_type},
            serialization_format=serialization_format,
        )

    def register_tokenized_model(
        self,
        model_uri: str,
        model_name: str,
        token_id: str,
        metric_name: str,
        baseline_value: float,
        additional_tags: dict[str, str] | None = None,
        *,
        registration_id: str | None = None,
        lower_is_better: bool = False,
    ) -> RegistrationResult:
        """Register the model at ``model_uri`` (``runs:/…``, ``models:/…``) for ``token_id``.

        The version gets the tags ``hokusai_token_id`` (upper case), ``benchmark_metric`` and
        ``benchmark_value``; when the source run measured ``metric_name``, also
        ``measured_value`` and ``ready_for_deploy``.
        """
        token, baseline = _check_token_registration(
            token_id, metric_name, baseline_value, model_name
        )
        if not isinstance(model_uri, str) or not model_uri.startswith(
            ("runs:/", "models:/", "mlflow-artifacts:/")
        ):
            raise ValidationError(
                f"model_uri must be a runs:/, models:/ or mlflow-artifacts:/ URI, not {model_uri!r}"
            )
        tags = {
            **_metadata_tags(additional_tags),
            **token_tags(token, metric_name, baseline, lower_is_better),
        }
        return self._register(
            model_uri,
            model_name,
            kind="tokenized",
            metrics={},
            version_tags=tags,
            registration_id=registration_id,
            alias=None,
            experiment_name=None,
            params={},
            benchmark=(metric_name, baseline, lower_is_better),
        )

    def register_improved_model(
        self,
        model: Any,
        baseline_id: str,
        delta_metrics: dict[str, float],
        contributor: str,
        *,
        metrics: dict[str, float] | None = None,
        registration_id: str | None = None,
        serialization_format: str | None = None,
    ) -> RegistrationResult:
        """Register an improvement of the version ``baseline_id`` (``NAME/VERSION``,
        ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``) as a new version of the same
        model, crediting ``contributor``. ``delta_metrics``: metric -> change vs baseline.
        ``serialization_format``: as for :meth:`register_baseline`.
        """
        deltas = _check_metrics(delta_metrics)
        if not deltas:
            raise ValidationError("delta_metrics must name at least one metric and its change")
        if not isinstance(contributor, str) or not 0 < len(contributor.strip()) <= 200:
            raise ValidationError("contributor must be a non-empty string of at most 200 chars")
        measured = _check_metrics(metrics)
        if not _is_model_uri(model):
            _check_model_argument(model)
            check_serialization_format(model, serialization_format)
        baseline = self._resolve_version(baseline_id)
        tags = {
            TAG_BASELINE: f"{baseline.name}/{baseline.version}",
            TAG_CONTRIBUTOR: contributor.strip(),
            **{DELTA_PREFIX + k: repr(v) for k, v in deltas.items()},
        }
        # An improvement of a tokenized model serves the same token and benchmark.
        for key in (
            TAG_TOKEN_ID,
            TAG_BENCHMARK_METRIC,
            TAG_BENCHMARK_VALUE,
            TAG_LOWER_IS_BETTER,
            TAG_MODEL_TYPE,
        ):
            if key in baseline.tags:
                tags[key] = baseline.tags[key]
        run_metrics = {**measured, **{f"delta_{k}": v for k, v in deltas.items()}}
        return self._register(
            model,
            baseline.name,
            kind="improved",
            metrics=run_metrics,
            version_tags=tags,
            registration_id=registration_id,
            alias=None,
            experiment_name=None,
            params={
                "baseline": f"{baseline.name}/{baseline.version}",
                "contributor": contributor.strip(),
            },
            serialization_format=serialization_format,
        )

    def register_measured_model(
        self,
        model: Any,
        model_name: str,
        token_id: str,
        metric_name: str,
        baseline_value: float,
        measured_value: float | None,
        *,
        lower_is_better: bool = False,
        registration_id: str | None = None,
        serialization_format: str | None = None,
    ) -> RegistrationResult:
        """Upload ``model`` and register it for ``token_id`` in one registration.

        ``measured_value`` is the metric measured on evaluation data (None: not measured,
        and so not ready for deploy). What ``hokusai models register`` calls.
        ``serialization_format``: as for :meth:`register_baseline`.
        """
        token, baseline = _check_token_registration(
            token_id, metric_name, baseline_value, model_name
        )
        metrics = {}
        tags = token_tags(token, metric_name, baseline, lower_is_better)
        if measured_value is not None:
            measured = _check_number(measured_value, "measured_value")
            metrics[metric_name] = measured
            tags.update(measurement_tags(measured, baseline, lower_is_better))
        return self._register(
            model,
            model_name,
            kind="tokenized",
            metrics=metrics,
            version_tags=tags,
            registration_id=registration_id,
            alias=None,
            experiment_name=None,
            params={"token_id": token},
            serialization_format=serialization_format,
        )

    # ---- the saga -----------------------------------------------------------------------

    def _register(
        self,
        model: Any,
        name: str,
        *,
        kind: str,
        metrics: dict[str, float],
        version_tags: dict[str, str],
        registration_id: str | None,
        alias: str | None,
        experiment_name: str | None,
        params: dict[str, str],
        benchmark: tuple[str, float, bool] | None = None,
        serialization_format: str | None = None,
    ) -> RegistrationResult:
        registration_id = registration_id or uuid.uuid4().hex
        if not REGISTRATION_ID.match(registration_id):
            raise ValidationError("registration_id may hold 1-128 letters, digits and _ . : - only")
        if alias is not None:
            _check_alias(alias)
        existing_uri = model if _is_model_uri(model) else None
        fmt: str | None = None
        if existing_uri is None:
            _check_model_argument(model)
            fmt = check_serialization_format(model, serialization_format)
        elif serialization_format is not None:
            raise ValidationError(
                "serialization_format applies to a model object or file, not to an already "
                f"registered {existing_uri}"
            )
        if alias is not None:
            # After the checks that need no server, before any work: a protected alias the
            # key may not set would otherwise fail the last step, after the upload.
            self.require_scope("write", alias=alias)
        t = self._transport
        state = SagaState(registration_id=registration_id, model_name=name)
        tags = {**version_tags, TAG_REGISTRATION_ID: registration_id}
        if existing_uri is None and fmt is not None:
            tags[TAG_SERIALIZATION_FORMAT] = fmt

        def experiment() -> None:
            state.experiment_id, state.created_experiment = api.get_or_create_experiment(
                t, experiment_name or DEFAULT_EXPERIMENT
            )

        def run() -> None:
            assert state.experiment_id is not None
            found = api.search_runs(
                t,
                [state.experiment_id],
                f"tags.`{TAG_REGISTRATION_ID}` = {api.quote_filter(registration_id)}",
            )
            if found:
                info = found[0]["info"]
                if info["status"] != "RUNNING":
                    api.set_run_status(t, info["run_id"], "RUNNING")
                api.set_run_tags(t, info["run_id"], {TAG_STATUS: STATUS_IN_PROGRESS})
            else:
                info = api.create_run(
                    t,
                    state.experiment_id,
                    f"register-{name}",
                    {
                        TAG_REGISTRATION_ID: registration_id,
                        TAG_STATUS: STATUS_IN_PROGRESS,
                        TAG_KIND: kind,
                    },
                )["info"]
            state.run_id = info["run_id"]
            state.artifact_root = artifact_root_path(info["artifact_uri"])

        def log_metrics() -> None:
            assert state.run_id is not None
            data = api.get_run(t, state.run_id).get("data", {})
            logged_metrics = {m["key"] for m in data.get("metrics", [])}
            logged_params = {p["key"] for p in data.get("params", [])}
            todo_metrics = {k: v for k, v in metrics.items() if k not in logged_metrics}
            todo_params = {k: v for k, v in params.items() if k not in logged_params}
            if todo_metrics or todo_params:
                api.log_metrics_and_params(t, state.run_id, todo_metrics, todo_params)

        def model_artifact() -> None:
            assert state.run_id is not None and state.artifact_root is not None
            state.source = f"mlflow-artifacts:/{state.artifact_root}/model"
            run_tags = api.tag_dict(api.get_run(t, state.run_id)["data"].get("tags"))
            if run_tags.get(TAG_MODEL_UPLOADED) == "true":
                return
            with tempfile.TemporaryDirectory(prefix="hokusai-model-") as scratch:
                local = Path(scratch) / "model"
                save_model_directory(model, local, serialization_format=serialization_format)
                upload_directory(t, local, f"{state.artifact_root}/model")
            api.set_run_tags(t, state.run_id, {TAG_MODEL_UPLOADED: "true"})

        def existing_source() -> None:
            assert existing_uri is not None
            state.source, state.run_id = self._resolve_source(existing_uri)
            if benchmark is not None and state.run_id:
                metric_name, baseline, lower = benchmark
                run_metrics = {
                    m["key"]: m["value"]
                    for m in api.get_run(t, state.run_id).get("data", {}).get("metrics", [])
                }
                if metric_name in run_metrics:
                    tags.update(measurement_tags(float(run_metrics[metric_name]), baseline, lower))

        def registered_model() -> None:
            state.created_registered_model = api.ensure_registered_model(t, name)

        def model_version() -> None:
            assert state.source is not None
            found = find_version(t, state)
            if found is None:
                found = api.create_version(t, name, state.source, state.run_id, tags)
            state.version = str(found["version"])

        def ready() -> None:
            assert state.version is not None
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                status = api.get_version(t, name, state.version)["status"]
                if status == "READY":
                    return
                if status == "FAILED_REGISTRATION":
                    raise ValidationError(f"MLflow could not register {name}/{state.version}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}/{state.version} not READY after {READY_TIMEOUT}s")
                time.sleep(0.2)

        def set_alias() -> None:
            if alias is not None and state.version is not None:
                api.set_alias(t, name, alias, state.version)

        def finish() -> None:
            if state.run_id is not None and existing_uri is None:
                api.set_run_tags(t, state.run_id, {TAG_STATUS: STATUS_COMPLETE})
                api.set_run_status(t, state.run_id, "FINISHED")

        steps: list[Step]
        if existing_uri is None:
            steps = [
                ("experiment", experiment),
                ("run", run),
                ("metrics", log_metrics),
                ("model_artifact", model_artifact),
            ]
        else:
            steps = [("source", existing_source)]
        steps += [
            ("registered_model", registered_model),
            ("model_version", model_version),
            ("ready", ready),
            ("alias", set_alias),
            ("finish", finish),
        ]
        run_saga(t, state, steps, after_step=self._after_step)
        assert state.version is not None and state.source is not None
        return RegistrationResult(
            name=name,
            version=state.version,
            run_id=state.run_id,
            model_uri=f"models:/{name}/{state.version}",
            registration_id=registration_id,
            source=state.source,
            tags=tags,
        )

    def _resolve_source(self, uri: str) -> tuple[str, str | None]:
        """A model URI -> (artifact source, run id)."""
        if uri.startswith("runs:/"):
            run_id, _, path = uri[len("runs:/") :].partition("/")
            if not run_id or not path:
                raise ValidationError(f"{uri!r} is not runs:/<run_id>/<path>")
            info = api.get_run(self._transport, run_id)["info"]
            return f"{info['artifact_uri'].rstrip('/')}/{path.strip('/')}", run_id
        if uri.startswith("models:/"):
            version = self._resolve_version(uri)
            return version.source, version.run_id
        return uri, None

    # ---- reading ----------------------------------------------------------------------

    def _resolve_version(self, reference: str) -> ModelVersion:
        text = reference.removeprefix("models:/")
        t = self._transport
        if "@" in text:
            name, _, alias = text.rpartition("@")
            return ModelVersion.from_api(api.get_version_by_alias(t, name, alias))
        name, _, version = text.rpartition("/")
        if not name or not version.isdigit():
            raise ValidationError(
                f"{reference!r} is not NAME/VERSION, models:/NAME/VERSION or models:/NAME@ALIAS"
            )
        return ModelVersion.from_api(api.get_version(t, name, version))

    def get_model_version(self, reference: str) -> ModelVersion:
        """``NAME/VERSION``, ``NAME@ALIAS`` or a ``models:/`` URI."""
        return self._resolve_version(reference)

    # ---- aliases ------------------------------------------------------------------------

    def set_alias(self, model_name: str, alias: str, version: str | int) -> ModelVersion:
        """Point ``alias`` of ``model_name`` at ``version`` (moving it from any other
        version); the version as it is now. Needs a write key; audited, and a
        ``model_version.alias_set`` event, like every registry write.

        Example::

            registry.set_alias("LSCOR", "champion", 3)   # models:/LSCOR@champion
        """
        _check_model_name(model_name)
        _check_alias(alias)
        number = _check_version_number(version)
        api.set_alias(self._transport, model_name, alias, number)
        return ModelVersion.from_api(api.get_version(self._transport, model_name, number))

    def delete_alias(self, model_name: str, alias: str) -> None:
        """Remove ``alias`` from ``model_name`` (the version stays). Raises
        :class:`NotFoundError` when the model has no such alias."""
        _check_model_name(model_name)
        _check_alias(alias)
        # MLflow answers 200 for an alias that does not exist: ask first, so that a typo
        # is an error rather than a silent no-op.
        api.get_version_by_alias(self._transport, model_name, alias)
        api.delete_alias(self._transport, model_name, alias)

    def promote(
        self, model_name: str, version: str | int, alias: str = "production"
    ) -> ModelVersion:
        """Make ``version`` the one ``alias`` (default ``production``) names, which is
        what :meth:`get_latest_model` and ``models:/NAME@production`` load; the version.

        Example::

            registry.promote("LSCOR", 2)
            registry.get_latest_model("LSCOR").version   # "2"
        """
        return self.set_alias(model_name, alias, version)

    def _with_aliases(self, versions: list[dict[str, Any]]) -> list[ModelVersion]:
        """Versions as found by a search, with their aliases. MLflow's version search
        answers without aliases (only a version read by name and number has them); the
        registered model lists them, so each model is read once."""
        by_model: dict[str, dict[str, list[str]]] = {}
        for name in {str(v["name"]) for v in versions}:
            aliases: dict[str, list[str]] = {}
            try:
                entries = api.get_registered_model(self._transport, name).get("aliases", [])
            except NotFoundError:  # deleted since the search
                entries = []
            for entry in entries:
                aliases.setdefault(str(entry["version"]), []).append(entry["alias"])
            by_model[name] = aliases
        return [
            ModelVersion.from_api(
                {**v, "aliases": by_model[str(v["name"])].get(str(v["version"]), [])}
            )
            for v in versions
        ]

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        """Every version of ``model_name``, oldest first, with its aliases."""
        versions = api.search_versions(self._transport, f"name = {api.quote_filter(model_name)}")
        return sorted(self._with_aliases(versions), key=lambda v: int(v.version))

    def list_recent_versions(self, limit: int = 50) -> list[ModelVersion]:
        """The newest ``limit`` versions across all models, with their aliases."""
        answer = self._transport.mlflow(
            "GET",
            "model-versions/search",
            params={"max_results": limit, "order_by": "creation_timestamp DESC"},
        )
        return self._with_aliases(answer.get("model_versions", []))

    def get_model_lineage(self, model_name: str) -> list[dict[str, Any]]:
        """Every version of ``model_name``, oldest first, with what it improved on, who
        contributed it, its metric changes and its token."""
        versions = self.list_versions(model_name)
        if not versions:
            raise NotFoundError(
                f"no versions of model {model_name!r}",
                status_code=404,
                error_code="RESOURCE_DOES_NOT_EXIST",
            )
        lineage = []
        for v in versions:
            lineage.append(
                {
                    "version": v.version,
                    "model_uri": v.model_uri,
                    "run_id": v.run_id,
                    "created_at_ms": v.created_at_ms,
                    "baseline": v.tags.get(TAG_BASELINE),
                    "contributor": v.tags.get(TAG_CONTRIBUTOR),
                    "delta_metrics": {
                        k[len(DELTA_PREFIX) :]: float(val)
                        for k, val in v.tags.items()
                        if k.startswith(DELTA_PREFIX)
                    },
                    "token_id": v.token_id,
                    "aliases": v.aliases,
                    "registration_kind": "improved"
                    if TAG_BASELINE in v.tags
                    else ("tokenized" if v.token_id else "baseline"),
                }
            )
        return lineage

    def get_latest_model(self, model_name: str) -> ModelVersion:
        """The version aliased ``production``, else ``champion``, else the newest."""
        for alias in LATEST_ALIASES:
            try:
                return ModelVersion.from_api(
                    api.get_version_by_alias(self._transport, model_name, alias)
                )
            except NotFoundError:
                continue
        versions = self.list_versions(model_name)
        if not versions:
            raise NotFoundError(
                f"model {model_name!r} has no versions",
                status_code=404,
                error_code="RESOURCE_DOES_NOT_EXIST",
            )
        return versions[-1]

    def list_models_by_token(self, token_id: str) -> list[ModelVersion]:
        """Every version registered for ``token_id``, oldest first (a server-side search),
        with their aliases."""
        token = validate_token_id(token_id)
        found = api.search_versions(
            self._transport, f"tags.{TAG_TOKEN_ID} = {api.quote_filter(token)}"
        )
        return sorted(
            self._with_aliases(found),
            key=lambda v: (v.created_at_ms, v.name, int(v.version)),
        )

    def get_tokenized_model(self, token_id: str) -> ModelVersion:
        """The newest version registered for ``token_id``."""
        versions = self.list_models_by_token(token_id)
        if not versions:
            raise NotFoundError(
                f"no model is registered for token {token_id.upper()}",
                status_code=404,
                error_code="RESOURCE_DOES_NOT_EXIST",
            )
        return versions[-1]

    def load_model(self, reference: str | ModelVersion) -> Any:
        """Download a version's files and load it as an ``mlflow.pyfunc`` model."""
        import mlflow.pyfunc

        version = (
            reference if isinstance(reference, ModelVersion) else self._resolve_version(reference)
        )
        remote = artifact_root_path(version.source)
        scratch = Path(tempfile.mkdtemp(prefix="hokusai-load-"))
        download_directory(self._transport, remote, scratch / "model")
        return mlflow.pyfunc.load_model(str(scratch / "model"))

    # ---- cleanup ------------------------------------------------------------------------

    def cleanup_failed(
        self,
        older_than: timedelta = timedelta(hours=1),
        *,
        dry_run: bool = False,
        experiment_name: str | None = None,
    ) -> list[dict[str, Any]]:
        """Delete the runs (and their files) of failed or abandoned registrations.

        Only runs that a registration tagged ``failed``, or left ``in_progress`` for longer
        than ``older_than``, and that no model version uses; nothing else is touched.
        Returns what was (or, with ``dry_run``, would be) removed.
        """
        t = self._transport
        try:
            experiment_id = api.get_experiment_id(t, experiment_name or DEFAULT_EXPERIMENT)
        except NotFoundError:
            return []
        cutoff_ms = api.now_ms() - int(older_than.total_seconds() * 1000)
        removed = []
        for status in (STATUS_FAILED, STATUS_IN_PROGRESS):
            runs = api.search_runs(
                t,
                [experiment_id],
                f"tags.`{TAG_STATUS}` = '{status}' and attributes.start_time < {cutoff_ms}",
            )
            for run in runs:
                info = run["info"]
                if api.search_versions(t, f"run_id = {api.quote_filter(info['run_id'])}"):
                    continue  # a version uses it: not a leftover
                entry = {
                    "run_id": info["run_id"],
                    "status": status,
                    "start_time_ms": int(info.get("start_time", 0)),
                    "registration_id": api.tag_dict(run.get("data", {}).get("tags")).get(
                        TAG_REGISTRATION_ID
                    ),
                }
                if not dry_run:
                    root = artifact_root_path(info["artifact_uri"])
                    with contextlib.suppress(NotFoundError):
                        t.request(
                            "DELETE", "/api/mlflow/api/2.0/mlflow-artifacts/artifacts/" + root
                        )
                    api.delete_run(t, info["run_id"])
                removed.append(entry)
        return removed


# ---- validation, before any network call ----------------------------------------------------


def validate_token_id(token_id: str) -> str:
    if not isinstance(token_id, str) or not TOKEN_ID.match(token_id):
        raise ValidationError(f"token_id must be 1-64 letters, digits or dashes, not {token_id!r}")
    return token_id.upper()


def token_tags(
    token: str, metric_name: str, baseline: float, lower_is_better: bool
) -> dict[str, str]:
    return {
        TAG_TOKEN_ID: token,
        TAG_BENCHMARK_METRIC: metric_name,
        TAG_BENCHMARK_VALUE: repr(baseline),
        TAG_LOWER_IS_BETTER: "true" if lower_is_better else "false",
    }


def measurement_tags(measured: float, baseline: float, lower_is_better: bool) -> dict[str, str]:
    ready = measured <= baseline if lower_is_better else measured >= baseline
    return {TAG_MEASURED_VALUE: repr(measured), TAG_READY: "true" if ready else "false"}


def _check_token_registration(
    token_id: Any, metric_name: Any, baseline_value: Any, model_name: Any
) -> tuple[str, float]:
    """What every token registration checks before any network call: the token (upper
    case) and the baseline as a float."""
    token = validate_token_id(token_id)
    _check_name(metric_name, "metric_name")
    baseline = _check_number(baseline_value, "baseline_value")
    _check_model_name(model_name)
    return token, baseline


def _check_name(value: Any, what: str) -> None:
    if not isinstance(value, str) or not KEY_NAME.match(value):
        raise ValidationError(
            f"{what} must be 1-250 letters, digits, spaces or _ - . /, not {value!r}"
        )


def _check_alias(alias: Any) -> None:
    if not isinstance(alias, str) or not ALIAS.match(alias):
        raise ValidationError(
            "alias must be 1-255 letters, digits, _ or -, and neither 'latest' nor "
            f"v<number> (those name versions), not {alias!r}"
        )


def _check_version_number(version: Any) -> str:
    text = str(version) if isinstance(version, int) and not isinstance(version, bool) else version
    if not isinstance(text, str) or not text.isdigit() or int(text) < 1:
        raise ValidationError(f"version must be a positive whole number, not {version!r}")
    return str(int(text))


def _check_model_name(name: Any) -> None:
    if not isinstance(name, str) or not MODEL_NAME.match(name) or name.strip() != name:
        raise ValidationError(f"model name must be 1-256 characters without '/', not {name!r}")


def _check_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{what} must be a finite number, not {value!r}")
    return float(value)


def _check_metrics(metrics: dict[str, float] | None) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise ValidationError("metrics must be a dict of name -> number")
    checked = {}
    for key, value in metrics.items():
        _check_name(key, "metric name")
        checked[key] = _check_number(value, f"metric {key!r}")
    return checked


def _metadata_tags(metadata: dict[str, Any] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValidationError("metadata must be a dict of name -> value")
    tags = {}
    for key, value in metadata.items():
        _check_name(key, "metadata key")
        text = str(value)
        if len(text) > 5000:
            raise ValidationError(f"metadata value for {key!r} is longer than 5000 characters")
        tags[key] = text
    return tags


def _is_model_uri(model: Any) -> bool:
    return isinstance(model, str) and model.startswith(("runs:/", "models:/", "mlflow-artifacts:/"))


def _check_model_argument(model: Any) -> None:
    if model is None:
        raise ValidationError("model is required")
    if isinstance(model, str | Path) and not Path(model).exists():
        raise ValidationError(
            f"model {str(model)!r} is neither an existing path nor a runs:/ or models:/ URI"
        )
    check_model(model)
