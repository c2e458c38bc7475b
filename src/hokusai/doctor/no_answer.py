"""What a doctor says when an HTTP request got no answer: one sentence per way it failed.

A hung server is the case that matters most: the connection is accepted (the kernel does
that) and then nothing comes back. That reads "accepted the connection but did not answer
in N s", never an ``httpx.ReadTimeout`` traceback.
"""

from __future__ import annotations

import httpx

from hokusai.doctor.report import HopFailed


def no_answer(exc: httpx.HTTPError, who: str, url: str, timeout: float, fix: str) -> HopFailed:
    """The failed hop for ``exc``, raised by a request from ``who`` at ``url``."""
    if isinstance(exc, httpx.ReadTimeout):
        detail = f"{who} accepted the connection but did not answer in {timeout:g} s ({url})"
    elif isinstance(exc, httpx.ConnectTimeout):
        detail = f"{who} at {url} did not accept a connection within {timeout:g} s"
    elif isinstance(exc, httpx.TimeoutException):
        detail = f"{who} at {url} timed out after {timeout:g} s ({type(exc).__name__})"
    elif isinstance(exc, httpx.RemoteProtocolError):
        detail = f"{who} at {url} closed the connection without a complete answer"
    elif isinstance(exc, httpx.ConnectError):
        detail = f"{who} at {url} does not answer: {exc or 'connection failed'}"
    else:
        detail = f"{who} at {url} does not answer: {type(exc).__name__}: {exc}"
    return HopFailed(detail, fix)
