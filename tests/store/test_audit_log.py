"""The audit log on a real auth store: what is written is read back, filtered and newest
first. The log's clock is set explicitly for each entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine

from hokusai import timestamps
from hokusai.db.engine import make_engine
from hokusai.db.migrate import upgrade
from hokusai.gateway.audit import AuditEntry, AuditLog

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class AuditClock:
    """The product's wall clock (``hokusai.timestamps.clock``), showing whatever time the
    test set last."""

    def __init__(self) -> None:
        self.current = START

    def __call__(self) -> datetime:
        return self.current


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> AuditClock:
    fixed = AuditClock()
    monkeypatch.setattr(timestamps, "clock", fixed)
    return fixed


@pytest.fixture
def log(engine: Engine, clock: AuditClock) -> AuditLog:
    return AuditLog(engine)


def entry(number: int, key_id: str | None = "key_a", **overrides: Any) -> AuditEntry:
    fields: dict[str, Any] = {
        "request_id": f"req-{number}",
        "key_id": key_id,
        "owner": "ana" if key_id else None,
        "action": "mlflow.write",
        "method": "POST",
        "path": "/api/2.0/mlflow/registered-models/create",
        "status": 200,
        "client": "10.0.0.7",
        **overrides,
    }
    return AuditEntry(**fields)


def record_hourly(log: AuditLog, clock: AuditClock, entries: list[AuditEntry]) -> None:
    """Record ``entries`` one hour apart, the first at START."""
    for hour, item in enumerate(entries):
        clock.current = START + timedelta(hours=hour)
        log.record(item)


def request_ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["request_id"] for row in rows]


def test_an_entry_is_read_back_as_written(log: AuditLog) -> None:
    log.record(
        AuditEntry(
            request_id="5f0c2b",
            key_id="key_0123456789abcdef",
            owner="ana",
            action="keys.revoke",
            method="POST",
            path="/api/v1/keys/key_fedcba9876543210/revoke",
            status=200,
            client="192.0.2.10",
            detail={"revoked": "key_fedcba9876543210", "reason": "rotated", "n": 3},
        )
    )
    (row,) = log.read()
    assert isinstance(row["id"], int)
    assert {k: v for k, v in row.items() if k != "id"} == {
        "at": "2030-01-01T12:00:00+00:00",
        "request_id": "5f0c2b",
        "key_id": "key_0123456789abcdef",
        "owner": "ana",
        "action": "keys.revoke",
        "method": "POST",
        "path": "/api/v1/keys/key_fedcba9876543210/revoke",
        "status": 200,
        "client": "192.0.2.10",
        "detail": {"revoked": "key_fedcba9876543210", "reason": "rotated", "n": 3},
        "workspace": None,
    }


def test_entries_without_key_or_detail(log: AuditLog) -> None:
    log.record(entry(1, key_id=None, client=None, status=401))
    (row,) = log.read()
    assert row["key_id"] is None and row["owner"] is None and row["client"] is None
    assert row["detail"] is None
    assert row["status"] == 401


def test_newest_first(log: AuditLog, clock: AuditClock) -> None:
    record_hourly(log, clock, [entry(n) for n in range(5)])
    assert request_ids(log.read()) == ["req-4", "req-3", "req-2", "req-1", "req-0"]
    ats = [datetime.fromisoformat(row["at"]) for row in log.read()]
    assert ats == sorted(ats, reverse=True)
    assert ats[-1] == START


def test_newest_first_within_the_same_instant(log: AuditLog) -> None:
    for n in range(4):
        log.record(entry(n))  # the clock does not move
    assert request_ids(log.read()) == ["req-3", "req-2", "req-1", "req-0"]


def test_filter_by_key(log: AuditLog, clock: AuditClock) -> None:
    record_hourly(
        log,
        clock,
        [entry(0, "key_a"), entry(1, "key_b"), entry(2, "key_a"), entry(3, None), entry(4)],
    )
    assert request_ids(log.read(key_id="key_a")) == ["req-4", "req-2", "req-0"]
    assert request_ids(log.read(key_id="key_b")) == ["req-1"]
    assert log.read(key_id="key_nobody") == []
    assert len(log.read()) == 5


def test_filter_since_is_inclusive(log: AuditLog, clock: AuditClock) -> None:
    record_hourly(log, clock, [entry(n) for n in range(4)])
    assert request_ids(log.read(since=START + timedelta(hours=2))) == ["req-3", "req-2"]
    assert request_ids(log.read(since=START + timedelta(hours=2, seconds=1))) == ["req-3"]
    assert len(log.read(since=START - timedelta(days=1))) == 4
    assert log.read(since=START + timedelta(hours=4)) == []


@pytest.mark.parametrize("hours", [-7, 2, 9, 14])
def test_filter_since_with_another_utc_offset(log: AuditLog, clock: AuditClock, hours: int) -> None:
    record_hourly(log, clock, [entry(n) for n in range(4)])
    since = (START + timedelta(hours=2)).astimezone(timezone(timedelta(hours=hours)))
    assert request_ids(log.read(since=since)) == ["req-3", "req-2"]


def test_a_naive_since_is_utc(log: AuditLog, clock: AuditClock) -> None:
    record_hourly(log, clock, [entry(n) for n in range(4)])
    since = (START + timedelta(hours=1)).replace(tzinfo=None)
    assert request_ids(log.read(since=since)) == ["req-3", "req-2", "req-1"]


def test_limit_keeps_the_newest(log: AuditLog, clock: AuditClock) -> None:
    record_hourly(log, clock, [entry(n) for n in range(6)])
    assert request_ids(log.read(limit=2)) == ["req-5", "req-4"]
    assert request_ids(log.read(limit=1)) == ["req-5"]
    assert len(log.read(limit=100)) == 6


def test_filters_combine(log: AuditLog, clock: AuditClock) -> None:
    record_hourly(
        log,
        clock,
        [
            entry(0, "key_a"),
            entry(1, "key_a"),
            entry(2, "key_b"),
            entry(3, "key_a"),
            entry(4, "key_a"),
            entry(5, "key_b"),
        ],
    )
    rows = log.read(key_id="key_a", since=START + timedelta(hours=1), limit=2)
    assert request_ids(rows) == ["req-4", "req-3"]
    assert all(row["key_id"] == "key_a" for row in rows)


def test_two_logs_on_one_store_see_each_other(engine: Engine, clock: AuditClock) -> None:
    first, second = AuditLog(engine), AuditLog(engine)
    first.record(entry(1))
    clock.current = START + timedelta(minutes=1)
    second.record(entry(2))
    assert request_ids(first.read()) == request_ids(second.read()) == ["req-2", "req-1"]


def test_an_empty_log(log: AuditLog) -> None:
    assert log.read() == []
    assert log.read(key_id="key_a", since=START, limit=10) == []


def test_reading_a_fresh_store_needs_no_setup_beyond_upgrade(store_url: str) -> None:
    engine = make_engine(store_url)
    try:
        upgrade(engine)
        AuditLog(engine).record(entry(1))
        assert request_ids(AuditLog(engine).read()) == ["req-1"]
    finally:
        engine.dispose()
