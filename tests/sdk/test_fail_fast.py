"""What will not go away fails at once, what might is retried briefly, and the server's
``x-should-retry`` is obeyed: against real closed ports, a real plain-HTTP server, the real
gateway and a TLS server whose CA the SDK is told to trust (``ca_bundle``)."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hokusai import (
    ConfigurationError,
    EndpointNotFoundError,
    RegistryUnavailableError,
)
from hokusai.keys.format import generate_key
from hokusai.sdk import config as sdk_config
from hokusai.sdk.registry import ModelRegistry
from hokusai.sdk.retry import BRIEF_RETRY_TIME, NoAnswer
from hokusai.sdk.transport import classify
from tests.helpers import RunningGateway

pytestmark = pytest.mark.integration

# Loose bounds: far above what a fast failure takes, far below the old 25-30 s.
FAST = 2.0
BRIEF = BRIEF_RETRY_TIME + 3.0


def timed(registry: ModelRegistry) -> tuple[BaseException, float]:
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        registry.check()
    return raised.value, time.monotonic() - started


# ---- a plain HTTP server that answers as told, counting requests --------------------------------


@dataclass
class Canned:
    status: int = 200
    body: bytes = b"<html>hello</html>"
    content_type: str = "text/html"
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


@dataclass
class PlainServer:
    url: str
    answer: Canned


def _serve(context: ssl.SSLContext | None, answer: Canned) -> Iterator[PlainServer]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            answer.requests.append(f"{self.command} {self.path}")
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheme = "https" if context is not None else "http"
    try:
        yield PlainServer(f"{scheme}://127.0.0.1:{server.server_address[1]}", answer)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def plain_server() -> Iterator[PlainServer]:
    yield from _serve(None, Canned())


# ---- connection refused, and the default URL ---------------------------------------------------


def test_refused_fails_within_seconds_not_half_a_minute(dead_url: str) -> None:
    # The default budget (30 s) is what a user gets; refused stays within a few seconds.
    registry = ModelRegistry(api_key=generate_key("test"), api_url=dead_url)
    error, elapsed = timed(registry)
    assert isinstance(error, RegistryUnavailableError)
    assert elapsed < BRIEF < 10
    message = str(error)
    assert "connection refused" in message
    assert dead_url in message
    assert "(from argument)" in message
    assert "after retrying for" in message
    assert "HOKUSAI_API_URL is not set" not in message


def test_the_default_url_says_it_was_the_default(
    dead_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand the default in for a closed port: whatever runs on this machine's 8080.
    monkeypatch.setattr(sdk_config, "DEFAULT_API_URL", dead_url)
    registry = ModelRegistry(api_key=generate_key("test"), max_retry_time=1)
    assert registry.config.url_source == "default"
    error, elapsed = timed(registry)
    assert isinstance(error, RegistryUnavailableError)
    assert elapsed < 1 + FAST
    assert f"HOKUSAI_API_URL is not set; tried {dead_url}" in str(error)
    assert "hokusai serve" in str(error)


# ---- TLS mismatch, unknown host, not a gateway: never retried -----------------------------------


def test_https_against_the_plain_http_gateway_is_not_retried(
    sdk_gateway: RunningGateway, team_key: str
) -> None:
    url = sdk_gateway.url.replace("http://", "https://")
    registry = ModelRegistry(api_key=team_key, api_url=url)
    error, elapsed = timed(registry)
    assert isinstance(error, RegistryUnavailableError)
    assert elapsed < FAST
    message = str(error)
    assert "TLS handshake" in message
    assert url in message
    assert "http:// URL" in message
    assert "not retried" in message


def test_https_against_a_plain_http_server_is_not_retried(plain_server: PlainServer) -> None:
    url = plain_server.url.replace("http://", "https://")
    error, elapsed = timed(ModelRegistry(api_key=generate_key("test"), api_url=url))
    assert isinstance(error, RegistryUnavailableError)
    assert elapsed < FAST
    assert "TLS handshake" in str(error)


def test_an_unknown_host_is_permanent() -> None:
    """DNS is not on loopback, so the lookup failure is made locally: a label longer than
    63 bytes, which the resolver refuses without sending a query. It reaches the SDK
    wrapped the way httpcore and httpx wrap it."""
    with pytest.raises(socket.gaierror) as lookup:
        socket.getaddrinfo(b"a" * 64 + b".invalid", 80)
    try:
        try:
            raise httpx.ConnectError(str(lookup.value)) from lookup.value
        except httpx.ConnectError as inner:
            raise httpx.ConnectError(str(inner)) from inner
    except httpx.ConnectError as wrapped:
        assert classify(wrapped) is NoAnswer.PERMANENT
    refused = ConnectionRefusedError(111, "Connection refused")
    try:
        raise httpx.ConnectError("refused") from refused
    except httpx.ConnectError as wrapped:
        assert classify(wrapped) is NoAnswer.REFUSED


@pytest.mark.parametrize("status", [200, 404, 405])
def test_not_a_gateway_is_not_retried(plain_server: PlainServer, status: int) -> None:
    plain_server.answer.status = status
    registry = ModelRegistry(api_key=generate_key("test"), api_url=plain_server.url)
    error, elapsed = timed(registry)
    assert isinstance(error, EndpointNotFoundError)
    assert elapsed < FAST
    assert len(plain_server.answer.requests) == 1
    assert "not the Hokusai gateway's error format" in str(error)


def test_a_proxy_503_is_retried_only_briefly(plain_server: PlainServer) -> None:
    plain_server.answer.status = 503
    registry = ModelRegistry(api_key=generate_key("test"), api_url=plain_server.url)
    error, elapsed = timed(registry)
    assert isinstance(error, RegistryUnavailableError)
    assert elapsed < BRIEF
    assert len(plain_server.answer.requests) > 1
    assert "not from the Hokusai gateway" in str(error)


# ---- x-should-retry ------------------------------------------------------------------------------


def gateway_error(code: str) -> bytes:
    return json.dumps(
        {"error_code": code, "message": "upstream broke", "request_id": "r1"}
    ).encode()


def test_should_retry_false_stops_even_a_read(plain_server: PlainServer) -> None:
    plain_server.answer.status = 502
    plain_server.answer.body = gateway_error("TEMPORARILY_UNAVAILABLE")
    plain_server.answer.content_type = "application/json"
    plain_server.answer.headers = {"x-should-retry": "false"}
    registry = ModelRegistry(api_key=generate_key("test"), api_url=plain_server.url)
    error, elapsed = timed(registry)
    assert isinstance(error, RegistryUnavailableError)
    assert elapsed < FAST
    assert plain_server.answer.requests == ["GET /api/v1/whoami"]
    assert error.error_code == "TEMPORARILY_UNAVAILABLE"
    assert error.status_code == 502


def test_a_503_without_the_header_is_retried_for_a_write(plain_server: PlainServer) -> None:
    plain_server.answer.status = 503
    plain_server.answer.body = gateway_error("TEMPORARILY_UNAVAILABLE")
    plain_server.answer.content_type = "application/json"
    plain_server.answer.headers = {"Retry-After": "0.2"}
    registry = ModelRegistry(
        api_key=generate_key("test"), api_url=plain_server.url, max_retry_time=1
    )
    with pytest.raises(RegistryUnavailableError):
        registry.register_tokenized_model("models:/LSCOR/1", "LSCOR", "LSCOR", "auroc", 0.5)
    assert len(plain_server.answer.requests) > 1

    plain_server.answer.requests.clear()
    plain_server.answer.headers = {"Retry-After": "0.2", "x-should-retry": "false"}
    with pytest.raises(RegistryUnavailableError):
        registry.register_tokenized_model("models:/LSCOR/1", "LSCOR", "LSCOR", "auroc", 0.5)
    assert len(plain_server.answer.requests) == 1


# ---- a private CA: HOKUSAI_CA_BUNDLE, ca_bundle=, SSL_CERT_FILE -------------------------------


@dataclass
class PrivateCA:
    bundle: Path
    server_context: ssl.SSLContext


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    """A throwaway CA and a certificate for 127.0.0.1 that it signed."""
    directory = tmp_path_factory.mktemp("ca")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hokusai test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    bundle = directory / "ca.pem"
    bundle.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain = directory / "server.pem"
    chain.write_bytes(
        server_cert.public_bytes(serialization.Encoding.PEM)
        + server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return PrivateCA(bundle, context)


WHOAMI = b'{"id": "key_1", "owner": "tls", "scope": "read", "state": "active"}'


@pytest.fixture
def tls_server(private_ca: PrivateCA) -> Iterator[PlainServer]:
    yield from _serve(
        private_ca.server_context, Canned(body=WHOAMI, content_type="application/json")
    )


def test_an_untrusted_certificate_is_not_retried_and_names_the_fix(
    tls_server: PlainServer,
) -> None:
    error, elapsed = timed(ModelRegistry(api_key=generate_key("test"), api_url=tls_server.url))
    assert isinstance(error, RegistryUnavailableError)
    assert elapsed < FAST
    assert "is not trusted" in str(error)
    assert "HOKUSAI_CA_BUNDLE" in str(error)
    assert tls_server.answer.requests == []


def test_ca_bundle_argument(tls_server: PlainServer, private_ca: PrivateCA) -> None:
    registry = ModelRegistry(
        api_key=generate_key("test"), api_url=tls_server.url, ca_bundle=private_ca.bundle
    )
    assert registry.config.ca_bundle == str(private_ca.bundle)
    assert registry.check()["owner"] == "tls"
    assert tls_server.answer.requests == ["GET /api/v1/whoami"]


@pytest.mark.parametrize("variable", ["HOKUSAI_CA_BUNDLE", "SSL_CERT_FILE"])
def test_ca_bundle_from_the_environment(
    variable: str,
    tls_server: PlainServer,
    private_ca: PrivateCA,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv(variable, str(private_ca.bundle))
    registry = ModelRegistry(api_key=generate_key("test"), api_url=tls_server.url)
    assert registry.config.ca_bundle_source == variable
    assert registry.check()["owner"] == "tls"
    if variable == "SSL_CERT_FILE":
        # HOKUSAI_CA_BUNDLE comes first: set, it is the one used (here: refused).
        monkeypatch.setenv("HOKUSAI_CA_BUNDLE", str(tmp_path / "missing.pem"))
        with pytest.raises(ConfigurationError) as raised:
            ModelRegistry(api_key=generate_key("test"), api_url=tls_server.url)
        assert "HOKUSAI_CA_BUNDLE" in str(raised.value)
        assert "missing.pem" in str(raised.value)


def test_a_bad_ca_bundle_is_a_configuration_error(tmp_path: Path, dead_url: str) -> None:
    with pytest.raises(ConfigurationError, match="is not a file"):
        ModelRegistry(api_key="k", api_url=dead_url, ca_bundle=tmp_path / "nothing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="cannot use the CA bundle"):
        ModelRegistry(api_key="k", api_url=dead_url, ca_bundle=garbage)
