"""The write queue: writes take their turns in arrival order, never more than allowed at
once, and one that waits too long is refused unsent with a 503."""

from __future__ import annotations

import anyio

from hokusai.gateway.errors import GatewayError
from hokusai.gateway.write_queue import WriteQueue


def test_writes_take_their_turns_in_arrival_order_one_at_a_time() -> None:
    queue = WriteQueue(1, timeout=5)
    order: list[int] = []
    inside = 0
    most_inside = 0

    async def write(number: int) -> None:
        nonlocal inside, most_inside
        async with queue.turn():
            inside += 1
            most_inside = max(most_inside, inside)
            order.append(number)
            await anyio.sleep(0.005)
            inside -= 1

    async def burst() -> None:
        async with anyio.create_task_group() as group:
            for number in range(20):
                group.start_soon(write, number)
                await anyio.sleep(0)  # number n is queued before number n + 1 arrives

    anyio.run(burst)
    assert order == list(range(20))
    assert most_inside == 1
    assert queue.waiting == 0


def test_concurrency_bounds_the_writes_at_once() -> None:
    queue = WriteQueue(3, timeout=5)
    inside = 0
    most_inside = 0

    async def write() -> None:
        nonlocal inside, most_inside
        async with queue.turn():
            inside += 1
            most_inside = max(most_inside, inside)
            await anyio.sleep(0.01)
            inside -= 1

    async def burst() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(12):
                group.start_soon(write)

    anyio.run(burst)
    assert most_inside == 3


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


def test_no_limit_never_waits() -> None:
    queue = WriteQueue(0, timeout=0.01)
    inside = 0
    most_inside = 0

    async def write() -> None:
        nonlocal inside, most_inside
        async with queue.turn():
            inside += 1
            most_inside = max(most_inside, inside)
            await anyio.sleep(0.05)
            inside -= 1

    async def burst() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(50):
                group.start_soon(write)

    anyio.run(burst)
    assert most_inside == 50
