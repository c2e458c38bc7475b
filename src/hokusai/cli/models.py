"""``hokusai models register|list|show|pull|lineage|alias|promote`` (``hokusai model register``
is the same register command under its older name)."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hokusai.cli.client import ApiKey, ApiUrl, Profile, registry, reported_errors
from hokusai.cli.console import err
from hokusai.sdk.errors import ValidationError
from hokusai.sdk.evaluation import LOWER_IS_BETTER, measure_on_csv
from hokusai.sdk.model_files import load_model_file
from hokusai.sdk.results import ModelVersion
from hokusai.sdk.validation import validate_token_id
from hokusai.sdk.version_files import Verify
from hokusai.tokens import TAG_BENCHMARK_METRIC, TAG_BENCHMARK_VALUE, TAG_MEASURED_VALUE, TAG_READY

models_app = typer.Typer(
    help="Register models and look at them: register, list, show, pull, lineage, alias, promote.",
    no_args_is_help=True,
)
model_app = typer.Typer(help="Same as `hokusai models register`.", no_args_is_help=True)
alias_app = typer.Typer(help="Point a model's aliases at versions.", no_args_is_help=True)
models_app.add_typer(alias_app, name="alias")
out = Console()
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ModelName = Annotated[str, typer.Argument(help="Registered model name.")]
AliasName = Annotated[str, typer.Argument(help="Alias, e.g. production or champion.")]
VersionNumber = Annotated[str, typer.Argument(help="Version number, e.g. 3.")]


class SerializationFormat(enum.StrEnum):
    """How a scikit-learn model is stored (see the README's trade-off)."""

    skops = "skops"
    cloudpickle = "cloudpickle"
    pickle = "pickle"


@models_app.command("register")
@model_app.command("register")
def register(
    token_id: Annotated[str, typer.Option("--token-id", help="The token this model serves.")],
    model_path: Annotated[
        Path, typer.Option("--model-path", help=".pkl/.joblib file or MLflow model directory.")
    ],
    metric: Annotated[str, typer.Option("--metric", help="Benchmark metric, e.g. auroc.")],
    baseline: Annotated[float, typer.Option("--baseline", help="Value the metric must reach.")],
    eval_data: Annotated[
        Path | None, typer.Option("--eval-data", help="CSV to measure the metric on.")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option("--label-column", help="Column of --eval-data with labels.")
    ] = None,
    model_name: Annotated[
        str | None, typer.Option("--model-name", help="Registered model (default: the token).")
    ] = None,
    lower_is_better: Annotated[
        bool | None,
        typer.Option(
            "--lower-is-better/--higher-is-better",
            help="Direction of the metric (default: by its name).",
        ),
    ] = None,
    registration_id: Annotated[
        str | None, typer.Option("--registration-id", help="Resume this registration.")
    ] = None,
    serialization_format: Annotated[
        SerializationFormat | None,
        typer.Option(
            "--serialization-format",
            help=(
                "How a scikit-learn model is stored (default: skops where the installed "
                "MLflow can save it, 3.9 and later, else cloudpickle). skops is safe to load "
                "but MLflow 2.x clients cannot; cloudpickle/pickle load everywhere and run "
                "code when loaded."
            ),
            show_default=False,
        ),
    ] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Register a model for a token. With --eval-data the metric is measured and recorded;
    the version is ready for deploy only when the measured value meets the baseline."""
    with reported_errors():
        token = validate_token_id(token_id)
        if not model_path.exists():
            raise ValidationError(f"--model-path {model_path} does not exist")
        if (eval_data is None) != (label_column is None):
            raise ValidationError("--eval-data and --label-column go together")
        lower = metric.lower() in LOWER_IS_BETTER if lower_is_better is None else lower_is_better
        with registry(api_url, api_key, profile) as client:
            # Before any time is spent loading and measuring: a read key fails here.
            client.require_scope("write")
            model = load_model_file(model_path)
            measured = None
            if eval_data is not None and label_column is not None:
                measured = measure_on_csv(model, eval_data, label_column, metric)
                err.print(f"measured {metric} = {measured:.6g} on {eval_data}")
            else:
                err.print(
                    f"no --eval-data: {metric} is not measured, so the version is not ready "
                    "for deploy"
                )
            result = client.register_measured_model(
                model,
                model_name or token,
                token,
                metric,
                baseline,
                measured,
                lower_is_better=lower,
                registration_id=registration_id,
                serialization_format=serialization_format.value if serialization_format else None,
            )
    ready = result.tags.get(TAG_READY) == "true"
    if as_json:
        print(
            json.dumps(
                {**result.__dict__, "measured_value": measured, "ready_for_deploy": ready}, indent=2
            )
        )
        return
    print(result.model_uri)
    verdict = "ready for deploy" if ready else "not ready for deploy"
    err.print(
        f"registered {result.model_uri} (run {result.run_id}, registration "
        f"{result.registration_id}): {verdict}"
    )


@models_app.command("list")
def list_models(
    token_id: Annotated[str | None, typer.Option("--token-id", help="Only this token's.")] = None,
    model_name: Annotated[str | None, typer.Option("--model-name", help="Only this model.")] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """List model versions (by token or by model)."""
    with reported_errors(), registry(api_url, api_key, profile) as client:
        if token_id:
            versions = client.list_models_by_token(token_id)
        elif model_name:
            versions = client.list_versions(model_name)
        else:
            versions = client.list_recent_versions()
    if as_json:
        print(json.dumps([v.as_dict() for v in versions], indent=2))
        return
    table = Table("model", "version", "token", "metric", "baseline", "measured", "ready", "aliases")
    for v in versions:
        table.add_row(
            v.name,
            v.version,
            v.token_id or "",
            v.tags.get(TAG_BENCHMARK_METRIC, ""),
            v.tags.get(TAG_BENCHMARK_VALUE, ""),
            v.tags.get(TAG_MEASURED_VALUE, ""),
            v.tags.get(TAG_READY, ""),
            ", ".join(v.aliases),
        )
    out.print(table)


@models_app.command("lineage")
def lineage(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Every version of a model: what it improved on, who contributed, metric changes."""
    with reported_errors(), registry(api_url, api_key, profile) as client:
        entries = client.get_model_lineage(name)
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    table = Table("version", "kind", "baseline", "contributor", "deltas", "token", "aliases")
    for e in entries:
        deltas = ", ".join(f"{k} {v:+g}" for k, v in e["delta_metrics"].items())
        table.add_row(
            e["version"],
            e["registration_kind"],
            e["baseline"] or "",
            e["contributor"] or "",
            deltas,
            e["token_id"] or "",
            ", ".join(e["aliases"]),
        )
    out.print(table)


@models_app.command("show")
def show(
    reference: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME/VERSION.")],
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """One model version (NAME alone: the latest — production, champion, else newest)."""
    with reported_errors(), registry(api_url, api_key, profile) as client:
        if "@" in reference or "/" in reference.removeprefix("models:/"):
            version = client.get_model_version(reference)
        else:
            version = client.get_latest_model(reference)
    if as_json:
        print(json.dumps(version.as_dict(), indent=2))
        return
    out.print(
        f"[bold]{version.model_uri}[/bold]  status {version.status}  "
        f"aliases {', '.join(version.aliases) or '-'}"
    )
    out.print(f"run {version.run_id}  source {version.source}")
    for key, value in sorted(version.tags.items()):
        out.print(f"  {key} = {value}")


@models_app.command("pull")
def pull(
    reference: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION.")],
    directory: Annotated[Path, typer.Argument(help="New (or empty) directory for the files.")],
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify",
            help="Do not check the files against the version's manifest (a version that "
            "records none).",
        ),
    ] = False,
    signed: Annotated[
        bool,
        typer.Option(
            "--signed",
            help="Also require the manifest to be signed by a key the workspace trusts.",
        ),
    ] = False,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Download a version's files into DIRECTORY, each checked against the digest manifest
    recorded at registration (a changed, missing or extra file, or with --signed an
    unsigned or untrusted version: exit code 8, nothing written)."""
    if no_verify and signed:
        raise typer.BadParameter("--no-verify and --signed contradict each other")
    verify: Verify = "none" if no_verify else "signature" if signed else "digest"
    with reported_errors(), registry(api_url, api_key, profile) as client:
        version = client.download_model(reference, directory, verify=verify)
    if as_json:
        print(json.dumps({**version.as_dict(), "directory": str(directory)}, indent=2))
        return
    print(directory)
    checked = {
        "none": "unchecked (--no-verify)",
        "digest": "every file matches its manifest",
        "signature": "signed by a trusted key, and every file matches its manifest",
    }[verify]
    err.print(f"{version.model_uri} pulled into {directory}: {checked}")


@alias_app.command("set")
def alias_set(
    name: ModelName,
    alias: AliasName,
    version: VersionNumber,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Point ALIAS of model NAME at VERSION (moving it from any other version)."""
    with reported_errors(), registry(api_url, api_key, profile) as client:
        found = client.set_alias(name, alias, version)
    _print_aliased(found, alias, as_json)


@alias_app.command("delete")
def alias_delete(
    name: ModelName,
    alias: AliasName,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
) -> None:
    """Remove ALIAS from model NAME (the version itself stays)."""
    with reported_errors(), registry(api_url, api_key, profile) as client:
        client.delete_alias(name, alias)
    err.print(f"removed alias {alias!r} of {name}")


@models_app.command("promote")
def promote(
    name: ModelName,
    version: VersionNumber,
    alias: Annotated[
        str, typer.Option("--alias", help="The alias that marks the promoted version.")
    ] = "production",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    profile: Profile = None,
    as_json: JsonFlag = False,
) -> None:
    """Promote VERSION of NAME: NAME@production (or --alias) loads it from now on."""
    with reported_errors(), registry(api_url, api_key, profile) as client:
        found = client.promote(name, version, alias=alias)
    _print_aliased(found, alias, as_json)


def _print_aliased(version: ModelVersion, alias: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(version.as_dict(), indent=2))
        return
    print(f"models:/{version.name}@{alias}")
    err.print(f"{version.name}@{alias} is now {version.model_uri}")
