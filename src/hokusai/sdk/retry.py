"""The retry policy of the SDK, in one place: :meth:`RetryBudget.next_delay` decides.

Retried, within ``max_retry_time`` seconds for the whole call (waits included):

- no answer because the request never left (connect or pool timeout), and, for
  idempotent requests, a connection that broke or timed out after sending;
- the answers that mean "try again": 502, 503, 504, and 429 when the server says when
  (``Retry-After``, honoured and capped).

Retried only briefly (``BRIEF_RETRY_TIME``, a gateway that is just starting):

- connection refused, and a 502/503/504 that is not the gateway's own (a proxy in front
  of it that cannot reach it).

Never retried: what will not go away by asking again — any other 4xx, a 500, an
unknown host, a TLS failure (``https://`` against a plain HTTP port, an untrusted
certificate), an answer that is not a Hokusai gateway's — and anything the server marks
``x-should-retry: false`` (it may have applied the request). ``x-should-retry: true``
allows a retry even of a request that is not idempotent. A request that is not
idempotent is otherwise retried only when it surely was not applied: it never left, or
the gateway answered 429/503 itself.

Delays grow exponentially with full jitter; every decision is a debug log line.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from dataclasses import dataclass

log = logging.getLogger("hokusai.sdk.retry")

RETRYABLE_STATUS = frozenset({502, 503, 504})
# Statuses the gateway answers without having passed the request on (so never applied).
NOT_APPLIED_STATUS = frozenset({429, 503})
BASE_DELAY = 0.25
MAX_DELAY = 8.0
MAX_RETRY_AFTER = 30.0
# A refused connection is retried for this long at most: long enough for a gateway that is
# restarting, short enough that a wrong or unset URL fails within seconds.
BRIEF_RETRY_TIME = 3.0


class NoAnswer(enum.Enum):
    """Why an attempt got no answer."""

    REFUSED = "refused"  # nothing listens there (yet)
    PERMANENT = "permanent"  # unknown host, TLS failure: asking again cannot help
    NOT_SENT = "not_sent"  # connect or pool timeout: the request never left
    BROKEN = "broken"  # sent, then broken or timed out: it may have been applied


@dataclass(frozen=True)
class Attempt:
    """What one attempt came to: everything the retry decision looks at."""

    status: int | None = None  # the answer's status; None: no answer (see ``no_answer``)
    no_answer: NoAnswer | None = None
    retry_after: float | None = None
    should_retry: bool | None = None  # the server's ``x-should-retry`` hint, if any
    from_gateway: bool = True  # the answer is in the gateway's (MLflow's) error format
    idempotent: bool = True


def should_retry_hint(value: str | None) -> bool | None:
    """``x-should-retry``: "true" / "false" (any case); anything else is no hint."""
    if value is None:
        return None
    return {"true": True, "false": False}.get(value.strip().lower())


@dataclass
class RetryBudget:
    """Tracks one logical call's retries against its time budget."""

    max_retry_time: float
    started: float = 0.0
    attempt: int = 0

    def __post_init__(self) -> None:
        self.started = time.monotonic()

    def next_delay(self, outcome: Attempt) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        budget = _budget_for(outcome, self.max_retry_time)
        if budget is None:
            log.debug("not retrying: %s", outcome)
            return None
        self.attempt += 1
        if outcome.retry_after is not None:
            delay = min(max(outcome.retry_after, 0.0), MAX_RETRY_AFTER)
        else:
            delay = random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**self.attempt))
        remaining = budget - (time.monotonic() - self.started)
        if delay >= remaining:
            log.debug("not retrying: %.2fs left, next delay %.2fs", remaining, delay)
            return None
        log.debug("retry %d in %.2fs (%s)", self.attempt, delay, outcome)
        return delay

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return max(0.0, self.max_retry_time - self.elapsed())


def _budget_for(outcome: Attempt, max_retry_time: float) -> float | None:
    """How long the call may go on retrying after ``outcome``; None: not at all."""
    brief = min(BRIEF_RETRY_TIME, max_retry_time)
    if outcome.should_retry is False:
        return None
    if outcome.status is None:
        if outcome.no_answer is NoAnswer.PERMANENT:
            return None
        if outcome.no_answer is NoAnswer.REFUSED:
            return brief  # refused: the request never left
        if outcome.no_answer is NoAnswer.NOT_SENT:
            return max_retry_time
        may = outcome.idempotent or outcome.should_retry is True
        return max_retry_time if may else None
    status = outcome.status
    if not outcome.from_gateway:
        return brief if status in RETRYABLE_STATUS else None
    retryable = status in RETRYABLE_STATUS or (status == 429 and outcome.retry_after is not None)
    if not retryable:
        return None
    applied_for_sure_not = status in NOT_APPLIED_STATUS
    if outcome.idempotent or applied_for_sure_not or outcome.should_retry is True:
        return max_retry_time
    return None
