"""Per-key token buckets and per-address failure windows, on an explicit clock."""

from __future__ import annotations

import pytest

from hokusai.gateway.ratelimit import FailureWindow, TokenBucket, retry_after_header

# Every time below is a value of the limiter's clock (seconds), passed explicitly.
T0 = 1000.0


def test_a_full_bucket_allows_a_burst_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket(rate=4.0, burst=3)
    assert [bucket.acquire("key_a", now=T0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire("key_a", now=T0) == pytest.approx(0.25)
    # A refusal takes nothing: asking again at the same moment gives the same answer.
    assert bucket.acquire("key_a", now=T0) == pytest.approx(0.25)


def test_waiting_the_announced_time_is_enough() -> None:
    bucket = TokenBucket(rate=4.0, burst=1)
    assert bucket.acquire("key_a", now=T0) == 0.0
    wait = bucket.acquire("key_a", now=T0)
    assert wait == pytest.approx(0.25)
    assert bucket.acquire("key_a", now=T0 + wait / 2) > 0
    assert bucket.acquire("key_a", now=T0 + wait) == 0.0


def test_the_sustained_rate_is_the_configured_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=2)
    allowed = 0
    # Ten seconds of a client asking every 0.125 s: the burst, then two per second.
    for step in range(81):
        if bucket.acquire("key_a", now=T0 + step * 0.125) == 0.0:
            allowed += 1
    assert allowed == 2 + 2 * 10


def test_refill_is_capped_at_the_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=3)
    assert bucket.acquire("key_a", now=T0) == 0.0
    later = T0 + 3600
    assert [bucket.acquire("key_a", now=later) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire("key_a", now=later) > 0


def test_partial_refill_gives_a_partial_wait() -> None:
    bucket = TokenBucket(rate=2.0, burst=1)
    assert bucket.acquire("key_a", now=T0) == 0.0
    # A quarter of a second refills half a token: half a token, a quarter second, to go.
    assert bucket.acquire("key_a", now=T0 + 0.25) == pytest.approx(0.25)


def test_keys_have_separate_buckets() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.acquire("key_a", now=T0) == 0.0
    assert bucket.acquire("key_a", now=T0) > 0
    assert bucket.acquire("key_b", now=T0) == 0.0
    assert bucket.acquire("key_b", now=T0) > 0


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_a_rate_of_zero_disables_the_limit(rate: float) -> None:
    bucket = TokenBucket(rate=rate, burst=0)
    assert all(bucket.acquire("key_a", now=T0) == 0.0 for _ in range(1000))


def test_failures_below_the_limit_do_not_block() -> None:
    window = FailureWindow(limit=3)
    assert window.blocked_for("10.0.0.1", now=T0) == 0.0
    window.record_failure("10.0.0.1", now=T0)
    window.record_failure("10.0.0.1", now=T0 + 1)
    assert window.blocked_for("10.0.0.1", now=T0 + 2) == 0.0


def test_reaching_the_limit_blocks_until_the_window_ends() -> None:
    window = FailureWindow(limit=3)
    for offset in (0, 1, 2):
        window.record_failure("10.0.0.1", now=T0 + offset)
    # The window started with the first failure and lasts a minute.
    assert window.blocked_for("10.0.0.1", now=T0 + 2) == pytest.approx(58.0)
    assert window.blocked_for("10.0.0.1", now=T0 + 59.5) == pytest.approx(0.5)
    assert window.blocked_for("10.0.0.1", now=T0 + 60) == 0.0
    assert window.blocked_for("10.0.0.1", now=T0 + 600) == 0.0


def test_a_new_window_starts_from_zero() -> None:
    window = FailureWindow(limit=2)
    window.record_failure("10.0.0.1", now=T0)
    window.record_failure("10.0.0.1", now=T0 + 10)
    assert window.blocked_for("10.0.0.1", now=T0 + 10) > 0
    window.record_failure("10.0.0.1", now=T0 + 60)
    assert window.blocked_for("10.0.0.1", now=T0 + 60) == 0.0
    window.record_failure("10.0.0.1", now=T0 + 61)
    assert window.blocked_for("10.0.0.1", now=T0 + 61) == pytest.approx(59.0)


def test_addresses_are_counted_separately() -> None:
    window = FailureWindow(limit=1)
    window.record_failure("10.0.0.1", now=T0)
    assert window.blocked_for("10.0.0.1", now=T0) > 0
    assert window.blocked_for("10.0.0.2", now=T0) == 0.0


def test_a_limit_of_zero_never_blocks() -> None:
    window = FailureWindow(limit=0)
    for step in range(100):
        window.record_failure("10.0.0.1", now=T0 + step * 0.01)
    assert window.blocked_for("10.0.0.1", now=T0 + 1) == 0.0


@pytest.mark.parametrize(
    ("seconds", "header"),
    [(0.0, "1"), (0.01, "1"), (1.0, "1"), (1.01, "2"), (58.0, "58"), (59.5, "60")],
)
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == {"Retry-After": header}
