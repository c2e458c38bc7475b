"""Improvements: the tags that tie a version to the one it improved on, and the lineage
of a model that they make."""

from __future__ import annotations

from hokusai.sdk.results import LineageEntry, ModelVersion
from hokusai.tokens import (
    TAG_BENCHMARK_METRIC,
    TAG_BENCHMARK_VALUE,
    TAG_LOWER_IS_BETTER,
    TAG_TOKEN_ID,
)

TAG_MODEL_TYPE = "hokusai_model_type"
TAG_BASELINE = "hokusai_baseline"
TAG_CONTRIBUTOR = "hokusai_contributor"
DELTA_PREFIX = "hokusai_delta_"

# An improvement serves what its baseline served: the same token, benchmark and type.
INHERITED_TAGS = (
    TAG_TOKEN_ID,
    TAG_BENCHMARK_METRIC,
    TAG_BENCHMARK_VALUE,
    TAG_LOWER_IS_BETTER,
    TAG_MODEL_TYPE,
)


def improvement_tags(
    baseline: ModelVersion, contributor: str, deltas: dict[str, float]
) -> dict[str, str]:
    """The tags of a version that improves on ``baseline`` by ``deltas``."""
    tags = {
        TAG_BASELINE: f"{baseline.name}/{baseline.version}",
        TAG_CONTRIBUTOR: contributor,
        **{DELTA_PREFIX + k: repr(v) for k, v in deltas.items()},
    }
    for key in INHERITED_TAGS:
        if key in baseline.tags:
            tags[key] = baseline.tags[key]
    return tags


def lineage_entry(version: ModelVersion) -> LineageEntry:
    """What ``version`` improved on, who contributed it, its metric changes, its token."""
    tags = version.tags
    return {
        "version": version.version,
        "model_uri": version.model_uri,
        "run_id": version.run_id,
        "created_at_ms": version.created_at_ms,
        "baseline": tags.get(TAG_BASELINE),
        "contributor": tags.get(TAG_CONTRIBUTOR),
        "delta_metrics": {
            k[len(DELTA_PREFIX) :]: float(val)
            for k, val in tags.items()
            if k.startswith(DELTA_PREFIX)
        },
        "token_id": version.token_id,
        "aliases": version.aliases,
        "registration_kind": "improved"
        if TAG_BASELINE in tags
        else ("tokenized" if version.token_id else "baseline"),
    }
