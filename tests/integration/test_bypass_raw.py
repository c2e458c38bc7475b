"""Requests an attacker would craft by hand, sent byte for byte over a raw socket.

Each row is one attempt to create an experiment without a key, or with only a read key:
through dot segments (raw, encoded once and twice), overlong UTF-8, ``//``, backslashes,
``;`` parameters, duplicate credentials, request smuggling (CL+TE), malformed chunks,
absolute-form targets and odd methods. For every row: each answer has the expected
status class and is in MLflow's error format, and MLflow — asked directly, behind the
gateway's back — has no such experiment.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from hokusai.keys.scopes import Scope
from hokusai.server.mlflow_process import MlflowProcess
from tests.helpers import RunningGateway
from tests.raw_http import exchange, parse_answers

pytestmark = pytest.mark.integration

CREATE = "/api/2.0/mlflow/experiments/create"


@dataclass(frozen=True)
class Attempt:
    """What a row may use: the experiment name to smuggle in, and the keys."""

    name: str
    read_key: str
    mlflow_port: int

    @property
    def body(self) -> bytes:
        return json.dumps({"name": self.name}).encode()


@dataclass(frozen=True)
class Row:
    id: str
    build: Callable[[Attempt], bytes]
    # The status class of every answer (4 for 4xx); the connection may also just be closed.
    status_class: int = 4


def request(
    method: str,
    target: str,
    *,
    key: str | None = None,
    extra: list[str] | None = None,
    body: bytes | None = None,
) -> Callable[[Attempt], bytes]:
    """A request builder: ``{read}`` in ``key``/``extra`` is the read key, the body is the
    attempt's JSON unless given."""

    def build(attempt: Attempt) -> bytes:
        payload = attempt.body if body is None else body
        lines = [f"{method} {target.format(port=attempt.mlflow_port)} HTTP/1.1", "Host: gateway"]
        if key is not None:
            lines.append(f"Authorization: Bearer {key.format(read=attempt.read_key)}")
        lines += [line.format(read=attempt.read_key) for line in extra or []]
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        lines += ["Connection: close", "", ""]
        return "\r\n".join(lines).encode("latin-1") + payload

    return build


def raw(template: bytes) -> Callable[[Attempt], bytes]:
    """Bytes as they are, with {name}, {read} and {smuggled_len} filled in."""

    def build(attempt: Attempt) -> bytes:
        smuggled = json.dumps({"name": attempt.name}).encode()
        return (
            template.replace(b"{name}", attempt.name.encode())
            .replace(b"{read}", attempt.read_key.encode())
            .replace(b"{smuggled_len}", str(len(smuggled)).encode())
        )

    return build


P = "/api/mlflow"
SMUGGLED = (
    b"POST " + CREATE.encode() + b" HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json"
    b"\r\nContent-Length: {smuggled_len}\r\n\r\n" + b'{"name": "{name}"}'
)

ROWS = [
    # Dot segments: raw, encoded once, encoded twice, and a stray '%' that decodes to one.
    Row("dots-raw", request("POST", P + "/api/2.0/mlflow/x/../experiments/create")),
    Row(
        "dots-raw-read",
        request("POST", P + "/api/2.0/mlflow/x/../experiments/create", key="{read}"),
    ),
    Row("dots-prefix", request("POST", P + "/../api/2.0/mlflow/experiments/create")),
    Row("dots-once", request("POST", P + "/api/2.0/mlflow/x/%2e%2e/experiments/create")),
    Row("dots-once-upper", request("POST", P + "/api/2.0/mlflow/x/%2E%2E/experiments/create")),
    Row("dots-twice", request("POST", P + "/api/2.0/mlflow/x/%252e%252e/experiments/create")),
    Row(
        "dots-stray-percent", request("POST", P + "/api/2.0/mlflow/x/%%32e%%32e/experiments/create")
    ),
    Row("dot-single", request("POST", P + "/api/2.0/mlflow/./experiments/create")),
    # Overlong UTF-8 for '.' and '/': not structure for Python, but for some decoders.
    Row("overlong-dot", request("POST", P + "/api/2.0/mlflow/x/%c0%ae%c0%ae/experiments/create")),
    Row("overlong-slash", request("POST", P + "/api/2.0/mlflow%c0%afexperiments/create")),
    Row(
        "overlong-read",
        request("POST", P + "/api/2.0/mlflow/%c0%ae/experiments/create", key="{read}"),
    ),
    # Empty segments and encoded slashes.
    Row("double-slash", request("POST", P + "//api/2.0/mlflow/experiments/create")),
    Row(
        "double-slash-inner",
        request("POST", P + "/api/2.0/mlflow//experiments/create", key="{read}"),
    ),
    Row("encoded-slash", request("POST", P + "/api/2.0/mlflow%2fexperiments/create")),
    Row("encoded-slash-twice", request("POST", P + "/api/2.0/mlflow%252fexperiments/create")),
    # Backslashes, raw and encoded.
    Row("backslash", request("POST", P + "/api/2.0/mlflow/x\\..\\experiments/create")),
    Row("backslash-encoded", request("POST", P + "/api/2.0/mlflow/x%5c..%5cexperiments/create")),
    # ';' path parameters (Tomcat-style '..;/').
    Row("semicolon", request("POST", P + CREATE + ";x=1")),
    Row("semicolon-read", request("POST", P + CREATE + ";.json", key="{read}")),
    Row("semicolon-dots", request("POST", P + "/api/2.0/mlflow/x/..;/experiments/create")),
    Row("semicolon-encoded", request("POST", P + CREATE + "%3bx=1", key="{read}")),
    # Duplicate or conflicting credentials: never more than the read key's scope.
    Row(
        "duplicate-authorization",
        request("POST", P + CREATE, key="{read}", extra=["Authorization: Bearer hk_live_forged"]),
    ),
    Row(
        "duplicate-authorization-reversed",
        request("POST", P + CREATE, key="hk_live_forged", extra=["Authorization: Bearer {read}"]),
    ),
    Row(
        "authorization-and-x-api-key",
        request("POST", P + CREATE, key="{read}", extra=["X-API-Key: {read}"]),
    ),
    Row("empty-bearer", request("POST", P + CREATE, extra=["Authorization: Bearer "])),
    Row("basic-auth", request("POST", P + CREATE, extra=["Authorization: Basic YWRtaW46YWRtaW4="])),
    # Request smuggling: the gateway must not see one request where MLflow sees two.
    Row(
        "cl-te",
        raw(
            b"POST " + P.encode() + b"/api/2.0/mlflow/experiments/search HTTP/1.1\r\n"
            b"Host: gateway\r\nAuthorization: Bearer {read}\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
        ),
    ),
    Row(
        "te-obfuscated",
        raw(
            b"POST " + P.encode() + b"/api/2.0/mlflow/experiments/search HTTP/1.1\r\n"
            b"Host: gateway\r\nAuthorization: Bearer {read}\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED
        ),
    ),
    Row(
        "te-duplicate",
        raw(
            b"POST " + P.encode() + b"/api/2.0/mlflow/experiments/search HTTP/1.1\r\n"
            b"Host: gateway\r\nAuthorization: Bearer {read}\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + SMUGGLED
        ),
    ),
    Row(
        "two-content-lengths",
        raw(
            b"POST " + P.encode() + b"/api/2.0/mlflow/experiments/search HTTP/1.1\r\n"
            b"Host: gateway\r\nAuthorization: Bearer {read}\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nContent-Length: 100\r\n\r\n{}" + SMUGGLED
        ),
    ),
    # Malformed chunked bodies.
    Row(
        "bad-chunk-size",
        raw(
            b"POST " + P.encode() + CREATE.encode() + b" HTTP/1.1\r\nHost: gateway\r\n"
            b"Authorization: Bearer {read}\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'zz\r\n{"name": "{name}"}\r\n0\r\n\r\n'
        ),
    ),
    Row(
        "chunk-longer-than-declared",
        raw(
            b"POST " + P.encode() + CREATE.encode() + b" HTTP/1.1\r\nHost: gateway\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b'2\r\n{"name": "{name}"}\r\n0\r\n\r\n'
        ),
    ),
    # Absolute-form targets: the gateway must not go where the target says.
    Row("absolute-form", request("POST", "http://127.0.0.1:{port}" + CREATE)),
    Row("absolute-form-prefix", request("POST", "http://127.0.0.1:{port}" + P + CREATE)),
    Row(
        "absolute-form-read", request("POST", "http://127.0.0.1:{port}" + P + CREATE, key="{read}")
    ),
    # Methods: lowercase, unknown, and overrides.
    Row("lowercase-method", request("post", P + CREATE)),
    Row("lowercase-method-read", request("post", P + CREATE, key="{read}")),
    Row("odd-method-read", request("PROPFIND", P + CREATE, key="{read}")),
    Row("get-with-body-read", request("GET", P + CREATE, key="{read}")),
    Row(
        "method-override-read",
        request("GET", P + CREATE, key="{read}", extra=["X-HTTP-Method-Override: POST"]),
    ),
    # The bare MLflow prefixes take the same checks.
    Row("bare-dots", request("POST", "/api/2.0/mlflow/x/../experiments/create")),
    Row("bare-read", request("POST", CREATE, key="{read}")),
]


def experiment_exists(mlflow_server: MlflowProcess, name: str) -> bool:
    """Asked of MLflow directly, not through the gateway."""
    response = httpx.get(
        mlflow_server.url + "/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": name},
        timeout=60,
    )
    if response.status_code == 404:
        return False
    response.raise_for_status()
    return True


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_no_crafted_request_gets_past_the_gateway(
    row: Row, gateway: RunningGateway, mlflow_server: MlflowProcess
) -> None:
    attempt = Attempt(
        name=f"bypass-{row.id}-{uuid.uuid4().hex[:8]}",
        read_key=gateway.create_key(Scope.READ),
        mlflow_port=mlflow_server.port,
    )
    answers = parse_answers(exchange(gateway, row.build(attempt)))

    assert not experiment_exists(mlflow_server, attempt.name), "the request reached MLflow"
    assert answers, "the gateway closed the connection without an answer"
    for answer in answers:
        assert answer.status // 100 == row.status_class, (answer.status, answer.body[:300])
        assert answer.headers.get("content-type", "").startswith("application/json"), answer
        body = json.loads(answer.body)
        assert {"error_code", "message", "request_id"} <= body.keys(), body
        assert body["request_id"] == answer.headers.get("x-request-id"), answer.headers


def test_the_same_request_done_right_does_create(
    gateway: RunningGateway, mlflow_server: MlflowProcess
) -> None:
    """The control row: the raw request shape works with a write key, so the rows above
    are refused for what they change, not for how they are sent."""
    name = f"bypass-control-{uuid.uuid4().hex[:8]}"
    attempt = Attempt(name=name, read_key=gateway.create_key(Scope.WRITE), mlflow_port=0)
    answers = parse_answers(exchange(gateway, request("POST", P + CREATE, key="{read}")(attempt)))
    assert [a.status for a in answers] == [200], answers
    assert experiment_exists(mlflow_server, name)
