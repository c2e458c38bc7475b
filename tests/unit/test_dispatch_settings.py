"""The dispatcher's and the dispatch-lag settings are read from settings.py (HOKUSAI_*)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hokusai.settings import Settings
from hokusai.webhooks.worker import dispatcher_settings


def test_dispatcher_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "HOKUSAI_DISPATCH_BATCH": "20",
        "HOKUSAI_DISPATCH_CONCURRENCY": "4",
        "HOKUSAI_DISPATCH_POLL_INTERVAL": "0.5",
        "HOKUSAI_WEBHOOK_TIMEOUT": "3",
        "HOKUSAI_MAX_DISPATCH_LAG": "60",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    dispatch = dispatcher_settings(settings)
    assert (dispatch.batch, dispatch.concurrency, dispatch.poll_interval) == (20, 4, 0.5)
    # Five waves of four, plus one, at 3 s each, and room for the store.
    assert dispatch.lease == timedelta(seconds=(5 + 1) * 3 + 10)
    assert settings.max_dispatch_lag == 60
    monkeypatch.setenv("HOKUSAI_DISPATCH_LEASE_SECONDS", "90")
    assert dispatcher_settings(Settings()).lease == timedelta(seconds=90)


def test_defaults_are_the_ones_documented() -> None:
    settings = Settings()
    assert (settings.dispatch_batch, settings.dispatch_concurrency) == (200, 64)
    assert (settings.dispatch_poll_interval, settings.dispatch_lease_seconds) == (0.1, None)
    assert settings.max_dispatch_lag == 300.0
    for field in ("dispatch_batch", "dispatch_concurrency", "max_dispatch_lag"):
        assert Settings.model_fields[field].description


def test_a_batch_of_zero_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOKUSAI_DISPATCH_BATCH", "0")
    with pytest.raises(ValueError, match="dispatch_batch"):
        Settings()
