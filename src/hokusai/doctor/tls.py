"""The doctor's TLS: which CAs it trusts, and a message of its own for each way a
certificate is refused.

The trusted CAs are those of the SDK: ``HOKUSAI_CA_BUNDLE`` (a PEM bundle), else the
standard ``SSL_CERT_FILE``, else the system store.
"""

from __future__ import annotations

import os
import ssl

from hokusai.doctor.report import HopFailed

ENV_CA_BUNDLE = "HOKUSAI_CA_BUNDLE"

# OpenSSL's X509_V_ERR_* codes, as ssl.SSLCertVerificationError.verify_code reports them.
_EXPIRED = {10}  # CERT_HAS_EXPIRED
_NOT_YET_VALID = {9}
_UNTRUSTED = {2, 18, 19, 20, 21, 24, 27}  # unknown issuer, self-signed, untrusted root …
_WRONG_HOST = {62, 63, 64}  # HOSTNAME_MISMATCH, EMAIL_MISMATCH, IP_ADDRESS_MISMATCH


def trusted_cas() -> tuple[str | None, str]:
    """The CA bundle file to trust (None: the system store) and where that choice came from."""
    for name in (ENV_CA_BUNDLE, "SSL_CERT_FILE"):
        value = os.environ.get(name)
        if value:
            return value, f"{name}={value}"
    return None, "the system CA store"


def client_context() -> ssl.SSLContext:
    """A verifying TLS context with the trusted CAs; HopFailed when the bundle is unusable."""
    cafile, source = trusted_cas()
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise HopFailed(
            f"cannot load the CA bundle from {source}: {getattr(exc, 'strerror', None) or exc}",
            f"Point {ENV_CA_BUNDLE} at a readable PEM file with your CA's certificate.",
        ) from None


def tls_failure(exc: ssl.SSLError, host: str, port: int) -> HopFailed:
    """The failed hop for a TLS handshake with ``host:port`` that ended in ``exc``."""
    _, source = trusted_cas()
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        reason = exc.verify_message
        if code in _EXPIRED:
            return HopFailed(
                f"the certificate of {where} has expired ({reason})",
                "Renew the server's certificate; the client's clock must be right too.",
            )
        if code in _NOT_YET_VALID:
            return HopFailed(
                f"the certificate of {where} is not valid yet ({reason})",
                "Check the clock of this machine and of the server.",
            )
        if code in _WRONG_HOST:
            return HopFailed(
                f"the certificate of {where} is not for the host name {host} ({reason})",
                f"Use the host name the certificate names in HOKUSAI_API_URL, or issue a "
                f"certificate that includes {host}.",
            )
        if code in _UNTRUSTED:
            return HopFailed(
                f"the certificate of {where} is not signed by a trusted CA ({reason}; "
                f"trusted: {source})",
                f"Set {ENV_CA_BUNDLE} to the PEM file of the CA that signed the server's "
                "certificate.",
            )
        return HopFailed(
            f"the certificate of {where} was refused: {reason}",
            "Check the server's certificate chain (openssl s_client -connect HOST:PORT).",
        )
    if exc.reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"):
        return HopFailed(
            f"{where} does not speak TLS ({exc.reason}): it is probably a plain http port",
            "Use http:// in HOKUSAI_API_URL for a server without TLS.",
        )
    if exc.reason and "VERSION" in exc.reason:
        return HopFailed(
            f"{where} and this client share no TLS version ({exc.reason})",
            "Enable TLS 1.2 or 1.3 on the server (or its proxy).",
        )
    return HopFailed(
        f"TLS with {where} failed: {exc.reason or exc}",
        "Check the server's TLS setup, or use http:// for a server without TLS.",
    )
