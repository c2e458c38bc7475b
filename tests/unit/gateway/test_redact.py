"""No key reaches a log or the audit, plain or percent-encoded."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from hokusai.keys.format import generate_key
from hokusai.logs import redact

KEY = generate_key()


@pytest.mark.parametrize(
    "form",
    [
        KEY,
        KEY.replace("_", "%5F"),
        KEY.replace("_", "%5f"),
        KEY.replace("_", "%255F"),
        quote(KEY, safe="").replace("h", "%68", 1),
        "".join(f"%{ord(c):02X}" for c in KEY),
        "".join(f"%25{ord(c):02x}" for c in KEY),
    ],
    # Named, not shown: the key is new in every process (so the ids must not depend on it).
    ids=["plain", "%5F", "%5f", "%255F", "%68", "all-encoded", "all-twice-encoded"],
)
def test_every_form_of_a_key_is_redacted(form: str) -> None:
    text = redact(f"GET /traces/{form}?x=1")
    assert KEY[8:16] not in text and form not in text
    assert "[redacted]" in text and text.endswith("?x=1")


def test_other_text_is_left_alone() -> None:
    text = "/api/2.0/mlflow/runs/get?run_id=%41bc hk_lives hk_live_short"
    assert redact(text) == text
