"""What the gateway learns about one request while answering it (for its log line, its
metrics and its audit row)."""

from __future__ import annotations

from dataclasses import dataclass

from hokusai.keys.records import KeyRecord


@dataclass
class Exchange:
    """What the gateway learns about one request while answering it."""

    request_id: str
    method: str
    path: str
    client: str
    started_at: float
    status: int = 0
    response_started: bool = False
    response_complete: bool = False
    # A 5xx that was not in the error format was answered with one instead.
    answer_replaced: bool = False
    route_class: str = "other"
    key: KeyRecord | None = None
    # The workspace the request acts in, once the key is known.
    workspace: str | None = None
    # Authenticated by a browser session's cookie (not a key header): writes must be
    # same-origin.
    via_session: bool = False
    upstream_seconds: float | None = None
    error_reason: str | None = None
