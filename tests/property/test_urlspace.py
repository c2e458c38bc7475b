"""Properties of the URL space: a path the gateway accepts means the same to everyone.

A path that passes the canonical check must not turn into something else under any
number of percent-decodings (MLflow, a proxy, or a framework may decode again), and
routing never fails with anything but the gateway's own error.
"""

from __future__ import annotations

from urllib.parse import unquote, unquote_to_bytes

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from hokusai.gateway import urlspace
from hokusai.gateway.errors import GatewayError

# Pieces an attacker would combine: structure, its encodings (once and twice), and noise.
_PIECES = [
    "/",
    ".",
    "..",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "%25",
    "%252e",
    "%252f",
    "%%32e",
    "%%32f",
    "%",
    "%c0%ae",
    "%c0%af",
    "\\",
    ";",
    "%3b",
    "api",
    "mlflow",
    "2.0",
    "%41",
    "%7e",
    "%77",
    "%00",
    "%u002e",
    "x",
]
hostile_paths = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12).map(
    lambda parts: "/" + "".join(parts)
)
any_paths = st.one_of(
    hostile_paths,
    st.text(max_size=60).map(lambda t: "/" + t),
    st.binary(max_size=60).map(lambda b: "/" + b.decode("latin-1")),
)


def _is_accepted(raw: bytes) -> bool:
    try:
        urlspace.check_canonical(raw)
    except GatewayError as error:
        assert error.error_code == "INVALID_PARAMETER_VALUE"
        return False
    return True


def _decodings(raw: bytes, rounds: int = 4) -> list[bytes]:
    """The path as bytes after 0, 1, 2, … percent-decodings, until nothing changes."""
    seen = [raw]
    for _ in range(rounds):
        decoded = unquote_to_bytes(seen[-1])
        if decoded == seen[-1]:
            break
        seen.append(decoded)
    return seen


@settings(max_examples=1500)
@given(path=any_paths)
@example(path="/api/mlflow/api/2.0/mlflow/%%32e%%32e/experiments/search")
@example(path="/api/mlflow/%%32f%%32fapi/2.0/mlflow/experiments/search")
def test_a_canonical_path_stays_canonical_under_every_decoding(path: str) -> None:
    raw = path.encode("latin-1", errors="replace")
    assume(_is_accepted(raw))
    for form in _decodings(raw)[1:]:
        segments = form.split(b"/")
        assert not any(s in (b".", b"..") for s in segments), (raw, form)
        assert b"//" not in form, (raw, form)
        assert b"\\" not in form, (raw, form)
        # (A literal NUL never gets past the HTTP parser; decoding must not make one.)
        assert form.count(b"\x00") == raw.count(b"\x00"), (raw, form)
    # Decoded once, nothing percent-encoded is left for a second decoder to find.
    assert unquote_to_bytes(_decodings(raw)[-1]) == _decodings(raw)[-1]
    # Only the literal slashes of the raw path are slashes after decoding.
    assert unquote_to_bytes(raw).count(b"/") == raw.count(b"/")


@settings(max_examples=1000)
@given(path=any_paths)
def test_locating_any_path_never_fails_with_anything_but_a_gateway_error(path: str) -> None:
    raw = path.encode("utf-8", errors="surrogateescape")
    try:
        urlspace.check_canonical(raw)
        target = urlspace.locate(unquote(path))
    except GatewayError:
        return
    if target.area is urlspace.Area.MLFLOW:
        assert target.mlflow_path.startswith("/")
        urlspace.check_canonical(target.mlflow_path.encode("utf-8", "replace"))  # raises if not


@given(path=any_paths)
def test_not_found_always_builds_a_gateway_error(path: str) -> None:
    error = urlspace.not_found(path, "http://127.0.0.1:8080")
    assert error.error_code == "ENDPOINT_NOT_FOUND"
    assert error.message
