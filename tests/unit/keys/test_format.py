"""The key format: generation, parsing, the checksum and the display prefix."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from hokusai.keys.format import (
    ALPHABET,
    CHECKSUM_LENGTH,
    DISPLAY_LENGTH,
    KEY_LIKE,
    KEY_PATTERN,
    RANDOM_LENGTH,
    MalformedKeyError,
    checksum,
    display_prefix,
    generate_key,
    parse_key,
)

KEY_LENGTH = len("hk_live_") + RANDOM_LENGTH + CHECKSUM_LENGTH
# Characters a mistyped or mangled key may plausibly contain besides base62.
NON_BASE62 = "_-+/=. \"'\n%é"


@pytest.mark.parametrize("env", ["live", "test"])
def test_generated_keys_parse(env: str) -> None:
    for _ in range(50):
        key = generate_key(env)
        assert len(key) == KEY_LENGTH
        assert key.startswith(f"hk_{env}_")
        assert KEY_PATTERN.match(key)
        parsed = parse_key(key)
        assert parsed.env == env
        assert parsed.display_prefix == key[: len(f"hk_{env}_") + DISPLAY_LENGTH]


def test_generated_keys_differ() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    # The random part uses the whole alphabet, not a corner of it.
    used = set("".join(k[len("hk_live_") : -CHECKSUM_LENGTH] for k in keys))
    assert len(used) > 55


def test_default_env_is_live() -> None:
    assert generate_key().startswith("hk_live_")


def test_unknown_env_is_refused_at_generation() -> None:
    with pytest.raises(ValueError, match="live, test"):
        generate_key("prod")


def test_checksum_is_the_base62_crc_of_the_body() -> None:
    key = generate_key()
    body, check = key[:-CHECKSUM_LENGTH], key[-CHECKSUM_LENGTH:]
    assert checksum(body) == check
    assert len(checksum("")) == CHECKSUM_LENGTH  # CRC32 of "" is 0: zero-padded
    assert checksum("") == "0" * CHECKSUM_LENGTH
    assert all(c in ALPHABET for c in checksum("hk_live_x"))


@pytest.mark.parametrize("seed", range(4))
def test_every_single_character_substitution_is_caught(seed: int) -> None:
    """A key with any one character replaced by any other is refused: by the checksum when
    the replacement is a letter or digit inside the key's body, by the pattern otherwise."""
    key = generate_key("live" if seed % 2 == 0 else "test")
    body_start = len("hk_live_")
    checked = 0
    for position, original in enumerate(key):
        for replacement in ALPHABET + NON_BASE62:
            if replacement == original:
                continue
            altered = key[:position] + replacement + key[position + 1 :]
            with pytest.raises(MalformedKeyError) as caught:
                parse_key(altered)
            if position >= body_start and replacement in ALPHABET:
                assert "checksum" in str(caught.value), (position, replacement)
            checked += 1
    assert checked == len(key) * (len(ALPHABET) + len(NON_BASE62)) - len(key)


@pytest.mark.parametrize("seed", range(4))
def test_adjacent_transpositions_are_caught(seed: int) -> None:
    key = generate_key()
    swapped_any = False
    for i in range(len("hk_live_"), len(key) - 1):
        if key[i] == key[i + 1]:
            continue
        swapped = key[:i] + key[i + 1] + key[i] + key[i + 2 :]
        with pytest.raises(MalformedKeyError, match="checksum"):
            parse_key(swapped)
        swapped_any = True
    assert swapped_any


def test_mistyped_key_message_says_copy_again() -> None:
    key = generate_key()
    last = key[-1]
    mistyped = key[:-1] + ("a" if last != "a" else "b")
    with pytest.raises(MalformedKeyError) as caught:
        parse_key(mistyped)
    message = str(caught.value)
    assert "checksum does not match" in message
    assert "mistyped" in message
    assert "copy it again" in message
    assert mistyped not in message and key not in message


@pytest.mark.parametrize(
    "make",
    [
        lambda k: "hk_prod_" + k[len("hk_live_") :],
        lambda k: "HK_LIVE_" + k[len("hk_live_") :],
        lambda k: "hk-live-" + k[len("hk_live_") :],
        lambda k: "sk-" + k[len("hk_live_") :],
        lambda k: k[len("hk_live_") :],
        lambda k: " " + k,
        lambda k: "Bearer " + k,
        lambda k: "",
        lambda k: "hk_",
    ],
    ids=[
        "other-env",
        "upper-case",
        "dashes",
        "other-vendor",
        "no-prefix",
        "leading-space",
        "with-scheme",
        "empty",
        "only-hk",
    ],
)
def test_wrong_prefix_names_the_right_ones(make: Callable[[str], str]) -> None:
    text = make(generate_key())
    with pytest.raises(MalformedKeyError) as caught:
        parse_key(text)
    message = str(caught.value)
    assert "does not start with hk_live_ or hk_test_" in message
    assert "hokusai keys create" in message


@pytest.mark.parametrize("cut", [1, 5, CHECKSUM_LENGTH, RANDOM_LENGTH, KEY_LENGTH - 8])
def test_truncated_key_is_called_truncated(cut: int) -> None:
    key = generate_key("test")
    with pytest.raises(MalformedKeyError) as caught:
        parse_key(key[:-cut])
    message = str(caught.value)
    assert "wrong length" in message
    assert f"expected hk_<env>_ and {RANDOM_LENGTH + CHECKSUM_LENGTH}" in message
    assert f"got {RANDOM_LENGTH + CHECKSUM_LENGTH - cut}" in message
    assert "truncated" in message


@pytest.mark.parametrize("extra", ["a", "0Z", "abcdef"])
def test_overlong_key_has_extra_characters(extra: str) -> None:
    key = generate_key()
    with pytest.raises(MalformedKeyError) as caught:
        parse_key(key + extra)
    message = str(caught.value)
    assert "wrong length" in message
    assert f"got {RANDOM_LENGTH + CHECKSUM_LENGTH + len(extra)}" in message
    assert "extra characters" in message
    assert "truncated" not in message


@pytest.mark.parametrize("stray", ["-", "_", " ", '"', "\n", "é", "/", "="])
@pytest.mark.parametrize("where", ["start", "middle", "end", "appended"])
def test_non_base62_character_is_named(stray: str, where: str) -> None:
    key = generate_key()
    body_start = len("hk_live_")
    if where == "start":
        text = key[:body_start] + stray + key[body_start + 1 :]
    elif where == "middle":
        text = key[:20] + stray + key[21:]
    elif where == "end":
        text = key[:-1] + stray
    else:
        text = key + stray
    with pytest.raises(MalformedKeyError) as caught:
        parse_key(text)
    message = str(caught.value)
    assert repr(stray) in message
    assert "not a letter or digit" in message
    assert "truncated" not in message


def test_display_prefix_shows_env_and_six_characters() -> None:
    for env in ("live", "test"):
        key = generate_key(env)
        prefix = display_prefix(key)
        assert prefix == f"hk_{env}_" + key[len(f"hk_{env}_") :][:DISPLAY_LENGTH]
        assert len(prefix) == len("hk_live_") + DISPLAY_LENGTH
        # The prefix gives away a small, fixed part of the key and nothing of the checksum.
        assert key[-CHECKSUM_LENGTH:] not in prefix


def test_key_like_finds_keys_inside_text() -> None:
    live, test = generate_key("live"), generate_key("test")
    text = (
        f"export HOKUSAI_API_KEY={live}\n"
        f'curl -H "Authorization: Bearer {test}" https://registry.example\n'
        f"GET /api/mlflow/runs/get?token={live}&run_id=1"
    )
    found = [m.group() for m in KEY_LIKE.finditer(text)]
    assert found == [live, test, live]


def test_key_like_finds_truncated_and_mistyped_keys() -> None:
    key = generate_key()
    assert KEY_LIKE.search(f"key={key[:20]}") is not None
    mistyped = key[:-1] + ("a" if key[-1] != "a" else "b")
    match = KEY_LIKE.search(f"({mistyped})")
    assert match is not None and match.group() == mistyped


@pytest.mark.parametrize(
    "text",
    [
        "hk_live_short",  # fewer than 8 characters after the prefix
        "hk_prod_AbCdEfGhIjKlMnOp",
        "a run named hk_live_ and nothing else",
        "sk-AbCdEfGhIjKlMnOpQrStUvWx",
        "model hk-live-AbCdEfGhIjKl",
    ],
)
def test_key_like_ignores_text_that_is_not_a_key(text: str) -> None:
    assert KEY_LIKE.search(text) is None


def test_key_pattern_is_anchored() -> None:
    key = generate_key()
    assert KEY_PATTERN.match(key)
    assert not KEY_PATTERN.match(" " + key)
    assert not KEY_PATTERN.match(key + "\n")
    assert not KEY_PATTERN.match(key + "x")
    assert re.fullmatch(KEY_PATTERN, key)
