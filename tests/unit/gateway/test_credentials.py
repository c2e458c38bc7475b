"""Where a key may come from: the Authorization or X-API-Key header, never the URL."""

from __future__ import annotations

import pytest

from hokusai.gateway.credentials import key_from_headers, refuse_key_in_query
from hokusai.gateway.errors import GatewayError
from hokusai.keys.format import generate_key


def unauthenticated(headers: dict[bytes, bytes]) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        key_from_headers(headers)
    error = caught.value
    assert error.error_code == "UNAUTHENTICATED"
    assert error.status == 401
    assert error.reason == "malformed"
    return error


@pytest.mark.parametrize("scheme", [b"Bearer", b"bearer", b"BEARER"])
def test_bearer_token(scheme: bytes) -> None:
    key = generate_key()
    assert key_from_headers({b"authorization": scheme + b" " + key.encode()}) == key


def test_bearer_token_surrounding_whitespace_is_dropped() -> None:
    key = generate_key()
    assert key_from_headers({b"authorization": b"Bearer   " + key.encode() + b" \t"}) == key


def test_x_api_key() -> None:
    key = generate_key("test")
    assert key_from_headers({b"x-api-key": key.encode()}) == key
    assert key_from_headers({b"x-api-key": b"  " + key.encode() + b"\t"}) == key


def test_authorization_wins_over_x_api_key() -> None:
    first, second = generate_key(), generate_key()
    headers = {b"authorization": b"Bearer " + first.encode(), b"x-api-key": second.encode()}
    assert key_from_headers(headers) == first


@pytest.mark.parametrize(
    "headers",
    [{}, {b"authorization": b""}, {b"x-api-key": b""}, {b"accept": b"application/json"}],
)
def test_no_key_sent(headers: dict[bytes, bytes]) -> None:
    assert key_from_headers(headers) is None


def test_whatever_is_in_the_header_is_handed_on_for_verification() -> None:
    # Shape and checksum are the key service's business: the header layer only extracts.
    assert key_from_headers({b"authorization": b"Bearer not-a-key"}) == "not-a-key"


@pytest.mark.parametrize(
    "value",
    [b"Basic dXNlcjpwYXNzd29yZA==", b"basic dXNlcjpwYXNzd29yZA==", b"BASIC x"],
)
def test_basic_auth_is_explained(value: bytes) -> None:
    message = unauthenticated({b"authorization": value}).message
    assert "basic authentication is not accepted" in message
    assert "Bearer" in message
    assert "MLFLOW_TRACKING_TOKEN" in message
    assert "MLFLOW_TRACKING_USERNAME/PASSWORD" in message
    assert "HOKUSAI_API_KEY" in message


def test_basic_auth_is_refused_even_with_an_x_api_key() -> None:
    headers = {b"authorization": b"Basic dXNlcjpwYXNz", b"x-api-key": generate_key().encode()}
    unauthenticated(headers)


@pytest.mark.parametrize(
    "value",
    [
        b"Token abc",
        b"Digest username=x",
        b"ApiKey abc",
        b"Bearer",
        b"Bearer ",
        b"Bearer:abc",
    ],
)
def test_other_schemes_are_explained(value: bytes) -> None:
    message = unauthenticated({b"authorization": value}).message
    assert "is not 'Bearer <key>'" in message
    assert "Authorization: Bearer hk_live_" in message
    assert "X-API-Key: hk_live_" in message


def test_a_bare_key_in_the_authorization_header_is_not_echoed() -> None:
    key = generate_key()
    message = unauthenticated({b"authorization": key.encode()}).message
    assert key not in message


def refused_query(query: bytes) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        refuse_key_in_query(query)
    error = caught.value
    assert error.error_code == "INVALID_PARAMETER_VALUE"
    assert error.status == 400
    assert error.reason == "key_in_query"
    assert "never accepted in the URL" in error.message
    assert "Authorization: Bearer" in error.message
    assert "hokusai keys rotate" in error.message
    return error


@pytest.mark.parametrize(
    "template",
    [
        "{key}",
        "note={key}",
        "experiment_id=1&filter=tags.x%3D%27{key}%27",
        "run_id=abc&Authorization=Bearer%20{key}",
        "x={key}&y=2",
    ],
)
def test_a_key_anywhere_in_the_query_is_refused(template: str) -> None:
    key = generate_key()
    error = refused_query(template.format(key=key).encode())
    assert key not in error.message


@pytest.mark.parametrize(
    "query",
    [
        b"api_key=x",
        b"apikey=x",
        b"api-key=x",
        b"access_token=x",
        b"token=x",
        b"hokusai_api_key=x",
        b"TOKEN=x",
        b"Api_Key=x",
        b"run_id=1&token=",
        b"token",
    ],
)
def test_credential_parameter_names_are_refused(query: bytes) -> None:
    refused_query(query)


@pytest.mark.parametrize(
    "query",
    [
        b"",
        b"experiment_id=1",
        b"name=my-model&version=3",
        b"max_results=100&page_token=eyJvZmZzZXQiOiAxMDB9",
        b"path=artifacts%2Fmodel%2FMLmodel&run_id=abc",
        b"filter=name%20LIKE%20%27hk_%25%27",
        b"tokens=5&max_tokens=10",
        b"name=hk_live_",
    ],
)
def test_ordinary_queries_pass(query: bytes) -> None:
    refuse_key_in_query(query)  # raises GatewayError if refused


@pytest.mark.parametrize(
    "form",
    [
        lambda k: k.replace("_", "%5F"),
        lambda k: k.replace("_", "%5f"),
        lambda k: k.replace("_", "%255F"),
        lambda k: "".join(f"%{ord(c):02X}" for c in k),
    ],
)
def test_an_encoded_key_in_the_query_is_refused(form: object) -> None:
    key = generate_key()
    encoded = form(key)  # type: ignore[operator]
    for query in (f"filter={encoded}", f"{encoded}=1"):
        with pytest.raises(GatewayError) as caught:
            refuse_key_in_query(query.encode())
        assert caught.value.reason == "key_in_query"


def test_a_key_in_the_path_is_refused() -> None:
    from hokusai.gateway.credentials import refuse_key_in_path

    key = generate_key()
    for path in (f"/api/3.0/mlflow/traces/{key}", f"/x/{key.replace('_', '%5F')}/y"):
        with pytest.raises(GatewayError) as caught:
            refuse_key_in_path(path)
        assert caught.value.reason == "key_in_path"
        assert "found in the URL's path" in caught.value.message
    refuse_key_in_path("/api/v1/keys/hk_live_AbCdEf")  # a display prefix is not a key
