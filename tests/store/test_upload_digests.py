"""The digests of uploads as the gateway records them, on SQLite and PostgreSQL: a later
upload replaces a path's digest, forgetting a directory forgets only what lies under it,
and paths holding LIKE's wildcards or differing only in case are kept apart."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from hokusai.gateway import upload_digests
from hokusai.integrity import FileDigest

AT = datetime(2026, 12, 7, tzinfo=UTC)


def digest(byte: str, size: int = 3) -> FileDigest:
    return FileDigest(byte * 64, size)


def test_a_later_upload_replaces_the_digest_of_its_path(engine: Engine) -> None:
    upload_digests.record(engine, "team-a", "1/models/m-1/artifacts/MLmodel", digest("a"), AT)
    upload_digests.record(engine, "team-a", "1/models/m-1/artifacts/MLmodel", digest("b", 9), AT)
    assert upload_digests.recorded_under(engine, "team-a", "1/models/m-1/artifacts") == {
        "MLmodel": digest("b", 9)
    }


def test_what_lies_under_a_directory_and_nothing_beside_it(engine: Engine) -> None:
    under = {
        "m/artifacts/MLmodel": digest("1"),
        "m/artifacts/data/model.skops": digest("2"),
    }
    beside = {
        "m/artifacts.manifest.json": digest("3"),  # a sibling, not inside
        "m/artifactsX/MLmodel": digest("4"),
        "m/ARTIFACTS/MLmodel": digest("5"),  # SQLite's LIKE would take this as a match
        "m/art%facts/MLmodel": digest("6"),
    }
    for path, value in {**under, **beside}.items():
        upload_digests.record(engine, "team-a", path, value, AT)
    upload_digests.record(engine, "team-b", "m/artifacts/MLmodel", digest("7"), AT)

    assert upload_digests.recorded_under(engine, "team-a", "m/artifacts") == {
        "MLmodel": digest("1"),
        "data/model.skops": digest("2"),
    }
    assert upload_digests.recorded_under(engine, "team-a", "m/art%facts") == {
        "MLmodel": digest("6")
    }
    assert upload_digests.recorded_under(engine, "team-a", "m/art_facts") == {}

    upload_digests.forget(engine, "team-a", "m/artifacts")
    assert upload_digests.recorded_under(engine, "team-a", "m/artifacts") == {}
    assert upload_digests.recorded_under(engine, "team-a", "m/ARTIFACTS") == {
        "MLmodel": digest("5")
    }
    assert upload_digests.recorded_under(engine, "team-a", "m/artifactsX") == {
        "MLmodel": digest("4")
    }
    assert upload_digests.recorded_under(engine, "team-a", "m") == {
        "artifacts.manifest.json": digest("3"),
        "artifactsX/MLmodel": digest("4"),
        "ARTIFACTS/MLmodel": digest("5"),
        "art%facts/MLmodel": digest("6"),
    }
    # Another workspace's files are its own.
    assert upload_digests.recorded_under(engine, "team-b", "m/artifacts") == {
        "MLmodel": digest("7")
    }


def test_forgetting_one_file(engine: Engine) -> None:
    upload_digests.record(engine, "team-a", "m/a/one", digest("1"), AT)
    upload_digests.record(engine, "team-a", "m/a/one.bak", digest("2"), AT)
    upload_digests.forget(engine, "team-a", "m/a/one")
    assert upload_digests.recorded_under(engine, "team-a", "m/a") == {"one.bak": digest("2")}
