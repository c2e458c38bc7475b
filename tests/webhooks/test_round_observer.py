"""The dispatcher's round observer: told every round's timings, the empty ones included,
with the attempts of the round counted."""

from __future__ import annotations

import secrets

import anyio
import pytest
from sqlalchemy import Engine

from hokusai.admin.actor import Actor, Origin
from hokusai.admin.webhooks import WebhookAdmin
from hokusai.webhooks.dispatcher import Dispatcher, DispatcherSettings, RoundTimings
from hokusai.webhooks.events import Event
from hokusai.webhooks.outbox import emit
from hokusai.webhooks.signing import SecretBox
from tests.webhooks.receiver import Answer, Receiver, always

pytestmark = pytest.mark.integration

EVENTS = 5


def test_the_observer_is_told_each_rounds_timings(engine: Engine, receiver: Receiver) -> None:
    box = SecretBox(secrets.token_bytes(32))
    settings = DispatcherSettings(allow_private=True)
    receiver.on("/observed", always(Answer()))
    WebhookAdmin(engine, box, settings).add(
        Actor.operator(Origin.command("tests")), receiver.url("/observed")
    )
    emit(
        engine,
        [
            Event("model_version.tag_set", {"name": f"model-{i}", "version": "1", "value": i})
            for i in range(EVENTS)
        ],
    )
    rounds: list[RoundTimings] = []
    dispatcher = Dispatcher(engine, box, settings, observer=rounds.append)

    async def two_rounds() -> list[int]:
        return [await dispatcher.run_once(), await dispatcher.run_once()]

    assert anyio.run(two_rounds) == [EVENTS, 0]
    full, empty = rounds
    assert (full.claimed, full.attempted) == (EVENTS, EVENTS)
    assert full.attempts > 0 and full.record > 0
    assert full.whole_round >= full.claim + full.record
    assert (empty.claimed, empty.attempted, empty.attempts) == (0, 0, 0.0)
    assert empty.whole_round == empty.claim > 0
    assert len(receiver.wait_for("/observed", EVENTS)) == EVENTS
