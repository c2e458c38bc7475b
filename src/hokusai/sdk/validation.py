"""The checks every argument of the SDK passes before any network call: each raises
:class:`ValidationError` saying what a valid value looks like."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from hokusai.sdk.errors import ValidationError
from hokusai.sdk.model_files import check_model

TOKEN_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# MLflow's own rule for metric, param and tag keys.
KEY_NAME = re.compile(r"^[A-Za-z0-9_\-. /]{1,250}$")
MODEL_NAME = re.compile(r"^[^/\x00-\x1f]{1,256}$")
REGISTRATION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# MLflow's rule for aliases: letters, digits, _ and -; not "latest", not v<digits>.
ALIAS = re.compile(r"^(?!latest$)(?![vV]\d+$)[A-Za-z0-9_-]{1,255}$")


def validate_token_id(token_id: str) -> str:
    if not isinstance(token_id, str) or not TOKEN_ID.match(token_id):
        raise ValidationError(f"token_id must be 1-64 letters, digits or dashes, not {token_id!r}")
    return token_id.upper()


def check_token_registration(
    token_id: Any, metric_name: Any, baseline_value: Any, model_name: Any
) -> tuple[str, float]:
    """What every token registration checks before any network call: the token (upper
    case) and the baseline as a float."""
    token = validate_token_id(token_id)
    check_name(metric_name, "metric_name")
    baseline = check_number(baseline_value, "baseline_value")
    check_model_name(model_name)
    return token, baseline


def check_registration_id(registration_id: str) -> str:
    if not REGISTRATION_ID.match(registration_id):
        raise ValidationError("registration_id may hold 1-128 letters, digits and _ . : - only")
    return registration_id


def check_name(value: Any, what: str) -> None:
    if not isinstance(value, str) or not KEY_NAME.match(value):
        raise ValidationError(
            f"{what} must be 1-250 letters, digits, spaces or _ - . /, not {value!r}"
        )


def check_alias(alias: Any) -> None:
    if not isinstance(alias, str) or not ALIAS.match(alias):
        raise ValidationError(
            "alias must be 1-255 letters, digits, _ or -, and neither 'latest' nor "
            f"v<number> (those name versions), not {alias!r}"
        )


def check_version_number(version: Any) -> str:
    text = str(version) if isinstance(version, int) and not isinstance(version, bool) else version
    if not isinstance(text, str) or not text.isdigit() or int(text) < 1:
        raise ValidationError(f"version must be a positive whole number, not {version!r}")
    return str(int(text))


def check_model_name(name: Any) -> None:
    if not isinstance(name, str) or not MODEL_NAME.match(name) or name.strip() != name:
        raise ValidationError(f"model name must be 1-256 characters without '/', not {name!r}")


def check_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{what} must be a finite number, not {value!r}")
    return float(value)


def check_metrics(metrics: dict[str, float] | None) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise ValidationError("metrics must be a dict of name -> number")
    checked = {}
    for key, value in metrics.items():
        check_name(key, "metric name")
        checked[key] = check_number(value, f"metric {key!r}")
    return checked


def metadata_tags(metadata: dict[str, Any] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValidationError("metadata must be a dict of name -> value")
    tags = {}
    for key, value in metadata.items():
        check_name(key, "metadata key")
        text = str(value)
        if len(text) > 5000:
            raise ValidationError(f"metadata value for {key!r} is longer than 5000 characters")
        tags[key] = text
    return tags


def check_model_argument(model: Any) -> None:
    if model is None:
        raise ValidationError("model is required")
    if isinstance(model, str | Path) and not Path(model).exists():
        raise ValidationError(
            f"model {str(model)!r} is neither an existing path nor a runs:/ or models:/ URI"
        )
    check_model(model)
