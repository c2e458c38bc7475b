"""The write queue: writes take their turns in arrival order, never more than allowed at
once, and one that waits too long is refused unsent with a 503."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from hokusai.gateway.errors import GatewayError
from hokusai.gateway.write_queue import WriteQueue


@dataclass
class Burst:
    """``count`` writes started at once, each holding its turn for ``hold`` seconds."""

    queue: WriteQueue
    count: int
    hold: float
    order: list[int] = field(default_factory=list)
    inside: int = 0
    most_inside: int = 0

    async def write(self, number: int) -> None:
        async with self.queue.turn():
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.order.append(number)
            await anyio.sleep(self.hold)
            self.inside -= 1

    async def run(self) -> None:
        async with anyio.create_task_group() as group:
            for number in range(self.count):
                group.start_soon(self.write, number)
                await anyio.sleep(0)  # number n is queued before number n + 1 arrives

    def __call__(self) -> Burst:
        anyio.run(self.run)
        return self


def test_writes_take_their_turns_in_arrival_order_one_at_a_time() -> None:
    burst = Burst(WriteQueue(1, timeout=5), count=20, hold=0.005)()
    assert burst.order == list(range(20))
    assert burst.most_inside == 1
    assert burst.queue.waiting == 0


def test_concurrency_bounds_the_writes_at_once() -> None:
    assert Burst(WriteQueue(3, timeout=5), count=12, hold=0.01)().most_inside == 3


def test_no_limit_never_waits() -> None:
    assert Burst(WriteQueue(0, timeout=0.01), count=50, hold=0.05)().most_inside == 50


def test_a_write_that_waits_too_long_is_refused_unsent_and_holds_nothing() -> None:
    queue = WriteQueue(1, timeout=0.05)
    refused: list[GatewayError] = []
    sent_after: list[str] = []

    async def holder(release: anyio.Event) -> None:
        async with queue.turn():
            await release.wait()

    async def late() -> None:
        try:
            async with queue.turn():
                sent_after.append("the late write")
        except GatewayError as error:
            refused.append(error)

    async def scenario() -> None:
        release = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(holder, release)
            await anyio.sleep(0.01)
            await late()
            release.set()
        # The refused write left the turn free: the next one goes through at once.
        with anyio.fail_after(1):
            async with queue.turn():
                sent_after.append("the next write")

    anyio.run(scenario)
    (error,) = refused
    assert error.status == 503
    assert error.headers == {"Retry-After": "1"}
    assert "was not sent" in error.message
    assert sent_after == ["the next write"]
    assert queue.waiting == 0
