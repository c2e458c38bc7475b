"""The retry policy of the SDK, in one place.

Retried: no answer at all (connection refused or reset, timeouts) and the answers that
mean "try again": 502, 503, 504, and 429 when the server says when (``Retry-After``).
Never retried: any other 4xx — a bad key does not get better by asking again. Delays
grow exponentially with full jitter, and the whole operation is bounded by
``max_retry_time`` seconds, retries and waits included.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

log = logging.getLogger("hokusai.sdk.retry")

RETRYABLE_STATUS = frozenset({502, 503, 504})
BASE_DELAY = 0.25
MAX_DELAY = 8.0
MAX_RETRY_AFTER = 30.0


@dataclass
class RetryBudget:
    """Tracks one logical call's retries against its time budget."""

    max_retry_time: float
    started: float = 0.0
    attempt: int = 0

    def __post_init__(self) -> None:
        self.started = time.monotonic()

    def next_delay(self, *, status: int | None, retry_after: float | None) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now.

        ``status`` is None when no answer arrived (connection error or timeout).
        """
        if (
            status is not None
            and status not in RETRYABLE_STATUS
            and not (status == 429 and retry_after is not None)
        ):
            return None
        self.attempt += 1
        if retry_after is not None:
            delay = min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        else:
            delay = random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**self.attempt))
        remaining = self.max_retry_time - (time.monotonic() - self.started)
        if delay >= remaining:
            log.debug("not retrying: %.2fs left, next delay %.2fs", remaining, delay)
            return None
        log.debug("retry %d in %.2fs (status %s)", self.attempt, delay, status)
        return delay

    def remaining(self) -> float:
        return max(0.0, self.max_retry_time - (time.monotonic() - self.started))
