"""``hokusai doctor`` never ends in a traceback: a server that accepts and never answers,
one that answers nonsense, certificates that are untrusted, for another host or expired,
a stale runtime file, and a user who only set the stock MLflow client's variables. Each is
made to happen for real on loopback sockets, and each is one failed hop with its fix.

Longer than most test modules (about 430 lines): one fault per test, each with its own
loopback server.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hokusai.keys.format import generate_key
from hokusai.server.runtime_file import Runtime, write_runtime
from tests.doctor.support import Doctor, assert_failed
from tests.helpers import free_port

TIMEOUT = "1"  # --timeout: a hung server is given up on after a second


# ---- a server that accepts connections and never answers ------------------------------------


@dataclass
class Silent:
    """A loopback listener that accepts every connection, reads, and never answers."""

    listener: socket.socket
    accepted: list[socket.socket]
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"


@pytest.fixture
def silent() -> Iterator[Silent]:
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    server = Silent(listener, accepted, thread)
    yield server
    listener.close()
    for connection in accepted:
        connection.close()
    thread.join(timeout=5)


def test_a_hung_gateway_is_a_failed_hop(doctor: Doctor, silent: Silent) -> None:
    code, report = doctor.json("--timeout", TIMEOUT, url=silent.url, key=generate_key("live"))

    failed = assert_failed(
        code, report, "health", "accepted the connection but did not answer in 1 s", silent.url
    )
    assert "running Hokusai gateway" in failed["fix"]
    assert silent.accepted, "the doctor really connected"


def test_a_hung_mlflow_is_a_failed_hop_for_the_server_doctor(
    doctor: Doctor, silent: Silent, tmp_path: Path
) -> None:
    code, report = doctor.json(
        "--server", "--data-dir", str(tmp_path), "--mlflow-url", silent.url, "--timeout", TIMEOUT
    )

    assert code == 1, report
    hops = {h["name"]: h for h in report["hops"]}
    mlflow = hops["mlflow"]
    assert mlflow["ok"] is False, report
    assert "MLflow accepted the connection but did not answer in 1 s" in mlflow["detail"]
    assert silent.url in mlflow["detail"] and "--mlflow-url" in mlflow["detail"]
    assert "HOKUSAI_MLFLOW_URL" in mlflow["fix"]
    assert hops["artifact_store"]["ok"] is False
    assert "did not answer in 1 s" in hops["artifact_store"]["detail"]


def test_the_terminal_output_of_a_hung_mlflow_has_no_traceback(
    doctor: Doctor, silent: Silent, tmp_path: Path
) -> None:
    result = doctor.run(
        "--server", "--data-dir", str(tmp_path), "--mlflow-url", silent.url, "--timeout", TIMEOUT
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "ReadTimeout" not in result.output
    assert "did not answer in 1 s" in result.output


# ---- a server that answers nonsense -------------------------------------------------------


def handler(answer: Callable[[str], tuple[int, bytes]]) -> type[BaseHTTPRequestHandler]:
    """A request handler that answers each GET with ``answer(path)``: a status and a body."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answer(self.path)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def answering(answer: Callable[[str], tuple[int, bytes]]) -> Iterator[str]:
    """The URL of a loopback HTTP server that answers each GET with ``answer(path)``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(answer))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _like_a_gateway(path: str) -> tuple[int, bytes]:
    """Looks like a Hokusai gateway on /health, and answers whoami with HTML."""
    if path == "/health":
        return 200, json.dumps({"service": "hokusai-gateway", "version": "0"}).encode()
    return 200, b"<html>not json</html>"


@pytest.fixture
def nonsense() -> Iterator[str]:
    yield from answering(_like_a_gateway)


def test_an_unexpected_answer_is_a_failed_hop_not_a_traceback(
    doctor: Doctor, nonsense: str
) -> None:
    result = doctor.run("--json", url=nonsense, key=generate_key("live"))

    assert isinstance(result.exception, SystemExit), result.exception
    report = json.loads(result.stdout)
    failed = assert_failed(result.exit_code, report, "auth", "JSONDecodeError")
    assert "Run the check again" in failed["fix"]


# ---- only the stock MLflow client's variables -----------------------------------------------


def test_only_mlflow_variables_are_used_and_said_so(doctor: Doctor) -> None:
    port = free_port()  # nothing listens: the walk stops at connect, on that port
    key = generate_key("live")
    code, report = doctor.json(
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}/api/mlflow", MLFLOW_TRACKING_TOKEN=key
    )

    assert_failed(code, report, "connect", f"127.0.0.1:{port}")
    config = report["hops"][0]
    assert config["ok"] is True, report
    assert f"URL http://127.0.0.1:{port} (from MLFLOW_TRACKING_URI" in config["detail"]
    assert "(from MLFLOW_TRACKING_TOKEN, as HOKUSAI_API_KEY is not set)" in config["detail"]
    assert key not in json.dumps(report)


def test_hokusai_variables_win_over_mlflow_ones(doctor: Doctor) -> None:
    port, other = free_port(), free_port()
    code, report = doctor.json(
        url=f"http://127.0.0.1:{port}",
        key=generate_key("live"),
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{other}/api/mlflow",
        MLFLOW_TRACKING_TOKEN=generate_key("live"),
    )
    assert_failed(code, report, "connect", f"127.0.0.1:{port}")
    assert "(from environment)" in report["hops"][0]["detail"]
    assert "MLFLOW" not in report["hops"][0]["detail"]


def test_no_key_advice_fits_the_command_line(doctor: Doctor) -> None:
    code, report = doctor.json()
    failed = assert_failed(code, report, "config", "no API key")
    assert "--api-key" in failed["fix"] and "HOKUSAI_API_KEY" in failed["fix"]
    assert "api_key=" not in failed["detail"] + failed["fix"]


# ---- the runtime file of `hokusai serve` ----------------------------------------------------


@pytest.fixture
def healthy() -> Iterator[str]:
    yield from answering(lambda path: (200 if path == "/health" else 404, b'{"status": "ok"}'))


def test_server_doctor_checks_the_mlflow_of_the_runtime_file(
    doctor: Doctor, silent: Silent, healthy: str, tmp_path: Path
) -> None:
    mlflow_port = int(silent.url.rsplit(":", 1)[1])
    write_runtime(
        tmp_path,
        Runtime(healthy, silent.url, os.getpid(), "127.0.0.1", 1234, mlflow_port),
    )
    code, report = doctor.json("--server", "--data-dir", str(tmp_path), "--timeout", TIMEOUT)

    hops = {h["name"]: h for h in report["hops"]}
    assert hops["server"]["ok"] is True, report
    assert f"gateway {healthy}" in hops["server"]["detail"]
    assert f"MLflow child on port {mlflow_port}" in hops["server"]["detail"]
    # Not the default MLflow URL: the one the running server uses.
    assert silent.url in hops["mlflow"]["detail"], report
    assert "runtime.json" in hops["mlflow"]["detail"]
    assert code == 1


def test_a_stale_runtime_file_is_named(doctor: Doctor, tmp_path: Path) -> None:
    dead = _dead_pid()
    write_runtime(
        tmp_path, Runtime("http://127.0.0.1:1", "http://127.0.0.1:1", dead, "127.0.0.1", 1, 2)
    )
    code, report = doctor.json("--server", "--data-dir", str(tmp_path), "--timeout", TIMEOUT)

    server = report["hops"][0]
    assert server["name"] == "server" and server["ok"] is False, report
    assert f"pid {dead}, which no longer runs" in server["detail"]
    assert "hokusai serve" in server["fix"]
    assert code == 1


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ---- TLS: a throwaway CA and a TLS loopback server ---------------------------------------


@dataclass
class Pki:
    root: Path
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    def issue(self, name: str, *, dns: list[str], ip: bool, expired: bool = False) -> Path:
        """A server certificate and key in one PEM file, signed by the CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        start, end = (
            (now - timedelta(days=30), now - timedelta(days=1))
            if expired
            else (now - timedelta(minutes=5), now + timedelta(days=1))
        )
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        if ip:
            names.append(x509.IPAddress(IPv4Address("127.0.0.1")))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        path = self.root / f"{name}.pem"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + cert.public_bytes(serialization.Encoding.PEM)
        )
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hokusai test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=60))
        .not_valid_after(now + timedelta(days=60))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pki = Pki(root, cert, key)
    pki.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pki


@pytest.fixture
def tls_server() -> Iterator[Callable[[Path], str]]:
    """Start a TLS loopback server with a certificate file; returns its https URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(cert_file: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler(_like_a_gateway))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"https://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def no_system_cas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def test_tls_with_the_ca_bundle_passes_connect(
    doctor: Doctor, pki: Pki, tls_server: Callable[[Path], str]
) -> None:
    url = tls_server(pki.issue("good", dns=["localhost"], ip=True))
    code, report = doctor.json(
        url=url, key=generate_key("live"), HOKUSAI_CA_BUNDLE=str(pki.ca_file)
    )
    hops = {h["name"]: h for h in report["hops"]}
    assert hops["connect"]["ok"] is True, report
    assert "TCP and TLS (TLSv1." in hops["connect"]["detail"]
    # The later hops use the same trust: /health answered over TLS.
    assert hops["health"]["ok"] is True, report
    assert report["failed_hop"] == "auth" and code == 1


def test_tls_with_ssl_cert_file_passes_connect(
    doctor: Doctor, pki: Pki, tls_server: Callable[[Path], str]
) -> None:
    url = tls_server(pki.issue("good2", dns=["localhost"], ip=True))
    _, report = doctor.json(url=url, key=generate_key("live"), SSL_CERT_FILE=str(pki.ca_file))
    hops = {h["name"]: h for h in report["hops"]}
    assert hops["connect"]["ok"] is True, report


def test_an_untrusted_certificate(
    doctor: Doctor,
    pki: Pki,
    tls_server: Callable[[Path], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_system_cas(monkeypatch)
    url = tls_server(pki.issue("untrusted", dns=["localhost"], ip=True))
    code, report = doctor.json(url=url, key=generate_key("live"))
    failed = assert_failed(code, report, "connect", "not signed by a trusted CA")
    assert "the system CA store" in failed["detail"]
    assert "HOKUSAI_CA_BUNDLE" in failed["fix"]


def test_a_certificate_for_another_host(
    doctor: Doctor, pki: Pki, tls_server: Callable[[Path], str]
) -> None:
    url = tls_server(pki.issue("elsewhere", dns=["elsewhere.example"], ip=False))
    code, report = doctor.json(
        url=url, key=generate_key("live"), HOKUSAI_CA_BUNDLE=str(pki.ca_file)
    )
    failed = assert_failed(code, report, "connect", "is not for the host name 127.0.0.1")
    assert "HOKUSAI_API_URL" in failed["fix"]


def test_an_expired_certificate(
    doctor: Doctor, pki: Pki, tls_server: Callable[[Path], str]
) -> None:
    url = tls_server(pki.issue("expired", dns=["localhost"], ip=True, expired=True))
    code, report = doctor.json(
        url=url, key=generate_key("live"), HOKUSAI_CA_BUNDLE=str(pki.ca_file)
    )
    failed = assert_failed(code, report, "connect", "has expired")
    assert "Renew" in failed["fix"]


def test_https_against_a_plain_http_port(doctor: Doctor, nonsense: str) -> None:
    url = nonsense.replace("http://", "https://")
    code, report = doctor.json(url=url, key=generate_key("live"))
    failed = assert_failed(code, report, "connect", "does not speak TLS")
    assert "http://" in failed["fix"]


def test_an_unreadable_ca_bundle(doctor: Doctor, tmp_path: Path, nonsense: str) -> None:
    missing = tmp_path / "no-such-ca.pem"
    code, report = doctor.json(
        url=nonsense.replace("http://", "https://"),
        key=generate_key("live"),
        HOKUSAI_CA_BUNDLE=str(missing),
    )
    # The SDK's configuration refuses a bundle that is not a file, before any connection.
    failed = assert_failed(code, report, "config", str(missing), "HOKUSAI_CA_BUNDLE", "PEM")
    assert failed["fix"]
