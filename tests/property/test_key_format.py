"""Properties of the API key format: what the parser accepts is exactly what was issued."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hokusai.keys.format import (
    ALPHABET,
    CHECKSUM_LENGTH,
    ENVIRONMENTS,
    KEY_LIKE,
    RANDOM_LENGTH,
    MalformedKeyError,
    checksum,
    generate_key,
    parse_key,
)

random_parts = st.text(alphabet=ALPHABET, min_size=RANDOM_LENGTH, max_size=RANDOM_LENGTH)
environments = st.sampled_from(ENVIRONMENTS)


@st.composite
def valid_keys(draw: st.DrawFn) -> str:
    body = f"hk_{draw(environments)}_{draw(random_parts)}"
    return body + checksum(body)


@given(env=environments)
def test_every_generated_key_parses_back_to_its_environment(env: str) -> None:
    key = generate_key(env)
    parsed = parse_key(key)
    assert parsed.env == env
    assert key.startswith(parsed.display_prefix)


@given(key=valid_keys())
def test_any_well_formed_key_round_trips(key: str) -> None:
    parsed = parse_key(key)
    assert parsed.env == key.split("_")[1]
    assert parsed.display_prefix == key[: len(f"hk_{parsed.env}_") + 6]
    # Whatever the parser accepts, the secret scanner and the log redaction recognise.
    assert KEY_LIKE.search(key) is not None


@given(key=valid_keys(), data=st.data())
def test_any_single_character_change_is_rejected(key: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(min_value=0, max_value=len(key) - 1), label="position")
    replacement = data.draw(
        st.characters(codec="utf-8").filter(lambda c: c != key[position]), label="replacement"
    )
    altered = key[:position] + replacement + key[position + 1 :]
    with pytest.raises(MalformedKeyError):
        parse_key(altered)


@given(key=valid_keys(), data=st.data())
def test_any_truncation_is_rejected(key: str, data: st.DataObject) -> None:
    length = data.draw(st.integers(min_value=0, max_value=len(key) - 1), label="length")
    with pytest.raises(MalformedKeyError):
        parse_key(key[:length])


@given(key=valid_keys(), extra=st.text(min_size=1, max_size=8))
def test_anything_appended_is_rejected(key: str, extra: str) -> None:
    with pytest.raises(MalformedKeyError):
        parse_key(key + extra)


@settings(max_examples=500)
@given(
    text=st.one_of(
        st.text(),
        st.text().map(lambda t: "hk_live_" + t),
        st.text(alphabet=ALPHABET, max_size=RANDOM_LENGTH + CHECKSUM_LENGTH + 2).map(
            lambda t: "hk_test_" + t
        ),
    )
)
def test_arbitrary_text_is_accepted_or_refused_with_the_documented_error(text: str) -> None:
    try:
        parsed = parse_key(text)
    except MalformedKeyError as error:
        assert str(error)  # every refusal says what is wrong
        return
    # Accepted: then it really is a key with a matching checksum.
    assert text == text[:-CHECKSUM_LENGTH] + checksum(text[:-CHECKSUM_LENGTH])
    assert parsed.env in ENVIRONMENTS
