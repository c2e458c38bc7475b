"""The digest manifest on its own: what it records, what it refuses, how it names files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hokusai.integrity import (
    FileDigest,
    IntegrityError,
    Manifest,
    check_manifest_digest,
    manifest_of,
    manifest_path,
    verify_directory,
)


def model_dir(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "data" / "model.skops").write_bytes(bytes(range(256)) * 10)
    return root


def test_the_manifest_names_every_file_with_its_digest_and_size(tmp_path: Path) -> None:
    manifest = manifest_of(model_dir(tmp_path / "m"))
    assert sorted(manifest.files) == ["MLmodel", "data/model.skops"]
    assert manifest.files["data/model.skops"].size == 2560
    # The SHA-256 of 0..255 repeated ten times, computed independently of the module.
    import hashlib

    expected = hashlib.sha256(bytes(range(256)) * 10).hexdigest()
    assert manifest.files["data/model.skops"].sha256 == expected
    verify_directory(tmp_path / "m", manifest, "the model")  # unchanged: no error


def test_the_json_is_canonical_and_round_trips(tmp_path: Path) -> None:
    manifest = manifest_of(model_dir(tmp_path / "m"))
    data = manifest.to_json()
    assert b" " not in data and b"\n" not in data
    assert Manifest.from_json(data) == manifest
    assert Manifest.from_json(data).digest == manifest.digest
    # Another order of the same entries gives the same bytes.
    reordered = Manifest(dict(reversed(list(manifest.files.items()))))
    assert reordered.to_json() == data


def test_every_difference_is_named(tmp_path: Path) -> None:
    root = model_dir(tmp_path / "m")
    manifest = manifest_of(root)
    (root / "MLmodel").write_text("flavors: {python_function: {}}\n")
    (root / "data" / "model.skops").unlink()
    (root / "data" / "payload.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(IntegrityError) as refused:
        verify_directory(root, manifest, "version 3 of model 'LSCOR'")
    problems = refused.value.problems
    assert problems[0].startswith("MLmodel has SHA-256")
    assert problems[1] == "data/model.skops is missing"
    assert problems[2] == "data/payload.pkl is not in the manifest"
    assert str(refused.value).startswith("version 3 of model 'LSCOR' failed its integrity check")


def test_a_symbolic_link_is_refused_even_to_the_same_bytes(tmp_path: Path) -> None:
    root = model_dir(tmp_path / "m")
    manifest = manifest_of(root)
    outside = tmp_path / "outside"
    outside.write_bytes((root / "MLmodel").read_bytes())
    (root / "MLmodel").unlink()
    (root / "MLmodel").symlink_to(outside)
    with pytest.raises(IntegrityError, match="MLmodel is a symbolic link"):
        verify_directory(root, manifest, "the model")


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"[]",
        json.dumps({"format": "other/1", "files": {}}).encode(),
        json.dumps({"format": "hokusai-manifest/1"}).encode(),
        json.dumps(
            {
                "format": "hokusai-manifest/1",
                "files": {"../etc/passwd": {"sha256": "0" * 64, "size": 1}},
            }
        ).encode(),
        json.dumps(
            {"format": "hokusai-manifest/1", "files": {"/abs": {"sha256": "0" * 64, "size": 1}}}
        ).encode(),
        json.dumps(
            {"format": "hokusai-manifest/1", "files": {"a//b": {"sha256": "0" * 64, "size": 1}}}
        ).encode(),
        json.dumps(
            {"format": "hokusai-manifest/1", "files": {"a": {"sha256": "xyz", "size": 1}}}
        ).encode(),
        json.dumps(
            {"format": "hokusai-manifest/1", "files": {"a": {"sha256": "g" * 64, "size": 1}}}
        ).encode(),
    ],
    ids=[
        "not-json",
        "a-list",
        "other-format",
        "no-files",
        "parent",
        "absolute",
        "unclean",
        "short",
        "not-hex",
    ],
)
def test_what_is_not_a_manifest_is_refused(document: bytes) -> None:
    with pytest.raises(IntegrityError, match="it is not a manifest"):
        Manifest.from_json(document, subject="version 1 of model 'm'")


def test_a_manifest_must_have_the_recorded_digest(tmp_path: Path) -> None:
    manifest = manifest_of(model_dir(tmp_path / "m"))
    check_manifest_digest(manifest, manifest.digest, "the model")
    other = Manifest({**manifest.files, "extra": FileDigest("0" * 64, 0)})
    with pytest.raises(IntegrityError, match="its manifest's digest is sha256:"):
        check_manifest_digest(other, manifest.digest, "the model")


def test_the_manifest_lies_beside_the_model() -> None:
    assert manifest_path("1/abc/artifacts/model") == "1/abc/artifacts/model.manifest.json"
    assert manifest_path("1/abc/artifacts/model/") == "1/abc/artifacts/model.manifest.json"


@given(
    st.dictionaries(
        st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8}){0,2}", fullmatch=True),
        st.tuples(st.binary(min_size=32, max_size=32), st.integers(0, 2**40)),
        max_size=8,
    )
)
def test_any_manifest_survives_its_json(entries: dict[str, tuple[bytes, int]]) -> None:
    manifest = Manifest({p: FileDigest(d.hex(), size) for p, (d, size) in entries.items()})
    assert Manifest.from_json(manifest.to_json()) == manifest
