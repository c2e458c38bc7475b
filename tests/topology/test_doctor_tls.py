"""`hokusai doctor` over TLS: the topology's good chain passes every hop; an untrusted
certificate, a certificate for another host name and an expired one each fail at the
`connect` hop with a fix that says which."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stack.tls import CertificateAuthority, CertificateFiles
from stack.topology import Topology
from typer.testing import CliRunner

from hokusai.cli.main import app
from tests.topology.support import pytestmark as marks

pytestmark = marks


@contextlib.contextmanager
def tls_listener(certificate: CertificateFiles) -> Iterator[int]:
    """A loopback port that completes TLS handshakes with ``certificate`` (and nothing else)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.certificate, certificate.key)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), connection:
                connection.settimeout(5)
                with context.wrap_socket(connection, server_side=True):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def doctor(url: str, key: str, ca_bundle: Path, tmp_path: Path) -> dict[str, Any]:
    env = {
        "HOKUSAI_CA_BUNDLE": str(ca_bundle),
        "HOKUSAI_CONFIG_FILE": str(tmp_path / "no-profile.json"),
    }
    result = CliRunner().invoke(
        app, ["doctor", "--api-url", url, "--api-key", key, "--json"], env=env
    )
    report = json.loads(result.stdout)
    assert result.exit_code == (0 if report["ok"] else 1), result.stdout
    return dict(report)


def connect_failure(report: dict[str, Any]) -> str:
    assert report["ok"] is False
    assert report["failed_hop"] == "connect", report
    hop = next(h for h in report["hops"] if h["name"] == "connect")
    return f"{hop['detail']} | {hop['fix']}"


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("other-ca"), "Some other CA")


def test_good_chain_passes_every_hop(topology: Topology, tmp_path: Path) -> None:
    report = doctor(topology.url, topology.admin_key, topology.ca_bundle, tmp_path)
    assert report["ok"] is True, report
    hops = {h["name"]: h for h in report["hops"]}
    assert {"config", "dns", "connect", "health", "auth", "proxy_read"} <= set(hops)
    assert "TLS" in hops["connect"]["detail"]


def test_untrusted_certificate(
    topology: Topology, other_ca: CertificateAuthority, tmp_path: Path
) -> None:
    with tls_listener(other_ca.issue("untrusted")) as port:
        text = connect_failure(
            doctor(f"https://127.0.0.1:{port}", topology.admin_key, topology.ca_bundle, tmp_path)
        )
    untrusted = r"(?i)not trusted|untrusted|not signed by a trusted CA|unknown (certificate )?auth"
    assert re.search(untrusted, text), text
    assert "expired" not in text.lower()


def test_certificate_for_another_host_name(topology: Topology, tmp_path: Path) -> None:
    wrong = topology.ca.issue("wrong-host", ("registry.example.test",))
    with tls_listener(wrong) as port:
        text = connect_failure(
            doctor(f"https://localhost:{port}", topology.admin_key, topology.ca_bundle, tmp_path)
        )
    assert re.search(r"(?i)host ?name", text), text
    assert "localhost" in text
    assert "expired" not in text.lower()


def test_expired_certificate(topology: Topology, tmp_path: Path) -> None:
    with tls_listener(topology.ca.issue_expired("expired")) as port:
        text = connect_failure(
            doctor(f"https://127.0.0.1:{port}", topology.admin_key, topology.ca_bundle, tmp_path)
        )
    assert "expired" in text.lower(), text
    assert not re.search(r"(?i)host ?name", text), text
