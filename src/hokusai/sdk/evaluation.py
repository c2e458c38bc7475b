"""Measuring a model's metric on evaluation data, as ``hokusai models register
--eval-data`` does before it records the value (SDK callers may also pass metrics they
measured themselves)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hokusai.sdk.errors import ValidationError

# Metrics where a smaller value is better; everything else: larger is better.
LOWER_IS_BETTER = {"rmse", "mae", "mse", "log_loss", "logloss"}


def _scorers() -> dict[str, Callable[[Any, Any, Any], float]]:
    from sklearn import metrics

    def scores(model: Any, features: Any) -> Any:
        if hasattr(model, "predict_proba"):
            probabilities = model.predict_proba(features)
            return probabilities[:, 1] if probabilities.shape[1] == 2 else probabilities
        if hasattr(model, "decision_function"):
            return model.decision_function(features)
        raise ValidationError("auroc needs a model with predict_proba or decision_function")

    return {
        "auroc": lambda m, x, y: float(metrics.roc_auc_score(y, scores(m, x), multi_class="ovr")),
        "accuracy": lambda m, x, y: float(metrics.accuracy_score(y, m.predict(x))),
        "f1": lambda m, x, y: float(metrics.f1_score(y, m.predict(x), average="binary")),
        "precision": lambda m, x, y: float(metrics.precision_score(y, m.predict(x))),
        "recall": lambda m, x, y: float(metrics.recall_score(y, m.predict(x))),
        "log_loss": lambda m, x, y: float(metrics.log_loss(y, m.predict_proba(x))),
        "rmse": lambda m, x, y: float(metrics.mean_squared_error(y, m.predict(x)) ** 0.5),
        "mae": lambda m, x, y: float(metrics.mean_absolute_error(y, m.predict(x))),
        "r2": lambda m, x, y: float(metrics.r2_score(y, m.predict(x))),
    }


SUPPORTED_METRICS = (
    "auroc",
    "accuracy",
    "f1",
    "precision",
    "recall",
    "log_loss",
    "rmse",
    "mae",
    "r2",
)


def measure_on_csv(model: Any, csv_path: Path, label_column: str, metric: str) -> float:
    """Score ``model`` on the rows of ``csv_path``; ``label_column`` holds the truth."""
    import pandas as pd

    if metric not in SUPPORTED_METRICS:
        raise ValidationError(
            f"cannot measure {metric!r}: supported metrics are {', '.join(SUPPORTED_METRICS)}"
        )
    try:
        frame = pd.read_csv(csv_path)
    except (OSError, ValueError) as exc:
        raise ValidationError(f"cannot read evaluation data {csv_path}: {exc}") from None
    if label_column not in frame.columns:
        raise ValidationError(
            f"{csv_path} has no column {label_column!r} (columns: {', '.join(frame.columns)})"
        )
    if frame.empty:
        raise ValidationError(f"{csv_path} has no rows to evaluate on")
    labels = frame[label_column]
    features = frame.drop(columns=[label_column])
    try:
        return _scorers()[metric](model, features, labels)
    except ValidationError:
        raise
    except Exception as exc:
        raise ValidationError(f"measuring {metric} on {csv_path} failed: {exc}") from None
