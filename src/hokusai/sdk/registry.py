"""``ModelRegistry``: register baseline, tokenized and improved models through the gateway,
and read, alias and clean up what is registered.

Longer than the SDK's other modules (about 550 lines) because it is the SDK's public
face: each method carries its user documentation and its argument checks. The work is
elsewhere: a registration in :mod:`hokusai.sdk.registration` (the plan each
``register_*`` method builds, and its steps), checks in :mod:`hokusai.sdk.validation`,
model references in :mod:`hokusai.sdk.references`, a version's verified files in
:mod:`hokusai.sdk.version_files`, improvements in
:mod:`hokusai.sdk.lineage`, leftovers in :mod:`hokusai.sdk.leftovers`.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import weakref
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from hokusai.sdk import mlflow_api as api
from hokusai.sdk import version_signing
from hokusai.sdk.config import resolve
from hokusai.sdk.errors import (
    NotFoundError,
    PermissionDeniedError,
    UnsafeModelError,
    ValidationError,
)
from hokusai.sdk.leftovers import remove_leftovers
from hokusai.sdk.lineage import TAG_MODEL_TYPE, improvement_tags, lineage_entry
from hokusai.sdk.model_files import check_serialization_format
from hokusai.sdk.references import is_model_uri, resolve_version
from hokusai.sdk.registration import Benchmark, RegistrationPlan, register
from hokusai.sdk.results import (
    KeyIdentity,
    LineageEntry,
    ModelVersion,
    RegistrationResult,
    RemovedRun,
)
from hokusai.sdk.safe_formats import pickle_reasons
from hokusai.sdk.transport import Transport
from hokusai.sdk.validation import (
    check_alias,
    check_metrics,
    check_model_argument,
    check_model_name,
    check_name,
    check_number,
    check_token_registration,
    check_version_number,
    metadata_tags,
    validate_token_id,
)
from hokusai.sdk.version_files import (
    TrustedKeys,
    Verify,
    described,
    download_version,
    signed_by,
    workspace_trusted_keys,
)
from hokusai.signing import PublicKey
from hokusai.tokens import TAG_TOKEN_ID, measurement_tags, token_tags

LATEST_ALIASES = ("production", "champion")
SCOPE_ORDER = ("read", "write", "promote", "admin")


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
    of transient failures, waits included. ``signing_key``: a PEM elliptic-curve private
    key (bytes, or a file's path) that signs the manifest of every model this registry
    uploads (the ``signing`` extra). The constructor makes no network call.

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
        signing_key: str | Path | bytes | None = None,
    ) -> None:
        if timeout <= 0 or max_retry_time < 0:
            raise ValidationError("timeout must be positive and max_retry_time not negative")
        self._signing_key = (
            None if signing_key is None else version_signing.signing_key(signing_key)
        )
        self.config = resolve(api_key, api_url, profile, ca_bundle=ca_bundle)
        self._transport = Transport(self.config, timeout=timeout, max_retry_time=max_retry_time)

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

    def check(self) -> KeyIdentity:
        """Ask the gateway who this key is: its id, owner, scope and state."""
        return cast(KeyIdentity, self._transport.json("GET", "/api/v1/whoami"))

    def require_scope(self, scope: str, *, alias: str | None = None) -> KeyIdentity:
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
        check_name(model_type, "model_type")
        name = model_name or model_type
        check_model_name(name)
        plan = RegistrationPlan(
            model,
            name,
            kind="baseline",
            version_tags={TAG_MODEL_TYPE: model_type, **metadata_tags(metadata)},
            metrics=check_metrics(metrics),
            params={"model_type": model_type},
            alias=alias,
            experiment_name=experiment_name,
            serialization_format=serialization_format,
            requested_id=registration_id,
        )
        return self._register(plan)

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
        token, baseline = check_token_registration(
            token_id, metric_name, baseline_value, model_name
        )
        if not is_model_uri(model_uri):
            raise ValidationError(
                f"model_uri must be a runs:/, models:/ or mlflow-artifacts:/ URI, not {model_uri!r}"
            )
        plan = RegistrationPlan(
            model_uri,
            model_name,
            kind="tokenized",
            version_tags={
                **metadata_tags(additional_tags),
                **token_tags(token, metric_name, baseline, lower_is_better),
            },
            benchmark=Benchmark(metric_name, baseline, lower_is_better),
            requested_id=registration_id,
        )
        return self._register(plan)

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
        deltas = check_metrics(delta_metrics)
        if not deltas:
            raise ValidationError("delta_metrics must name at least one metric and its change")
        if not isinstance(contributor, str) or not 0 < len(contributor.strip()) <= 200:
            raise ValidationError("contributor must be a non-empty string of at most 200 chars")
        measured = check_metrics(metrics)
        if not is_model_uri(model):
            check_model_argument(model)
            check_serialization_format(model, serialization_format)
        baseline = resolve_version(self._transport, baseline_id)
        plan = RegistrationPlan(
            model,
            baseline.name,
            kind="improved",
            version_tags=improvement_tags(baseline, contributor.strip(), deltas),
            metrics={**measured, **{f"delta_{k}": v for k, v in deltas.items()}},
            params={
                "baseline": f"{baseline.name}/{baseline.version}",
                "contributor": contributor.strip(),
            },
            serialization_format=serialization_format,
            requested_id=registration_id,
        )
        return self._register(plan)

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
        token, baseline = check_token_registration(
            token_id, metric_name, baseline_value, model_name
        )
        metrics = {}
        tags = token_tags(token, metric_name, baseline, lower_is_better)
        if measured_value is not None:
            measured = check_number(measured_value, "measured_value")
            metrics[metric_name] = measured
            tags.update(measurement_tags(measured, baseline, lower_is_better))
        plan = RegistrationPlan(
            model,
            model_name,
            kind="tokenized",
            version_tags=tags,
            metrics=metrics,
            params={"token_id": token},
            serialization_format=serialization_format,
            requested_id=registration_id,
        )
        return self._register(plan)

    def _register(self, plan: RegistrationPlan) -> RegistrationResult:
        if plan.alias is not None:
            # After the checks that need no server, before any work: a protected alias the
            # key may not set would otherwise fail the last step, after the upload.
            self.require_scope("write", alias=plan.alias)
        if self._signing_key is not None and plan.uploads:
            plan = dataclasses.replace(plan, signing_key=self._signing_key)
        return register(self._transport, plan)

    # ---- reading ----------------------------------------------------------------------

    def get_model_version(self, reference: str) -> ModelVersion:
        """``NAME/VERSION``, ``NAME@ALIAS`` or a ``models:/`` URI."""
        return resolve_version(self._transport, reference)

    # ---- signatures ---------------------------------------------------------------------

    def sign_version(
        self,
        reference: str | ModelVersion,
        private_key: str | Path | bytes,
        *,
        password: str | None = None,
    ) -> ModelVersion:
        """Sign a registered version's manifest with ``private_key`` (a PEM elliptic-curve
        key, or its file's path); the version, with its ``hokusai.signer`` tag. Its
        files are checked against nothing here: the manifest is, against the version's
        digest. A version is signed once: one signed already raises :class:`APIError`.

        Example::

            registry.sign_version("LSCOR/3", "release-key.pem")
            registry.load_model("models:/LSCOR/3", verify="signature")
        """
        version = resolve_version(self._transport, reference)
        key = version_signing.signing_key(private_key, password)
        version_signing.sign_version(self._transport, version, key, password=password)
        return resolve_version(self._transport, f"{version.name}/{version.version}")

    def verify_signature(
        self, reference: str | ModelVersion, *, trusted_keys: TrustedKeys | None = None
    ) -> str:
        """The fingerprint of the trusted key (the workspace's, or one of
        ``trusted_keys``) that signed the version's manifest; else
        :class:`~hokusai.signing.SignatureError` saying whether it is unsigned, wrongly
        signed or signed by an untrusted key. Its files are not downloaded."""
        version = resolve_version(self._transport, reference)
        return signed_by(self._transport, version, trusted_keys)

    def trusted_keys(self) -> list[PublicKey]:
        """The public keys this key's workspace trusts to sign versions."""
        return workspace_trusted_keys(self._transport)

    # ---- aliases ------------------------------------------------------------------------

    def set_alias(self, model_name: str, alias: str, version: str | int) -> ModelVersion:
        """Point ``alias`` of ``model_name`` at ``version`` (moving it from any other
        version); the version as it is now. Needs a write key; audited, and a
        ``model_version.alias_set`` event, like every registry write.

        Example::

            registry.set_alias("LSCOR", "champion", 3)   # models:/LSCOR@champion
        """
        check_model_name(model_name)
        check_alias(alias)
        number = check_version_number(version)
        api.set_alias(self._transport, model_name, alias, number)
        return ModelVersion.from_api(api.get_version(self._transport, model_name, number))

    def delete_alias(self, model_name: str, alias: str) -> None:
        """Remove ``alias`` from ``model_name`` (the version stays). Raises
        :class:`NotFoundError` when the model has no such alias."""
        check_model_name(model_name)
        check_alias(alias)
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

    def get_model_lineage(self, model_name: str) -> list[LineageEntry]:
        """Every version of ``model_name``, oldest first, with what it improved on, who
        contributed it, its metric changes and its token."""
        versions = self.list_versions(model_name)
        if not versions:
            raise NotFoundError(
                f"no versions of model {model_name!r}",
                status_code=404,
                error_code="RESOURCE_DOES_NOT_EXIST",
            )
        return [lineage_entry(v) for v in versions]

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

    def download_model(
        self,
        reference: str | ModelVersion,
        directory: str | Path,
        *,
        verify: Verify = "digest",
        trusted_keys: TrustedKeys | None = None,
    ) -> ModelVersion:
        """Download a version's files into ``directory`` (which must not exist yet, or be
        empty); the version downloaded.

        With ``verify="digest"`` (the default) the files are checked against the version's
        manifest first, in a scratch directory beside ``directory``: files that fail the
        check never appear there, and :class:`~hokusai.IntegrityError` names them.
        ``verify="signature"`` and ``trusted_keys``: as for :meth:`load_model`.
        """
        version = resolve_version(self._transport, reference)
        target = Path(directory)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ValidationError(f"{target} already exists and is not an empty directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".hokusai-pull-", dir=target.parent))
        try:
            download_version(
                self._transport,
                version,
                scratch / "model",
                verify=verify,
                trusted_keys=trusted_keys,
            )
            if target.exists():
                target.rmdir()
            (scratch / "model").rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return version

    def load_model(
        self,
        reference: str | ModelVersion,
        *,
        verify: Verify = "digest",
        allow_pickle: bool = False,
        trusted_keys: TrustedKeys | None = None,
    ) -> Any:
        """Download a version's files and load it as an ``mlflow.pyfunc`` model.

        With ``verify="digest"`` (the default) every file is checked against the manifest
        the version recorded at registration before anything is loaded; a changed,
        missing or extra file raises :class:`~hokusai.IntegrityError` naming it.
        ``verify="signature"`` also needs the manifest signed by a key the version's
        workspace trusts (or one of ``trusted_keys``, PEM public keys, when given): an
        unsigned version, a bad signature or an untrusted signer raises
        :class:`~hokusai.signing.SignatureError` (an ``IntegrityError``) before anything
        is downloaded. ``verify="none"`` loads the files as stored (a version without a
        manifest).

        A model that loads with pickle (cloudpickle or pickle files, a custom Python
        model, PyTorch) runs the code its files hold: it raises
        :class:`~hokusai.UnsafeModelError` unless ``allow_pickle=True``.
        """
        import mlflow.pyfunc

        version = resolve_version(self._transport, reference)
        scratch = Path(tempfile.mkdtemp(prefix="hokusai-load-"))
        try:
            local = download_version(
                self._transport,
                version,
                scratch / "model",
                verify=verify,
                trusted_keys=trusted_keys,
            )
            if not allow_pickle and (reasons := pickle_reasons(local)):
                raise UnsafeModelError(described(version), reasons)
            model = mlflow.pyfunc.load_model(str(local))
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        # A loaded model may still read its directory (a flavour that loads lazily, a
        # custom model's artifacts): the files go when the model does, or at exit.
        weakref.finalize(model, shutil.rmtree, scratch, ignore_errors=True)
        return model

    # ---- cleanup ------------------------------------------------------------------------

    def cleanup_failed(
        self,
        older_than: timedelta = timedelta(hours=1),
        *,
        dry_run: bool = False,
        experiment_name: str | None = None,
    ) -> list[RemovedRun]:
        """Delete the runs (and their files) of failed or abandoned registrations.

        Only runs that a registration tagged ``failed``, or left ``in_progress`` for longer
        than ``older_than``, and that no model version uses; nothing else is touched.
        Returns what was (or, with ``dry_run``, would be) removed.
        """
        return remove_leftovers(
            self._transport, older_than, dry_run=dry_run, experiment_name=experiment_name
        )
