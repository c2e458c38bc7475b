"""Token models: the model-version tags that tie a version to a token and its benchmark,
and the one rule that makes such a version ready for deploy.

The SDK writes these tags, the webhooks read them to emit ``model.registered`` and
``token.ready_for_deploy``, the promotion gate applies the same rule, and the CLI shows
them. Standard library only: the SDK and the server both import it.
"""

from __future__ import annotations

TAG_TOKEN_ID = "hokusai_token_id"
TAG_BENCHMARK_METRIC = "benchmark_metric"
TAG_BENCHMARK_VALUE = "benchmark_value"
TAG_MEASURED_VALUE = "measured_value"
TAG_LOWER_IS_BETTER = "lower_is_better"
# Written by the SDK from the rule below, for people and tools that read tags; the
# server decides from the values themselves, never from this tag.
TAG_READY = "ready_for_deploy"

# Tags whose change can make a version a registered token model or ready for deploy.
TOKEN_TAGS = frozenset(
    {
        TAG_TOKEN_ID,
        TAG_BENCHMARK_METRIC,
        TAG_BENCHMARK_VALUE,
        TAG_MEASURED_VALUE,
        TAG_LOWER_IS_BETTER,
    }
)


def meets_benchmark(measured: float, benchmark: float, *, lower_is_better: bool) -> bool:
    """Whether a measured value is good enough to deploy: at most the benchmark when a
    lower value is better, else at least it."""
    return measured <= benchmark if lower_is_better else measured >= benchmark


def token_tags(
    token: str, metric_name: str, benchmark: float, lower_is_better: bool
) -> dict[str, str]:
    """The tags that register a version for ``token`` against its benchmark."""
    return {
        TAG_TOKEN_ID: token,
        TAG_BENCHMARK_METRIC: metric_name,
        TAG_BENCHMARK_VALUE: repr(benchmark),
        TAG_LOWER_IS_BETTER: "true" if lower_is_better else "false",
    }


def measurement_tags(measured: float, benchmark: float, lower_is_better: bool) -> dict[str, str]:
    """The tags that record a measured value and whether it meets the benchmark."""
    ready = meets_benchmark(measured, benchmark, lower_is_better=lower_is_better)
    return {TAG_MEASURED_VALUE: repr(measured), TAG_READY: "true" if ready else "false"}
