"""The log format: one JSON object per line, with anything key-shaped redacted.

Its own module because every process logs this way — the gateway, ``hokusai serve``, the
webhook workers — and none of them should load the gateway to do it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from hokusai.keys.format import KEY_LIKE


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra={"fields": {...}}`` adds fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def _literal_or_encoded(text: str) -> str:
    """A pattern for ``text`` with any character also percent-encoded, once or twice."""
    return "".join(
        f"(?:{re.escape(c)}|%(?:25)?{ord(c) >> 4:X}[{ord(c) & 15:X}{ord(c) & 15:x}])" for c in text
    )


# KEY_LIKE, with any of its characters percent-encoded (``hk%5Flive%5F…``, ``%68k_…``).
_KEY_LIKE_ENCODED = re.compile(
    _literal_or_encoded("hk_")
    + f"(?:{_literal_or_encoded('live')}|{_literal_or_encoded('test')})"
    + _literal_or_encoded("_")
    + r"(?:[0-9A-Za-z]|%(?:25)?(?:3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa])){8,}"
)


def redact(text: str) -> str:
    """Replace anything that looks like an API key, plain or percent-encoded: no key ever
    reaches a log or the audit."""
    text = KEY_LIKE.sub(lambda m: m.group(0)[:14] + "…[redacted]", text)
    if "%" in text:
        text = _KEY_LIKE_ENCODED.sub("hk_…[redacted]", text)
    return text


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("hokusai")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
