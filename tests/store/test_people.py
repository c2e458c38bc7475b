"""A person signed in with single sign-on is one row, however many first sign-ins race.
On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import Engine, func, select

from hokusai.db.schema import api_keys
from hokusai.keys import people
from hokusai.keys.records import KeyRecord
from hokusai.keys.scopes import Scope


def test_simultaneous_first_sign_ins_make_one_row(engine: Engine) -> None:
    person = people.Person(f"https://idp.example|{uuid.uuid4().hex}", "Ana Lovelace", "ana@x")
    start = threading.Barrier(4)
    signed_in: list[KeyRecord] = []
    failures: list[BaseException] = []

    def sign_in() -> None:
        start.wait(timeout=10)
        try:
            signed_in.append(
                people.sign_in(
                    engine,
                    lambda s: "h" + uuid.uuid4().hex,
                    person,
                    scope=Scope.READ,
                    workspace="default",
                )
            )
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=sign_in) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert len({record.id for record in signed_in}) == 1
    with engine.connect() as conn:
        rows = conn.execute(
            select(func.count()).select_from(api_keys).where(api_keys.c.subject == person.subject)
        ).scalar_one()
    assert rows == 1
