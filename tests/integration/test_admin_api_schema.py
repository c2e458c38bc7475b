"""The /api/v1 OpenAPI schema, fuzzed against a real gateway with an admin key
(schemathesis): no answer is a 5xx, and every error is in MLflow's error format.

Every operation of the schema gets valid and invalid inputs generated from it.
HOKUSAI_SCHEMA_EXAMPLES sets the examples per operation and mode (default 8 keeps this
under a minute; `make reliability` runs more). Adding webhook endpoints is left out: a
generated public URL would make the gateway try to reach the internet, which tests must
never do (URL validation has tests of its own).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from hokusai.keys.scopes import Scope
from tests.helpers import RunningGateway

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("HOKUSAI_SCHEMA_EXAMPLES", "8"))
LEFT_OUT = {("POST", "/api/v1/webhooks")}


def header(response: schemathesis.Response, name: str) -> str:
    """schemathesis keeps each header as a list of its values."""
    values = response.headers.get(name) or [""]
    return values[0]


def check_answer(case: schemathesis.Case[Any], response: schemathesis.Response) -> None:
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        assert header(response, "content-type").startswith("application/json"), (
            response.status_code,
            response.content[:300],
        )
        body = json.loads(response.content)
        assert {"error_code", "message", "request_id"} <= body.keys(), body
        assert isinstance(body["message"], str) and body["message"], body
        assert body["request_id"] == header(response, "x-request-id"), response.headers


def test_admin_api_answers_every_input_in_the_error_format(gateway: RunningGateway) -> None:
    schema = schemathesis.openapi.from_url(gateway.url + "/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {gateway.create_key(Scope.ADMIN, name='schema fuzz')}"}
    failures: dict[str, str] = {}
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # an operation the schema fails to describe
        operations.append(result.ok())
    tested = [op for op in operations if (op.method.upper(), op.path) not in LEFT_OUT]
    assert len(tested) >= 10, [op.label for op in operations]

    for operation in tested:
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=EXAMPLES * 2,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time
        )
        @given(case=strategy)
        def fuzz(case: schemathesis.Case[Any]) -> None:
            check_answer(case, case.call(base_url=gateway.url, headers=headers, timeout=60))

        try:
            fuzz()
        except Exception as failure:  # every operation is fuzzed; all failures reported
            failures[operation.label] = f"{type(failure).__name__}: {str(failure)[:600]}"
    assert failures == {}, json.dumps(failures, indent=2)
